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
from torch import Tensor, nn

from cogarch.memory._ops import matvec, unit

__all__ = ["WorkingMemory", "WorkingMemoryState"]

USED = 0.5  # a slot holds an item once at least half a write has gone into it (usage > USED)


class WorkingMemoryState(NamedTuple):
    """Per-episode working-memory state (batch-first)."""

    slots: Tensor  # (B, K, d) slot contents
    usage: Tensor  # (B, K) in [0, 1]: how much has been written into each slot (0 = free)
    age: Tensor  # (B, K) cycles since each slot was last written (recency, for least-recently-used)
    # (B, K, d) W_k slots, a cache of the slot keys that read and write share (each cycle's write updates the
    # rows it writes). Used only without autograd; under autograd the keys are recomputed from the slots, so
    # gradients reach W_k and changed weights take effect. None = not cached (computed from the slots).
    keys: Tensor | None = None


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
        :class:`WorkingMemoryState` ``(slots (B, K, d), usage (B, K), age (B, K), keys (B, K, d))``; its size
        never grows. ``keys`` caches ``W_k slots`` for inference (see the state's field comment).

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
    projection and gate learn by gradient), except that the competition treats the slots' current contents
    as constants (their keys are computed from detached slots: the gradient through the sharp competition
    back into earlier contents grows ~50x per write and overflows on long streams); the workspace
    truncates gradients by detaching the state.
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
        # earlier[j, i] = 1: slot i precedes slot j (the tie-break of equal ages in _age_rank, compiled)
        self.register_buffer("earlier", torch.ones(slots, slots).tril(-1), persistent=False)
        # usage_penalty * (1 - stale / 2) = usage_penalty - rank * resist_step (stale = rank / (K - 1); rank 0 =
        # the most recently written slot)
        self.resist_step = 0.5 * usage_penalty / max(slots - 1, 1)

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device=None) -> WorkingMemoryState:
        zeros = torch.zeros(batch_size, self.slots, device=device)
        slots = torch.zeros(batch_size, self.slots, self.dim, device=device)
        return WorkingMemoryState(slots, zeros, zeros.clone(), slots.clone())  # the keys of zero slots are zero

    def end_episode(self, state: WorkingMemoryState) -> WorkingMemoryState:
        if self.persistent:
            return state
        return WorkingMemoryState(*(None if t is None else torch.zeros_like(t) for t in state))

    def _slot_keys(self, state: WorkingMemoryState) -> Tensor:
        """W_k slots (B, K, d): the state's cache without autograd, else computed from the slots."""
        if state.keys is None or torch.is_grad_enabled():
            return F.linear(state.slots, self.key.weight)
        return state.keys

    # ------------------------------------------------------------------ read
    def read(self, state: WorkingMemoryState, query: Tensor) -> tuple[Tensor, Tensor]:
        """Attention read. query (B, d) -> (readout (B, d), weights (B, K)); zeros if no slot is used."""
        weights = self._read_weights(state, query, state.usage > USED)
        return torch.bmm(weights.unsqueeze(1), state.slots).squeeze(1), weights

    def _read_weights(self, state: WorkingMemoryState, query: Tensor, used: Tensor) -> Tensor:
        q = unit(F.linear(query, self.query.weight)) / self.temperature  # (B, d)
        keys = unit(self._slot_keys(state))  # (B, K, d)
        logits = matvec(keys, q)  # (B, K)
        logits = torch.where(used, logits, float("-inf"))  # only used slots (B, K) are read
        return torch.softmax(logits, dim=-1).nan_to_num(0.0)  # rows with no used slot -> all zero

    def propose(self, state: WorkingMemoryState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """The K slots as candidates (B, K, d), mask = used slots (B, K). Pure read."""
        used = state.usage > USED
        weights = self._read_weights(state, query, used)  # the readout itself is not a candidate
        return state.slots, used, {"read_weights": weights, "usage": state.usage}

    def motor_context(self, state: WorkingMemoryState) -> tuple[Tensor, Tensor]:
        """What the motor head may read when it acts: the slots (B, K, d) and which are used (B, K)."""
        return state.slots, state.usage > USED

    # ------------------------------------------------------------------ write
    def write_weights(self, state: WorkingMemoryState, x: Tensor) -> Tensor:
        """Competitive write weights of one input per example: x (B, d) -> w (B, K) (see class doc)."""
        sim = matvec(unit(self._slot_keys(state), eps=1e-8), self._address(x))
        return self._compete(sim, state.usage, state.age)[0]

    def _address(self, x: Tensor) -> Tensor:
        """Unit-length write address W_k x (..., d), normalised as F.cosine_similarity does (eps 1e-8), so
        that the dot product of two addresses is the cosine similarity of the class doc."""
        return unit(F.linear(x, self.key.weight), eps=1e-8)

    def _compete(self, sim: Tensor, usage: Tensor, age: Tensor,
                 valid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The write of one input per example, from its cosine similarity to each slot (B, K).

        Returns the write weights w (B, K) (zero where ``valid`` (B, 1) is 0), their forward value without
        gradient, and the written slots (B, top_k) (None for the dense write)."""
        match = torch.sigmoid((sim - self.match_threshold) / self.MATCH_WIDTH)  # (B, K)
        # usage_penalty * usage * (1 - stale / 2), stale = rank of age / (K - 1) (1 = least recently written)
        resist = usage * self._resistance(age)  # (B, K)
        score = match - resist * (1 - match) + self.tie_break  # (B, K)
        need_soft = self.top_k != 1 or torch.is_grad_enabled()  # else only the winner matters
        soft = torch.softmax(score / self.temperature, dim=-1) if need_soft else None  # the slots compete for x
        if self.top_k is None:
            w = soft if valid is None else soft * valid
            return w, w.detach(), None
        top = score.topk(self.top_k, dim=-1).indices  # (B, top_k)
        if self.top_k == 1:  # the renormalised weight of a single winner is exactly 1 (0 if not valid)
            hard = torch.zeros_like(score).scatter_(-1, top, 1.0 if valid is None else valid)
        else:
            hard = torch.zeros_like(score).scatter_(-1, top, soft.detach().gather(-1, top))
            hard = hard / hard.sum(-1, keepdim=True)
            hard = hard if valid is None else hard * valid
        if not torch.is_grad_enabled():
            return hard, hard, top
        # forward: sparse top-k; backward: dense softmax. The bookkeeping (usage, age) takes hard itself, as
        # (hard + soft) - soft would be hard only up to rounding: same-cycle writes then tie exactly in age.
        straight_through = soft - soft.detach()
        return hard + (straight_through if valid is None else straight_through * valid), hard, top

    supports_inplace = True  # receive(..., inplace=True): see Workspace.cycle

    def receive(
        self, state: WorkingMemoryState, broadcast: Tensor, mask: Tensor | None = None, inplace: bool = False
    ) -> tuple[WorkingMemoryState, dict]:
        """Write the k broadcast items (B, k, d), in order, into the slots. One call = one cycle. With
        ``inplace`` (no autograd, top-k write) the slots are written in the given state's tensor (no copy;
        ``state`` is consumed); otherwise it has no effect."""
        B, k, d = broadcast.shape
        valid = broadcast.new_ones(B, k) if mask is None else mask.to(broadcast.dtype)  # (B, k)
        if self.top_k is not None and not torch.is_grad_enabled():
            return self._receive_sparse(state, broadcast, valid, inplace)
        # What depends on the inputs alone is computed for all k at once; the loop keeps their order.
        addresses = self._address(broadcast)  # (B, k, d)
        gate_x = self.gate_x(broadcast).unsqueeze(2)  # (B, k, 1, d)
        items = broadcast.unsqueeze(2)  # (B, k, 1, d)
        slots, usage, age = state.slots, state.usage, state.age
        full = torch.ones_like(usage)
        all_w = []
        for i in range(k):
            # The competition reads the slots' contents as constants: its gradient trains the addressing
            # (W_k, the items' addresses) but does not run back through earlier contents. Through the sharp
            # match sigmoid and softmax, that path multiplies the gradient by up to ~50 per write, which
            # overflows float32 within a hundred writes (a GraphSearch episode at 100 vertices has thousands).
            slot_key = F.linear(slots.detach(), self.key.weight)  # (B, K, d)
            slot_gate = F.linear(slots, self.gate_s.weight)  # (B, K, d)
            sim = matvec(unit(slot_key, eps=1e-8), addresses[:, i])  # (B, K) cosine
            w, w_fast, _ = self._compete(sim, usage, age, valid[:, i, None])  # (B, K)
            gate = torch.sigmoid(gate_x[:, i] + slot_gate)  # (B, K, d)
            slots = torch.lerp(slots, items[:, i], w.unsqueeze(-1) * gate)  # slot + w g (x - slot)
            usage = usage.lerp(full, w_fast)  # usage + w (1 - usage)
            age = age.addcmul(age, w_fast, value=-1)  # age (1 - w)
            all_w.append(w)
        with torch.no_grad():  # the key cache of the next inference cycle (autograd recomputes it)
            keys = F.linear(slots.detach(), self.key.weight)
        age = age + 1  # one cycle passed for every slot
        write = torch.stack(all_w, dim=1) if all_w else broadcast.new_zeros(B, 0, self.slots)
        return WorkingMemoryState(slots, usage, age, keys), {"write_weights": write}  # (B, k, K)

    def _receive_sparse(self, state: WorkingMemoryState, broadcast: Tensor, valid: Tensor,
                        inplace: bool) -> tuple[WorkingMemoryState, dict]:
        """``receive`` without autograd, top-k write: the same numbers (up to rounding) in fewer operations.

        A top-k write changes only the top_k chosen slots (the others move by exactly 0), so only their gates
        and keys are computed: top_k instead of K rows of d x d products. The slots and their keys (fresh
        contiguous copies unless ``inplace``) and the slots' write addresses are updated in place row by row. The
        per-item tensors are kept (B, 1, K) / (B, top_k, d), so that no step needs a reshape, and the
        match sigmoid's shift and scale ride on the similarity product (its bias and the inputs' scale)."""
        B, k, d = broadcast.shape
        K, top_k = self.slots, self.top_k
        slots, usage, age = state.slots, state.usage.unsqueeze(1), state.age.unsqueeze(1)  # (B, 1, K)
        keys = self._slot_keys(state)  # (B, K, d)
        if not inplace or not slots.is_contiguous():
            slots = slots.clone(memory_format=torch.contiguous_format)
        if (keys is state.keys and not inplace) or not keys.is_contiguous():
            keys = keys.clone(memory_format=torch.contiguous_format)
        slot_addr = unit(keys, eps=1e-8)  # (B, K, d)
        # rows of the (B K, d) views: whole rows are copied (index_select / index_copy_ on dim 0 are several
        # times faster than gather / scatter_ along dim 1 at large batch)
        flat_slots, flat_keys, flat_addr = slots.view(B * K, d), keys.view(B * K, d), slot_addr.view(B * K, d)
        base = torch.arange(0, B * K, K, device=slots.device).view(B, 1)  # (B, 1) each stream's first row
        compiling, streams = torch.compiler.is_compiling(), base // K  # (B, 1) the stream index
        slot_addr_t = slot_addr.transpose(1, 2)  # (B, d, K), a view: the row updates show through
        # (sim - threshold) / width = addr_x / width . addr_slot - threshold / width
        shift = broadcast.new_full((1, 1, 1), -self.match_threshold / self.MATCH_WIDTH)
        addresses = (self._address(broadcast) * (1.0 / self.MATCH_WIDTH)).unsqueeze(2).unbind(1)  # k x (B, 1, d)
        gate_x = self.gate_x(broadcast)  # (B, k, d)
        if top_k == 1:  # a masked item's gate is 0 (sigmoid(-inf)): its slot moves by exactly 0
            gate_x = gate_x.masked_fill(valid.unsqueeze(-1) == 0, float("-inf"))
        gate_x, items = gate_x.unsqueeze(2).unbind(1), broadcast.unsqueeze(2).unbind(1)  # k x (B, 1, d)
        valid_w = valid.view(B, k, 1, 1).unbind(1)  # k x (B, 1, 1)
        full = torch.ones_like(usage)
        all_w = []
        for i in range(k):
            match = torch.baddbmm(shift, addresses[i], slot_addr_t).sigmoid_()  # (B, 1, K)
            score = self._score(match, usage, age)  # (B, 1, K)
            if top_k == 1:  # the renormalised weight of a single winner is exactly 1 (0 if not valid)
                top = score.argmax(-1, keepdim=True)  # (B, 1, 1)
                w = torch.zeros_like(score).scatter_(-1, top, valid_w[i])
            else:
                soft = torch.softmax(score / self.temperature, dim=-1)  # the slots compete for x
                top = score.topk(top_k, dim=-1).indices  # (B, 1, top_k)
                w = torch.zeros_like(score).scatter_(-1, top, soft.gather(-1, top))
                w = w / w.sum(-1, keepdim=True) * valid_w[i]
            rows = (top.view(B, top_k) + base).view(-1)  # (B top_k,) the chosen rows
            chosen = flat_slots.index_select(0, rows).view(B, top_k, d)
            gate = F.linear(chosen, self.gate_s.weight).add_(gate_x[i]).sigmoid_()  # (B, top_k, d)
            if top_k != 1:  # the weights of the chosen slots
                gate = gate.mul_(w.gather(-1, top).view(B, top_k, 1))
            chosen = torch.lerp(chosen, items[i], gate)  # (B, top_k, d) slot + w g (x - slot)
            chosen_keys = F.linear(chosen, self.key.weight)
            written = [(slots, flat_slots, chosen), (keys, flat_keys, chosen_keys)]
            if i < k - 1:  # the next item competes against the new contents
                written.append((slot_addr, flat_addr, unit(chosen_keys, eps=1e-8)))
            for whole, flat, new in written:
                if compiling:  # indexed by (stream, slot): through the flat view, the compiler copies the tensor twice
                    whole.index_put_((streams, top.view(B, top_k)), new)
                else:
                    flat.index_copy_(0, rows, new.view(-1, d))
            usage = usage.lerp(full, w)  # usage + w (1 - usage)
            age = age.addcmul(age, w, value=-1)  # age (1 - w)
            all_w.append(w)
        age = age + 1  # one cycle passed for every slot
        write = torch.cat(all_w, dim=1) if all_w else broadcast.new_zeros(B, 0, K)  # (B, k, K)
        return WorkingMemoryState(slots, usage.squeeze(1), age.squeeze(1), keys), {"write_weights": write}

    def _age_rank(self, age: Tensor) -> Tensor:
        """The rank of each slot's age among the slots (..., K), 0 = most recently written, ties in slot order (a
        stable argsort's ranks). Compiled, counted as how many slots come before each one (K x K comparisons in
        one fused pass, float); eager, two sorts of K items (fewer, cheaper ops)."""
        if torch.compiler.is_compiling():
            other, own = age.unsqueeze(-2), age.unsqueeze(-1)  # (..., 1, K) slot i, (..., K, 1) slot j
            return ((other < own).to(age.dtype) + (other == own).to(age.dtype) * self.earlier).sum(-1)
        return age.argsort(dim=-1, stable=True).argsort(dim=-1)

    def _resistance(self, age: Tensor) -> Tensor:
        """usage_penalty * (1 - stale / 2) of each slot (..., K), stale = its age rank / (K - 1)."""
        return self.usage_penalty - self._age_rank(age) * self.resist_step

    def _score(self, match: Tensor, usage: Tensor, age: Tensor) -> Tensor:
        """The write score of every slot (..., K) from its match, usage and age (see the class doc):
        match - resist (1 - match) + tie_break, resist = usage * usage_penalty * (1 - stale / 2)."""
        resist = usage * self._resistance(age)
        return torch.addcmul(match + self.tie_break, resist, match).sub_(resist)
