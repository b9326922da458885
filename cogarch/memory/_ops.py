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

    Computed as the row vector times x transposed, ``(1, d) @ (d, n)``, which the CPU BLAS runs about twice
    as fast as the column form ``(n, d) @ (d, 1)`` for the large (B, n, d) operands of the batched cycle
    (the same dot products)."""
    return torch.bmm(v.unsqueeze(1), x.transpose(1, 2)).squeeze(1)
