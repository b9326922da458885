"""Small tensor helpers shared by the memories' hot paths."""

from __future__ import annotations

import torch
from torch import Tensor


def unit(x: Tensor, eps: float = 1e-12) -> Tensor:
    """``F.normalize(x, dim=-1, eps=eps)``, the same formula, without going through ``torch.norm``'s Python
    wrapper: the memories normalise a dozen small tensors per cycle, where that wrapper costs more than
    the arithmetic.

    Under autograd, a vector shorter than ``eps`` (an empty slot, an unused event row) maps to zero with a zero
    gradient: the clamped formula's gradient there is 1 / eps (1e8 at eps 1e-8), which blows up training."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if not x.requires_grad:
        return x / norm.clamp_min(eps)
    big = norm > eps
    return torch.where(big, x / torch.where(big, norm, 1.0), 0.0)


def matvec(x: Tensor, v: Tensor) -> Tensor:
    """Batched ``x @ v``: x (B, n, d), v (B, d) -> (B, n).

    Eager, the row vector times x transposed, ``(1, d) @ (d, n)``, which the CPU BLAS runs about twice as fast as
    the column form ``(n, d) @ (d, 1)`` for the large (B, n, d) operands of the batched cycle (the same dot
    products). Compiled for inference, a product and a sum over d, which the compiler fuses into one pass over x
    with the code around it: a batch of tiny matrix products is a BLAS call per matrix, and MKL's is slow on AMD
    CPUs (on a 2-core AMD EPYC, the long-term read (256, 128, 128) took 1.43 ms as the BLAS call in a compiled
    cycle, 0.47 ms as the fused pass; on an Intel Xeon the last measurement had the BLAS call 1.34x faster, 369
    against 496 us)."""
    if torch.compiler.is_compiling() and not torch.is_grad_enabled():
        return (x * v.unsqueeze(1)).sum(-1)
    return _matvec(x, v)


def matvec_unit(x: Tensor, v: Tensor, eps: float = 1e-12) -> Tensor:
    """``matvec(x, unit(v, eps))``: x (B, n, d), v (B, d) -> (B, n).

    Compiled for inference, the normalisation divides the (B, n) product instead of v (the same numbers up to
    rounding): written as ``unit(v)`` inside the product, the compiler inlines it into the pass over x, a square
    root and a vector division for every 16 elements of x (so the generated C++ of the compiled long-term read
    did). Eager (and under autograd), v is normalised first, one small tensor."""
    if not torch.compiler.is_compiling() or torch.is_grad_enabled():
        return matvec(x, unit(v, eps))
    return matvec(x, v) / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(eps)


# ---------------------------------------------------------------- ops for compiled cycles
# Code that tests a value on the host (which streams to work on: a nonzero) would break a compiled graph. Registered
# as an operator (namespace ``cogarch``), such code is opaque to the compiler, which calls it on the state's own
# tensors (it re-inplaces mutating operators); its body is ordinary eager code. (The state's row writes need no
# operator: compiled, ``index_put_`` on a state tensor itself writes the input's own memory. Through a flattened
# view of it, as eager code writes rows with ``index_copy_``, torch 2.13's compiler copies the tensor into a buffer
# and back, or onto itself, a pass over the whole tensor per write.) Operators are registered through
# torch.library's low-level API, whose call costs about a third of a ``torch.library.custom_op``'s (~4 us against
# ~11 us), which counts at batch 1.

LIBRARY = torch.library.Library("cogarch", "DEF")


def define_op(schema: str, impl, fake) -> None:
    """Register ``cogarch::<name>`` with ``schema`` (``name(args) -> returns``), its eager body ``impl`` and the
    ``fake`` that gives the compiler its outputs' shapes (or None)."""
    name = schema.split("(", 1)[0]
    LIBRARY.define(schema)
    LIBRARY.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"cogarch::{name}", fake, lib=LIBRARY)


def _matvec(x: Tensor, v: Tensor) -> Tensor:
    return torch.bmm(v.unsqueeze(1), x.transpose(1, 2)).squeeze(1)


def consolidate(matrix: Tensor, values: Tensor, keys: Tensor, fade: Tensor, rate: float,
                inplace: bool = True) -> Tensor:
    """``fade`` (B,) * ``matrix`` (B, d, d) + rate * values^T keys, values and keys (B, k, d): the long-term
    update, in place or (``inplace=False``) into a new tensor. When every row fades alike (one stream, or streams
    that write alike: the common case) it is one pass, baddbmm's scalar beta (one host sync finds out); else the
    matrix is scaled first. (beta = 0 would drop M instead of multiplying it: a non-finite M must stay non-finite,
    so a zero factor takes the second path.)"""
    if len(fade) == 1:
        common = float(fade[0])
    else:  # one sync for both: the smallest and the largest factor
        lo, hi = torch.stack(torch.aminmax(fade)).tolist() if len(fade) else (0.0, 1.0)
        common = lo if lo == hi else 0.0
    if common != 0.0:
        add = Tensor.baddbmm_ if inplace else torch.baddbmm
        return add(matrix, values.transpose(1, 2), keys, beta=common, alpha=rate)
    faded = matrix.mul_(fade[:, None, None]) if inplace else matrix * fade[:, None, None]
    return faded.baddbmm_(values.transpose(1, 2), keys, alpha=rate)
