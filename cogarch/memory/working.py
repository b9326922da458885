"""Working memory: K slots written through a differentiable competitive write access (PMI).

Source: "Understanding AI Cognition: A Neural Module for Inference Inspired by Human Memory Mechanisms"
(PMI). Current perceptions update a small working memory through a competitive write: every input
scores every slot, the slots compete for it (softmax over slots, optionally sparsified to the top-k, as in
PMI's ``use_topk``) and the chosen slots move toward the input through a learned sigmoid gate. The memory is
read by attention.

The write score adds what PMI leaves to training: a usage/recency penalty, so that before any learning a
new distinct item lands in a free slot and, once every slot is taken, displaces the least recently written
one, while an item that matches a slot updates that slot in place (no duplicates).
"""

# B batch, k inputs written per cycle (the broadcast), K slots, d model dim

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn

__all__ = ["WorkingMemory", "WorkingMemoryState"]

USED = 0.5  # a slot holds an item once at least half a write has gone into it (usage > USED)


class WorkingMemoryState(NamedTuple):
    """Per-episode working-memory state (batch-first)."""

    slots: Tensor  # (B, K, d) slot contents
    usage: Tensor  # (B, K) in [0, 1]: how much has been written into each slot (0 = free)
    age: Tensor  # (B, K) cycles since each slot was last written (recency, for least-recently-used)


class WorkingMemory(nn.Module):
    """PMI working memory: K slots, competitive gated write, attention read.

    Inputs:
        ``propose(state, query (B, d))``; ``receive(state, broadcast (B, k, d), mask (B, k) | None)``;
        ``read(state, query (B, d))``.
    Outputs:
        ``propose`` -> the K slots as candidates (B, K, d), mask (B, K) = used slots, and
        ``{"read_weights": (B, K), "usage": (B, K)}``; ``receive`` -> new state and
        ``{"write_weights": (B, k, K)}``; ``read`` -> ((B, d), weights (B, K)).
    State:
        :class:`WorkingMemoryState` ``(slots (B, K, d), usage (B, K), age (B, K))``; its size never grows.

    Write (one broadcast item x at a time, in broadcast order, so k distinct items take k slots)::

        sim_j   = cos(W_k x, W_k slot_j)                        learned projection (identity at init)
        match_j = sigmoid((sim_j - match_threshold) / 0.05)     ~1 if slot j already holds x, else ~0
        stale_j = rank of age_j among the slots / (K - 1)       1 = least recently written
        score_j = match_j - usage_penalty * usage_j * (1 - stale_j / 2) * (1 - match_j)
        w       = softmax(score / temperature) over slots       the competition
        w       = top-k of w, renormalised (forward); gradient of the dense softmax (straight-through)
        g_j     = sigmoid(G_x x + G_s slot_j + b)               per-unit gate, b = 4 (open) at init
        slot_j <- slot_j + w_j * g_j * (x - slot_j)

    A free slot scores 0, an occupied non-matching slot scores below 0 (least recently written highest),
    a matching slot scores near 1: so an input refreshes its own slot, else takes a free slot, else
    displaces the least recently written one. Overwriting a slot with what it holds costs nothing, which is
    why the usage penalty is scaled by ``1 - match``. Writes stay in the autograd graph (so write weights,
    projection and gate learn by gradient); the workspace truncates gradients by detaching the state.
    ``usage`` and ``age`` are bookkeeping updated without gradients.

    Read: ``softmax(cos(W_q q, W_k slot_j) / temperature)`` over used slots, then the weighted sum of slots.

    Args:
        dim: model dimension d, >= 1.
        slots: number of slots K, >= 1.
        top_k: slots each input may write to, 1 <= top_k <= slots; ``None`` = dense soft write (PMI's
            "+soft" ablation: every slot moves by its softmax share, so slots fill gradually and count
            as used (mask, read) once their usage exceeds 0.5).
        temperature: softmax temperature of write and read competitions, > 0. Smaller = harder.
        usage_penalty: how strongly occupied slots resist being overwritten by a non-matching input,
            > 0. A free slot scores 0, an occupied one between -usage_penalty and -usage_penalty / 2.
        match_threshold: cosine similarity above which an input counts as the item a slot holds, in [0, 1).
        persistent: if False (default), ``end_episode`` clears the slots; if True they survive.
    """

    source = "working"
    MATCH_WIDTH = 0.05  # sharpness of the match sigmoid: random vectors (|cos| < 0.3) give match < 0.005

    def __init__(
        self,
        dim: int,
        slots: int = 8,
        top_k: int | None = 1,
        temperature: float = 0.1,
        usage_penalty: float = 1.0,
        match_threshold: float = 0.5,
        persistent: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if top_k is not None and not 1 <= top_k <= slots:
            raise ValueError(f"top_k must be None or in [1, slots={slots}], got {top_k}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not usage_penalty > 0:
            raise ValueError(f"usage_penalty must be > 0, got {usage_penalty}")
        if not 0 <= match_threshold < 1:
            raise ValueError(f"match_threshold must be in [0, 1), got {match_threshold}")
        self.dim, self.slots, self.top_k = dim, slots, top_k
        self.temperature, self.usage_penalty = temperature, usage_penalty
        self.match_threshold, self.persistent = match_threshold, persistent

        # Slow weights. Identity init: before training, similarity is plain cosine similarity.
        self.key = nn.Linear(dim, dim, bias=False)  # W_k: slot contents and inputs -> address space
        self.query = nn.Linear(dim, dim, bias=False)  # W_q: read query -> address space
        nn.init.eye_(self.key.weight)
        nn.init.eye_(self.query.weight)
        # Gate initialised open (sigmoid(4) = 0.98): an untrained memory stores what it is given.
        self.gate_x = nn.Linear(dim, dim, bias=True)
        self.gate_s = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.gate_x.weight)
        nn.init.zeros_(self.gate_s.weight)
        nn.init.constant_(self.gate_x.bias, 4.0)
        # Fixed tie-break among equal scores (e.g. all free slots): lower index first, far below any
        # real score difference.
        self.register_buffer("tie_break", -1e-6 * torch.arange(slots, dtype=torch.float32), persistent=False)

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device=None) -> WorkingMemoryState:
        zeros = torch.zeros(batch_size, self.slots, device=device)
        return WorkingMemoryState(torch.zeros(batch_size, self.slots, self.dim, device=device), zeros, zeros.clone())

    def end_episode(self, state: WorkingMemoryState) -> WorkingMemoryState:
        if self.persistent:
            return state
        return WorkingMemoryState(*(torch.zeros_like(t) for t in state))

    # ------------------------------------------------------------------ read
    def read(self, state: WorkingMemoryState, query: Tensor) -> tuple[Tensor, Tensor]:
        """Attention read. query (B, d) -> (readout (B, d), weights (B, K)); zeros if no slot is used."""
        q = F.normalize(self.query(query), dim=-1)  # (B, d)
        keys = F.normalize(self.key(state.slots), dim=-1)  # (B, K, d)
        logits = einsum(keys, q, "b K d, b d -> b K") / self.temperature
        used = state.usage > USED  # (B, K)
        logits = logits.masked_fill(~used, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # rows with no used slot -> all zero
        return einsum(weights, state.slots, "b K, b K d -> b d"), weights

    def propose(self, state: WorkingMemoryState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """The K slots as candidates (B, K, d), mask = used slots (B, K). Pure read."""
        _, weights = self.read(state, query)
        return state.slots, state.usage > USED, {"read_weights": weights, "usage": state.usage}

    # ------------------------------------------------------------------ write
    def write_weights(self, state: WorkingMemoryState, x: Tensor) -> Tensor:
        """Competitive write weights of one input per example: x (B, d) -> w (B, K) (see class doc)."""
        sim = F.cosine_similarity(self.key(x)[:, None], self.key(state.slots), dim=-1, eps=1e-8)  # (B, K)
        match = torch.sigmoid((sim - self.match_threshold) / self.MATCH_WIDTH)  # (B, K)
        with torch.no_grad():
            rank = state.age.argsort(dim=-1, stable=True).argsort(dim=-1).float()  # 0 = most recent
            stale = rank / max(self.slots - 1, 1)  # (B, K) in [0, 1]
        penalty = self.usage_penalty * state.usage * (1 - stale / 2) * (1 - match)  # (B, K)
        score = match - penalty + self.tie_break
        soft = torch.softmax(score / self.temperature, dim=-1)  # (B, K): the slots compete for x
        if self.top_k is None:
            return soft
        top = score.topk(self.top_k, dim=-1).indices  # (B, top_k)
        hard = torch.zeros_like(soft).scatter(-1, top, soft.gather(-1, top))
        hard = hard / hard.sum(-1, keepdim=True)
        return hard.detach() + soft - soft.detach()  # forward: sparse top-k; backward: dense softmax

    def receive(
        self, state: WorkingMemoryState, broadcast: Tensor, mask: Tensor | None = None
    ) -> tuple[WorkingMemoryState, dict]:
        """Write the k broadcast items (B, k, d), in order, into the slots. One call = one cycle."""
        B, k, _ = broadcast.shape
        valid = torch.ones(B, k, dtype=torch.bool, device=broadcast.device) if mask is None else mask.bool()
        slots, usage, age = state
        all_w = []
        for i in range(k):
            x = broadcast[:, i]  # (B, d)
            w = self.write_weights(WorkingMemoryState(slots, usage, age), x) * valid[:, i, None]  # (B, K)
            gate = torch.sigmoid(self.gate_x(x)[:, None] + self.gate_s(slots))  # (B, K, d)
            slots = slots + w[..., None] * gate * (x[:, None] - slots)  # (B, K, d)
            w_fast = w.detach()
            usage = usage + w_fast * (1 - usage)
            age = age * (1 - w_fast)
            all_w.append(w)
        age = age + 1  # one cycle passed for every slot
        write = torch.stack(all_w, dim=1) if all_w else broadcast.new_zeros(B, 0, self.slots)
        return WorkingMemoryState(slots, usage, age), {"write_weights": write}  # (B, k, K)
