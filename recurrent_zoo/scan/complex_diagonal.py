"""The complex diagonal recurrence ``h_t = λ ⊙ h_{t−1} + u_t`` in real arithmetic.

A complex diagonal recurrence carried as complex64 makes XLA's CPU backend loop over complex
multiplies that it does not vectorise well, and reverse-mode autodiff of lax.scan stores
per-step residuals. Carrying ``[re | im]`` as one real array and giving the scan its own JVP (the
tangent follows the same recurrence; its transpose runs it backwards with conj(λ)) keeps the
loop to a few fused real ops per step and the residuals to the states.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from recurrent_zoo.scan.time import float_flags

Array = jax.Array


def _split_mul(ar: Array, ai: Array, h: Array) -> Array:
    """(ar + i·ai) ⊙ h for ``h = [re | im]`` along the last axis (2N)."""
    n = ar.shape[-1]
    hr, hi = h[..., :n], h[..., n:]
    return jnp.concatenate([ar * hr - ai * hi, ar * hi + ai * hr], axis=-1)


def _tangent_mul(dar: Array, dai: Array, h: Array) -> Array:
    """dλ ⊙ h in the ``[re | im]`` layout, with h used whole: [dar | dar]·h + roll([dai | −dai]·h).

    Only whole ``h`` multiplies the tangent, so linearisation keeps ``h`` itself as the residual
    (the states, already stored) rather than copies of its real and imaginary halves.
    """
    n = h.shape[-1] // 2
    return jnp.concatenate([dar, dar], -1) * h + jnp.roll(
        jnp.concatenate([dai, -dai], -1) * h, n, -1
    )


def _split_forward(unroll, ar, ai, u, h0, keep, valid):
    def body(h, inp):
        u_t, k_t, m_t = inp
        ah = _split_mul(ar, ai, h)
        h_new = ah + u_t if k_t is None else k_t * ah + u_t
        if m_t is not None:
            h_new = jnp.where(m_t > 0, h_new, h)
        return h_new, h_new

    return jax.lax.scan(body, h0, (u, keep, valid), unroll=unroll)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _split_scan(unroll, ar, ai, u, h0, keep, valid):
    return _split_forward(unroll, ar, ai, u, h0, keep, valid)


@_split_scan.defjvp
def _split_scan_jvp(unroll, primals, tangents):
    # The tangent obeys the same recurrence, driven by dλ ⊙ h_{t−1} + du_t:
    #   dh_t = keep_t·(λ dh_{t−1} + dλ h_{t−1}) + du_t.
    # It is linear in the tangents, so reverse mode transposes it into the same recurrence run
    # backwards with conj(λ); forward mode (jvp, jacfwd) works as is. dλ ⊙ h_{t−1} is carried
    # from the previous step rather than read from a shifted copy of the states, so the only
    # residual reverse mode keeps is ``hs`` itself, which is the output anyway.
    ar, ai, u, h0, keep, valid = primals
    dar, dai, du, dh0, _, _ = tangents
    h_T, hs = _split_forward(unroll, ar, ai, u, h0, keep, valid)

    def body(carry, inp):
        dh, drive = carry
        du_t, h_t, k_t, m_t = inp
        step = _split_mul(ar, ai, dh) + drive
        dh_new = (step if k_t is None else k_t * step) + du_t
        if m_t is not None:
            dh_new = jnp.where(m_t > 0, dh_new, dh)
        return (dh_new, _tangent_mul(dar, dai, h_t)), dh_new

    init = (dh0, _tangent_mul(dar, dai, h0))
    (dh_T, _), dhs = jax.lax.scan(body, init, (du, hs, keep, valid), unroll=unroll)
    return (h_T, hs), (dh_T, dhs)


def complex_diagonal_scan(
    a_re: Array,
    a_im: Array,
    u: Array,
    h0: Array,
    *,
    resets: Array | None = None,
    mask: Array | None = None,
    unroll: int = 1,
) -> tuple[Array, Array]:
    """``h_t = λ ⊙ h_{t−1} + u_t`` for complex λ = a_re + i·a_im, sequentially in real arithmetic.

    The complex state is carried as ``[re | im]`` along the last axis and time is the leading
    axis, so callers can produce ``u`` and consume the states with one matmul each.

    Args:
      a_re, a_im: [N] real and imaginary parts of λ.
      u: [T, B, 2N] real inputs, time-major, real parts then imaginary parts.
      h0: [B, 2N] initial state in the same layout.
      resets: [T, B] bool; where True the state is zeroed before ``u_t`` is read.
      mask: [T, B] bool; where False the step is skipped (state held, a reset there ignored).
      unroll: steps unrolled per loop iteration.

    Returns:
      ``(h_T [B, 2N], hs [T, B, 2N])``. Differentiable in a_re, a_im, u and h0 in both modes; reverse
      mode runs the recurrence backwards with conj(λ) and keeps only the states.
    """
    dt = u.dtype
    keep, valid = float_flags(resets, mask, dt)
    return _split_scan(unroll, a_re.astype(dt), a_im.astype(dt), u, h0.astype(dt), keep, valid)
