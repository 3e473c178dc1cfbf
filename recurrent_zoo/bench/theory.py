"""``recurrent-zoo bench theory``: the figures of the one-dimensional analysis (paper Fig. 2).

1. E[h²] and E[(dh/dλ)²] against real λ for input correlations ρ: the closed forms of
   :mod:`recurrent_zoo.theory` (lines) and Monte Carlo estimates through a
   :class:`~recurrent_zoo.ComplexDiagonalRNN` (markers), on a log scale.
2. The 1-D teacher–student loss landscapes for teachers λ* = 1 − {0.01, …, 0.64}, for real λ
   and for the angle (λ = |λ*| e^{iθ}, teacher θ* = 0), plotted against the raw parameter of each
   parametrisation (polar, exp, optimal), without and with the input normalisation γ.
3. The curvature of the loss at the teacher, ∂²L/∂p² per raw parameter p: how a
   parametrisation sharpens or flattens the landscape as λ* → 1.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes
from recurrent_zoo.cli.usage import UsageError

if TYPE_CHECKING:
    import numpy as np

NAME = "theory"
HELP = "the 1-D theory: E[(dh/dλ)²] vs λ and ρ (closed form and simulation), 1-D loss landscapes"

RHOS = (0.0, 0.9, 0.99, 0.999, 1.0)
TEACHERS = tuple(1 - d for d in (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64))
PARAMETRIZATIONS = ("polar", "exp", "optimal")
QUICK_LAMBDAS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
FULL_LAMBDAS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998)
SIZES = Sizes(
    lambdas=Size(
        QUICK_LAMBDAS, FULL_LAMBDAS, "real λ simulated", type=float, many=True, minimum=None
    ),
    batch=Size(2000, 20000, "Monte Carlo sequences per ρ"),
    grid=Size(400, 2000, "points per landscape", minimum=3),
)
# Landscape windows: |λ| in [NU_MIN, NU_MAX] for the real direction, θ in [THETA_MIN, π] for the
# exp parametrisation's angle (θ = exp(θ_log) > 0), raw angle within ±OMEGA_WINDOW for "optimal".
NU_MIN, NU_MAX, THETA_MIN, OMEGA_WINDOW = 1e-3, 1 - 1e-4, 1e-4, 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rhos", nargs="+", type=float, default=list(RHOS), help="input correlations ρ"
    )
    parser.add_argument(
        "--teachers",
        nargs="+",
        type=float,
        default=[round(t, 2) for t in TEACHERS],
        help="teacher values λ* of the loss landscapes",
    )
    parser.add_argument(
        "--parametrizations",
        nargs="+",
        choices=PARAMETRIZATIONS,
        default=list(PARAMETRIZATIONS),
        help="parametrisations of λ for the landscapes",
    )
    SIZES.add_arguments(parser)


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    def within(values, lo, hi, what, closed_hi=True):
        bad = [v for v in values if not (lo <= v <= hi if closed_hi else lo <= v < hi)]
        if bad:
            bracket = "]" if closed_hi else ")"
            raise UsageError(f"--{what}: got {bad}, expected values in [{lo}, {hi}{bracket}")

    within(args.rhos, -1.0, 1.0, "rhos")
    within(args.teachers, 0.0, 1.0, "teachers", False)
    sizes = SIZES.resolve(args)
    within([abs(v) for v in sizes["lambdas"]], 0.0, 1.0, "lambdas (absolute values)", False)
    return sizes


# -- 1. moments against λ and ρ ----------------------------------------------------------------------
def sensitivity(rhos: list[float], lambdas: list[float], batch: int, seed: int) -> dict[str, Any]:
    """Closed forms on a fine λ grid and Monte Carlo estimates at ``lambdas``, per ρ."""
    import jax
    import numpy as np

    from recurrent_zoo import theory

    curve = np.concatenate([np.linspace(0.0, 0.99, 200), 1 - np.geomspace(1e-2, 1e-3, 60)[1:]])
    lams = np.asarray(lambdas, np.float64)
    out: dict[str, Any] = {"rhos": rhos, "lambda_curve": curve, "lambda_sim": lams, "batch": batch}
    keys = jax.random.split(jax.random.key(seed), len(rhos))
    for name in ("h2", "dh2"):
        out[f"{name}_curve"], out[f"{name}_closed"], out[f"{name}_sim"] = [], [], []
    for rho, key in _common.progress(list(zip(rhos, keys)), "theory: Monte Carlo per rho"):
        h2, dh2 = theory.simulate_moments(key, lams, rho, batch_size=batch)
        for name, fn, sim in (
            ("h2", theory.state_second_moment, h2),
            ("dh2", theory.sensitivity_second_moment, dh2),
        ):
            out[f"{name}_curve"].append(np.asarray(fn(curve, rho), np.float64))
            out[f"{name}_closed"].append(np.asarray(fn(lams, rho), np.float64))
            out[f"{name}_sim"].append(sim)
    return out


# -- 2. landscapes and 3. curvature --------------------------------------------------------------------
def _windows(
    name: str, direction: str, stars: np.ndarray, grid: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw values (p, q) [K, grid] of the 1-D slices through each λ*, uniform in the moving one."""
    import numpy as np

    from recurrent_zoo import parametrization as lam_param

    par = lam_param.get(name)
    stars = np.asarray(stars, np.float32)
    p_star, q_star = (np.asarray(v) for v in par.encode(stars, np.zeros_like(stars)))
    shape = (stars.size, grid)
    if direction == "real":
        ends = np.asarray(par.encode(np.float32([NU_MIN, NU_MAX]), np.float32([0.0, 0.0]))[0])
        p = np.broadcast_to(np.linspace(ends.min(), ends.max(), grid, dtype=np.float32), shape)
        return p, np.broadcast_to(q_star[:, None], shape)
    if name == "exp":
        q = np.broadcast_to(np.linspace(np.log(THETA_MIN), np.log(np.pi), grid), shape)
    else:
        q_pi = np.abs(np.asarray(par.encode(stars, np.full_like(stars, np.pi))[1]))
        half = np.minimum(q_pi, OMEGA_WINDOW) if name == "optimal" else q_pi
        q = np.linspace(-half, half, grid, axis=-1)
    return np.broadcast_to(p_star[:, None], shape), q.astype(np.float32)


def landscapes(teachers: list[float], parametrizations: list[str], grid: int) -> dict[str, Any]:
    """Loss along each slice, and the curvature at the teacher, per (normalize, param, λ*)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from recurrent_zoo import parametrization as lam_param
    from recurrent_zoo import theory

    stars = np.asarray(teachers, np.float32)
    out: dict[str, Any] = {"plain": {}, "normalized": {}}
    for name in parametrizations:
        par = lam_param.get(name)
        p0, q0 = par.encode(jnp.asarray(stars), jnp.zeros(stars.shape))
        slices = {d: _windows(name, d, stars, grid) for d in ("real", "angle")}

        @jax.jit
        def compute(p0, q0, stars, slices, name=name):
            res = {}
            for normalize in (False, True):
                loss = lambda p, q, s, normalize=normalize: theory.parametrized_loss(
                    name, p, q, s, normalize=normalize
                )
                h = jax.vmap(jax.hessian(loss, (0, 1)))(p0, q0, stars)
                along = {d: loss(p, q, stars[:, None]) for d, (p, q) in slices.items()}
                res[normalize] = (h[0][0], h[1][1], along)
            return res

        for normalize, (curv_p, curv_q, along) in compute(p0, q0, stars, slices).items():
            curv_q = np.asarray(curv_q, np.float64)
            if name == "exp":
                # θ* = 0 sits at θ_log = −∞: there the loss is flat in θ_log, no finite optimum.
                curv_q = np.full_like(curv_q, np.nan)
            entry: dict[str, Any] = {
                "param_names": par.param_names,
                "curvature_magnitude": np.asarray(curv_p, np.float64),
                "curvature_angle": curv_q,
            }
            for d, (p, q) in slices.items():
                entry[d] = {
                    "raw": p if d == "real" else q,
                    "loss": np.asarray(along[d], np.float64),
                }
            out["normalized" if normalize else "plain"][name] = entry
    return out


# -- output --------------------------------------------------------------------------------------------
def _plot_sensitivity(s: dict[str, Any], out: str) -> None:
    import numpy as np

    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(s["rhos"])))
    for ax, name, label in (
        (axes[0], "h2", "E[h²]"),
        (axes[1], "dh2", "E[(dh/dλ)²]"),
    ):
        for i, rho in enumerate(s["rhos"]):
            ax.plot(s["lambda_curve"], s[f"{name}_curve"][i], color=colors[i], label=f"ρ = {rho:g}")
            ax.plot(s["lambda_sim"], s[f"{name}_sim"][i], "o", color=colors[i], ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("λ")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(title="closed form (lines),\nsimulation (dots)", fontsize=8)
    fig.suptitle(
        "1-D recurrence h(t) = λ·h(t−1) + x(t), AR(1) inputs of correlation ρ; "
        f"dots: ComplexDiagonalRNN, {s['batch']} sequences"
    )
    _common.save_figure(fig, out, "theory_sensitivity")


def _plot_landscapes(land: dict[str, Any], teachers: list[float], out: str) -> None:
    import numpy as np

    plt = _common.pyplot()
    for key, block in land.items():
        names = list(block)
        fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7), squeeze=False)
        colors = plt.cm.plasma(np.linspace(0, 0.85, len(teachers)))
        for j, name in enumerate(names):
            for i, direction in enumerate(("real", "angle")):
                ax = axes[i, j]
                e = block[name][direction]
                for k, star in enumerate(teachers):
                    ax.plot(
                        e["raw"][k],
                        np.maximum(e["loss"][k], 1e-12),
                        color=colors[k],
                        label=f"λ* = {star:g}",
                    )
                ax.set_yscale("log")
                ax.set_ylim(1e-4, None)
                pname = block[name]["param_names"][0 if direction == "real" else 1]
                ax.set_xlabel(pname)
                ax.set_title(f"{name}: {'real λ' if direction == 'real' else 'λ = |λ*|·exp(iθ)'}")
                ax.grid(alpha=0.3)
            axes[0, j].set_ylabel("loss")
            axes[1, j].set_ylabel("loss")
        axes[0, -1].legend(fontsize=7)
        fig.suptitle(f"1-D teacher–student loss against the raw parameter ({key})")
        fig.tight_layout()
        _common.save_figure(fig, out, f"theory_landscape_{key}")


def _tables(s: dict[str, Any], land: dict[str, Any], teachers: list[float]) -> str:
    import numpy as np

    rows = []
    for i, rho in enumerate(s["rhos"]):
        for j, lam in enumerate(s["lambda_sim"]):
            rows.append(
                {
                    "rho": f"{rho:g}",
                    "lambda": f"{lam:g}",
                    "E[h2] sim": float(s["h2_sim"][i][j]),
                    "E[h2] closed": float(s["h2_closed"][i][j]),
                    "E[dh2] sim": float(s["dh2_sim"][i][j]),
                    "E[dh2] closed": float(s["dh2_closed"][i][j]),
                    "sim/closed": float(s["dh2_sim"][i][j] / s["dh2_closed"][i][j]),
                }
            )
    text = [
        "E[h²] and E[(dh/dλ)²]: Monte Carlo through ComplexDiagonalRNN vs closed form",
        _common.format_table(rows),
    ]
    for key, block in land.items():
        rows = []
        for k, star in enumerate(teachers):
            row: dict[str, Any] = {"lambda*": f"{star:g}"}
            for name, e in block.items():
                pn, qn = e["param_names"]
                row[f"{name}:{pn}"] = float(e["curvature_magnitude"][k])
                cq = float(e["curvature_angle"][k])
                row[f"{name}:{qn}"] = "n/a" if np.isnan(cq) else cq
            rows.append(row)
        text += [f"\nloss curvature ∂²L/∂p² at the teacher ({key})", _common.format_table(rows)]
    return "\n".join(text)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = _resolve(args)
    lambdas, batch, grid = sizes["lambdas"], sizes["batch"], sizes["grid"]
    start = time.perf_counter()
    sens = sensitivity(args.rhos, lambdas, batch, args.seed)
    land = landscapes(args.teachers, args.parametrizations, grid)
    results = {
        "sensitivity": sens,
        "landscapes": land,
        "teachers": args.teachers,
        "seconds": time.perf_counter() - start,
    }
    _common.write_json(
        args.out,
        NAME,
        {**_common.args_dict(args), "lambdas": lambdas, "batch": batch, "grid": grid},
        results,
    )
    _plot_sensitivity(sens, args.out)
    _plot_landscapes(land, args.teachers, args.out)
    print(_tables(sens, land, args.teachers))
    print(f"\n{results['seconds']:.1f}s; wrote {args.out}/{NAME}.json and PNG plots")
    return results
