"""Adam's effective learning rates on a dense RNN's A and a complex diagonal RNN's λ (paper Fig. 4C).

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/adam_effective_lr.py``.

The paper's setup for its Fig. 4C (its notebook ``figures/linear_system_adam_lr.ipynb`` and the
runs it names): the teacher–student task at ν0 = 0.99 (one 10-unit teacher, T = 300), students of
64 units (the dense linear RNN; the complex diagonal RNN with λ = a + ib, no γ, on the ring
[0.99, 1] with the paper's B, C, D draws), Adam at a constant learning rate of 1e-3, batch 128,
100 epochs of 100 steps; the effective learning rates are read at the end of training.

Two quantities per parameter, both summarised per group (median, and the geometric mean):

* ``eta``: lr / (√v̂ + ε), the step Adam's scaling gives a unit gradient
  (:func:`recurrent_zoo.diagnostics.adam_effective_learning_rates`);
* ``paper``: minus the update that ``opt.update`` returns for a gradient of ones from the current
  state, what the paper's code logs (it includes the momentum m̂ of the past gradients, so it is
  negative, and drops out of the paper's log-scale plot, wherever m̂ is negative enough).

The training loss is computed from the impulse responses (as ``train_students`` does); the last
100 steps' mean training loss is reported.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recurrent_zoo.diagnostics import adam_effective_learning_rates
from recurrent_zoo.tasks import teacher_student as ts

GROUPS = {
    "rnn": {"A": ["A"], "B": ["B"], "C": ["C"], "D": ["D"]},
    "crnn": {
        "lambda": ["lambda_re", "lambda_im"],
        "B": ["B_re", "B_im"],
        "C": ["C_re", "C_im"],
        "D": ["D"],
    },
}


def _stats(tree: dict, names: list[str]) -> dict[str, float]:
    values = np.concatenate([np.ravel(np.asarray(tree[n], np.float64)) for n in names])
    positive = values[values > 0]
    return {
        "median": float(np.median(values)),
        "geomean_of_positive": float(np.exp(np.mean(np.log(positive)))) if positive.size else 0.0,
        "positive_fraction": float(positive.size / values.size),
    }


def run(model: str, seed: int, steps: int, lr: float, batch: int, length: int, checkpoints):
    """Trains one student; the effective learning rates at each checkpoint step."""
    teacher = ts.make_teacher(jax.random.PRNGKey(42), 0.99)  # one teacher, as in the paper
    student = ts.make_student(model, 0.99)
    k_init, k_paper, k_data = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = student.init(k_init, jnp.zeros((1, length, 1)))["params"]
    params = ts.paper_init(model, params, k_paper)
    k_teacher = ts.impulse_response(lambda x: ts.run_teacher(teacher, x), length, 1)
    opt = optax.adam(lr)
    state = opt.init(params)

    def loss_fn(p, x):
        k = ts.impulse_response(lambda z: student.apply({"params": p}, z), length, 1)
        return ts.loss(ts.causal_conv(x, k - k_teacher), 0.0)

    @functools.partial(jax.jit, static_argnums=3)
    def chunk(p, s, start, n_steps):
        def body(carry, step):
            p, s = carry
            x = jax.random.normal(jax.random.fold_in(k_data, step), (batch, length, 1))
            value, g = jax.value_and_grad(loss_fn)(p, x)
            updates, s = opt.update(g, s, p)
            return (optax.apply_updates(p, updates), s), value

        (p, s), values = jax.lax.scan(body, (p, s), start + jnp.arange(n_steps))
        return p, s, values

    out, done, losses = [], 0, []
    for stop in checkpoints:
        while done < stop:
            n = min(100, stop - done)  # one compiled chunk size (checkpoints are multiples)
            params, state, values = chunk(params, state, done, n)
            losses.append(np.asarray(values))
            done += n
        eta = adam_effective_learning_rates(state, lr)
        ones = jax.tree.map(jnp.ones_like, params)
        paper = jax.tree.map(lambda u: -u, opt.update(ones, state, params)[0])
        trace = np.concatenate(losses)
        out.append(
            {
                "step": stop,
                "train_loss_last_100": float(np.mean(trace[-100:])),
                "eta": {g: _stats(eta, n) for g, n in GROUPS[model].items()},
                "paper": {g: _stats(paper, n) for g, n in GROUPS[model].items()},
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    checkpoints = sorted({c for c in (200, 1000, args.steps) if c <= args.steps})
    results, t0 = [], time.time()
    for model in ("rnn", "crnn"):
        for seed in range(args.seeds):
            rows = run(model, seed, args.steps, args.lr, args.batch_size, args.length, checkpoints)
            results.append({"model": model, "seed": seed, "checkpoints": rows})
            for r in rows:
                groups = "  ".join(
                    f"{g} {v['median']:.2e}/{r['paper'][g]['median']:.2e}"
                    for g, v in r["eta"].items()
                )
                print(
                    f"{model:5s} seed {seed} step {r['step']:6d} loss "
                    f"{r['train_loss_last_100']:.2e}  median eta/paper: {groups}",
                    flush=True,
                )
    seconds = time.time() - t0
    print(f"total {seconds:.0f} s")
    if args.out:
        record = {
            "command": "PYTHONPATH=$PWD python benchmarks/adam_effective_lr.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"jax {jax.__version__} ({jax.default_backend()})",
            "seconds": seconds,
            "results": results,
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
