"""Long-term memory merged from working memory by outer products (PMI), read by contraction.

Source: "Understanding AI Cognition: A Neural Module for Inference Inspired by Human Memory Mechanisms"
(PMI). PMI's long-term memory has a higher-order structure and is merged from working memory via outer
product associations, averting memory overflow; retrieval contracts it with a query. Two stores:

- :class:`OuterProductMemory`: the workspace's ``long_term`` option. A matrix M (B, d, d) += v ⊗ k of the
  broadcast items each cycle (auto-association: a partial cue such as a fact without its object reads back
  the whole stored fact); read M k(q).
- :class:`TripleMemory`: the explicit subject-predicate-object store, three 3-way tensors so any two roles
  complete the third; ``write(s, p, o)`` / ``complete(s=, p=, o=)``.

Capacity rule (both stores): ``count`` is the stored mass, the decayed sum of association strengths. With
``capacity`` C, a write of n new associations first scales the old contents by
``f = clamp((C - n) / count, 0, 1)``: new associations enter at full strength and the old ones fade together
(a palimpsest), so ``count <= C`` (for n <= C) and, keys being unit vectors, ``||M||_F <= C * max ||v||``.
The memory therefore cannot overflow however long the stream is. ``decay`` multiplies the contents (and
``count``) by ``1 - decay`` once per write call, before adding.
"""

# B batch, k broadcast items, n triples per call, d model dim, r triple key dim (i, j its two key axes)

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn

from cogarch.memory._ops import consolidate, matvec, matvec_unit, unit

__all__ = ["OuterProductMemory", "OuterProductState", "TripleMemory", "TripleState"]


def _check_store_args(decay: float, capacity: float | None) -> None:
    if not 0 <= decay < 1:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    if capacity is not None and not capacity > 0:
        raise ValueError(f"capacity must be None or > 0, got {capacity}")


def _fade(count: Tensor, n_new: Tensor, decay: float, capacity: float | None) -> Tensor:
    """Factor (B,) that the old contents are multiplied by before n_new (B,) associations are added."""
    keep = 1.0 - decay
    if capacity is None:
        return torch.full_like(count, keep)
    kept = count * keep if keep != 1.0 else count  # (x * 1 is x: the multiplications by keep = 1 are skipped)
    room = (capacity - n_new).clamp_(min=0) / kept.clamp(min=1e-12)
    room = room.clamp_(max=1.0)
    return torch.where(kept > 0, room * keep if keep != 1.0 else room, keep)


class OuterProductState(NamedTuple):
    """Long-term associative matrix (may outlive episodes)."""

    matrix: Tensor  # (B, d, d) sum of value ⊗ key associations
    count: Tensor  # (B,) stored mass (decayed sum of association strengths)


class OuterProductMemory(nn.Module):
    """PMI long-term memory: consolidation by outer products, retrieval by contraction.

    Inputs:
        ``receive(state, broadcast (B, k, d), mask (B, k) | None)``; ``propose(state, query (B, d))``.
    Outputs:
        ``receive`` -> new state and ``{"count": (B,)}``; ``propose`` -> one candidate, the readout
        (B, 1, d), mask (B, 1) = something is stored, ``{"readout_norm": (B,), "count": (B,)}``.
    State:
        :class:`OuterProductState` ``(matrix (B, d, d), count (B,))``; constant size.

    Write: for every valid broadcast item x, ``M += rate * (W_v x) ⊗ normalize(W_k x)``.
    Read: ``M @ normalize(W_q q) = sum_i v_i (k_i . k_q)``: each stored item weighted by how well its key
    matches the query, so a partial cue (a role-bound fact without its object) returns the whole fact.
    W_k, W_v, W_q are slow weights initialised to the identity. Writes stay in the autograd graph (the
    workspace truncates by detaching the state); see the module docstring for ``decay`` and ``capacity``.

    Args:
        dim: model dimension d, >= 1.
        decay: forgetting per write (receive call), in [0, 1); 0 = none.
        capacity: maximal stored mass (number of unit-strength associations), > 0, or None = unbounded.
        rate: consolidation strength per item and cycle, > 0 (1 = a full association per broadcast item).
        persistent: if True (default) the contents survive ``end_episode``; if False they are cleared.
    """

    source = "long_term"

    def __init__(
        self,
        dim: int,
        decay: float = 0.0,
        capacity: float | None = None,
        rate: float = 1.0,
        persistent: bool = True,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        _check_store_args(decay, capacity)
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.dim, self.decay, self.capacity, self.rate, self.persistent = dim, decay, capacity, rate, persistent
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.query = nn.Linear(dim, dim, bias=False)
        for lin in (self.key, self.value, self.query):
            nn.init.eye_(lin.weight)

    def initial_state(self, batch_size: int, device=None) -> OuterProductState:
        return OuterProductState(
            torch.zeros(batch_size, self.dim, self.dim, device=device), torch.zeros(batch_size, device=device)
        )

    def end_episode(self, state: OuterProductState) -> OuterProductState:
        if self.persistent:
            return state
        return OuterProductState(*(torch.zeros_like(t) for t in state))

    def read(self, state: OuterProductState, query: Tensor) -> Tensor:
        """Contraction M @ k(q): query (B, d) -> readout (B, d)."""
        return matvec_unit(state.matrix, F.linear(query, self.query.weight))  # M unit(W_q q)

    def propose(self, state: OuterProductState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """One candidate: the readout for the query (B, 1, d); valid where anything is stored. Pure."""
        readout = self.read(state, query)  # (B, d)
        mask = (state.count > 0)[:, None]  # (B, 1)
        return readout[:, None], mask, {"readout_norm": torch.linalg.vector_norm(readout, dim=-1), "count": state.count}

    supports_inplace = True  # receive(..., inplace=True): see Workspace.cycle

    def receive(
        self, state: OuterProductState, broadcast: Tensor, mask: Tensor | None = None, inplace: bool = False
    ) -> tuple[OuterProductState, dict]:
        """Consolidate the broadcast items (B, k, d) into M (one call = one cycle). With ``inplace`` (no
        autograd) M is updated in the given state's tensor (no copy; ``state`` is consumed)."""
        B, k, _ = broadcast.shape
        raw_keys = F.linear(broadcast, self.key.weight)  # (B, k, d)
        if mask is None:
            n_new = broadcast.new_full((B,), self.rate * k)  # (B,)
        else:
            n_new = self.rate * mask.sum(-1).to(broadcast.dtype)  # (B,)
        f = _fade(state.count, n_new, self.decay, self.capacity)  # (B,)
        count = state.count * f + n_new
        # M f + rate sum_k v_k k_k^T: the (B, d, d) matrix dominates the cost at large batch. With ``inplace`` (no
        # autograd: an in-place write would break the graph) it is written into state.matrix.
        grad, compiling = torch.is_grad_enabled(), torch.compiler.is_compiling()
        if not compiling:  # the sum over the items as one batched matmul (B, d, k) @ (B, k, d)
            matrix = consolidate(state.matrix, self._values(broadcast, mask), unit(raw_keys), f, self.rate,
                                 inplace=inplace and not grad)
        elif not grad:
            # Compiled: one elementwise pass, M f + sum_k (rate v_k / |W_k x_k|) (W_k x_k)^T with the k terms
            # spelled out, which the compiler fuses into a single read and write of M (of the state's own tensor
            # when in place); a batched matmul for the rank-k term is a BLAS call per example and a second pass.
            # The rows rate v_k / |W_k x_k| are the value projection of the scaled items (W_v is linear), so they
            # come out of the product as a buffer: written as values * scale, the compiler inlines the scale (a
            # square root and divisions) into the pass over M, where it ran at half the speed.
            scale = self.rate / torch.linalg.vector_norm(raw_keys, dim=-1, keepdim=True).clamp_min(1e-12)
            rows = F.linear(broadcast * (scale if mask is None else scale * mask.unsqueeze(-1)), self.value.weight)
            update = state.matrix * f[:, None, None]
            for j in range(k):
                update = update + rows[:, j, :, None] * raw_keys[:, j, None, :]
            matrix = state.matrix.copy_(update) if inplace else update
        else:  # compiled with autograd, no host sync: the faded copy, always
            faded = state.matrix * f[:, None, None]
            matrix = faded.baddbmm_(self._values(broadcast, mask).transpose(1, 2), unit(raw_keys), alpha=self.rate)
        return OuterProductState(matrix, count), {"count": count}

    def _values(self, broadcast: Tensor, mask: Tensor | None) -> Tensor:
        """W_v x of the broadcast items (B, k, d); a masked item's is zero (it adds nothing)."""
        values = F.linear(broadcast, self.value.weight)
        return values if mask is None else values * mask.unsqueeze(-1)


class TripleState(NamedTuple):
    """Three 3-way association tensors, one per role to complete (may outlive episodes)."""

    obj: Tensor  # (B, r, r, d) keyed by (subject, predicate) -> object
    pred: Tensor  # (B, r, r, d) keyed by (subject, object) -> predicate
    subj: Tensor  # (B, r, r, d) keyed by (predicate, object) -> subject
    count: Tensor  # (B,) stored mass (decayed number of triples)


class TripleMemory(nn.Module):
    """PMI higher-order long-term memory for explicit subject-predicate-object triples.

    Inputs:
        ``write(state, s, p, o, mask=None)`` with s, p, o (B, d) or (B, n, d), mask (B,) or (B, n) bool;
        ``complete(state, s=..., p=..., o=...)`` with exactly one role None, the others (B, d) or (B, n, d).
    Outputs:
        ``write`` -> new state; ``complete`` -> the missing role's vector, (B, d) or (B, n, d), ≈ the stored
        role embedding (compare with concept embeddings to decode it).
    State:
        :class:`TripleState` ``(obj, pred, subj (B, r, r, d), count (B,))``; 3 r² d floats per example.

    Keys are fixed random projections to r = key_dim dims, normalised: ``a(x) = normalize(P x)``, P (r, d)
    Gaussian (seeded), so the tensors stay small while values keep the full d. Three tensors make the
    scheme symmetric, any two roles complete the third::

        obj  += a(s) ⊗ a(p) ⊗ o       complete(s, p, None) = obj  contracted with a(s), a(p)
        pred += a(s) ⊗ a(o) ⊗ p       complete(s, None, o) = pred contracted with a(s), a(o)
        subj += a(p) ⊗ a(o) ⊗ s       complete(None, p, o) = subj contracted with a(p), a(o)

    A stored triple comes back with weight 1; another triple with weight (a(s)·a(s'))(a(p)·a(p')), about
    1/r in size for unrelated keys, which is the crosstalk that sets the capacity. ``decay`` applies once per
    write() call; ``capacity`` bounds the stored mass (module docstring). Writes are fast (no parameters);
    this store does not take part in the workspace's propose/receive.

    Args:
        dim: model dimension d (values), >= 1.
        key_dim: r, dimension of the projected subject/predicate/object keys, >= 1.
        decay: forgetting per write() call, in [0, 1).
        capacity: maximal stored mass (number of triples), > 0, or None = unbounded.
        persistent: if True (default) the contents survive ``end_episode``; if False they are cleared.
        seed: seed of the fixed random key projection.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int = 32,
        decay: float = 0.0,
        capacity: float | None = None,
        persistent: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if key_dim < 1:
            raise ValueError(f"key_dim must be >= 1, got {key_dim}")
        _check_store_args(decay, capacity)
        self.dim, self.key_dim, self.decay, self.capacity = dim, key_dim, decay, capacity
        self.persistent = persistent
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(key_dim, dim, generator=g) / key_dim**0.5)  # P (r, d)

    def initial_state(self, batch_size: int, device=None) -> TripleState:
        r, d = self.key_dim, self.dim
        return TripleState(
            *(torch.zeros(batch_size, r, r, d, device=device) for _ in range(3)),
            torch.zeros(batch_size, device=device),
        )

    def end_episode(self, state: TripleState) -> TripleState:
        if self.persistent:
            return state
        return TripleState(*(torch.zeros_like(t) for t in state))

    def keys(self, x: Tensor) -> Tensor:
        """Fixed random key: (..., d) -> (..., r), unit norm."""
        return F.normalize(einsum(x, self.projection, "... d, r d -> ... r"), dim=-1)

    def write(self, state: TripleState, s: Tensor, p: Tensor, o: Tensor, mask: Tensor | None = None) -> TripleState:
        """Store the triples (s, p, o), each (B, d) or (B, n, d); mask (B,) / (B, n) bool selects them."""
        if s.dim() == 2:
            s, p, o = s[:, None], p[:, None], o[:, None]
            mask = None if mask is None else mask[:, None]
        B, n, _ = s.shape
        valid = s.new_ones(B, n) if mask is None else mask.to(s.dtype)  # (B, n)
        ks, kp, ko = self.keys(s), self.keys(p), self.keys(o)  # (B, n, r)
        ks = ks * valid[..., None]  # masked triples get a zero key
        new = [  # two-operand contractions, so torch runs them as batched matmuls
            einsum(einsum(a, b, "B n i, B n j -> B n i j"), v, "B n i j, B n d -> B i j d")  # (B, r, r, d)
            for a, b, v in ((ks, kp, o), (ks, ko, p), (kp * valid[..., None], ko, s))
        ]
        n_new = valid.sum(-1)  # (B,)
        f = _fade(state.count, n_new, self.decay, self.capacity)[:, None, None, None]  # (B, 1, 1, 1)
        obj, pred, subj = (old * f + add for old, add in zip(state[:3], new))
        return TripleState(obj, pred, subj, state.count * f.flatten() + n_new)

    def complete(
        self, state: TripleState, s: Tensor | None = None, p: Tensor | None = None, o: Tensor | None = None
    ) -> Tensor:
        """Return the missing role's vector, given the other two (each (B, d) or (B, n, d))."""
        given = [x for x in (s, p, o) if x is not None]
        if len(given) != 2:
            raise ValueError("complete needs exactly two of s, p, o (the missing one is None)")
        if s is None:
            tensor = state.subj
        elif p is None:
            tensor = state.pred
        else:
            tensor = state.obj
        single = given[0].dim() == 2
        a, b = (self.keys(x[:, None] if single else x) for x in given)  # (B, n, r)
        out = einsum(einsum(a, b, "B n i, B n j -> B n i j"), tensor, "B n i j, B i j d -> B n d")
        return out[:, 0] if single else out
