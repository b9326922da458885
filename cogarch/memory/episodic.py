"""Episodic memory after EM-LLM ("Human-like Episodic Memory for Infinite Context LLMs", Fountas et al.).

The item stream is cut into events where surprise peaks (a boundary at t when surprise_t exceeds the mean plus
gamma standard deviations of the surprises of the previous ``window`` steps); when an event closes, the
boundary before it is refined by modularity maximisation on the similarity graph of the items it separates;
recall is two-stage: the events most similar to the query, then their temporal neighbours (contiguity).
"""
# B batch, P capacity (ring-buffer item slots), d model dim, W surprise window, L max_event_len,
# E recalled events = top_k_events * (1 + 2 * neighbours), m = E * L candidates, n refinement span length

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import Tensor, nn

__all__ = ["EpisodicMemory", "EpisodicState", "split_modularity"]

_TOL = 1e-4  # absolute margin on the threshold: float noise on a constant stream must not cut events
_BIG = torch.iinfo(torch.long).max


class EpisodicState(NamedTuple):
    """Fixed-size episodic state; the item of time t lives in ring slot t % P."""

    items: Tensor  # (B, P, d) stored items (detached)
    event_ids: Tensor  # (B, P) long event id of each slot, -1 empty; ids are consecutive over time
    times: Tensor  # (B, P) long time index of each slot, -1 empty
    step: Tensor  # (B,) long items observed so far (the next item's time)
    cur_event: Tensor  # (B,) long id of the event being filled, -1 before the first item
    cur_start: Tensor  # (B,) long time of the current event's first item
    prev_start: Tensor  # (B,) long first time of the event before it; -1 when the boundary between is hard
    cur_sum: Tensor  # (B, d) sum of the current event's unit-normalised items; its mean predicts the next
    is_open: Tensor  # (B,) bool; False after end_episode (the next item starts a new event)
    surprise_hist: Tensor  # (B, W) ring of the last W surprises
    hist_count: Tensor  # (B,) long surprises pushed so far


def split_modularity(adj: Tensor) -> Tensor:
    """Modularity of every contiguous two-way split of a weighted graph.

    adj (n, n): symmetric, non-negative, zero diagonal. Returns (n + 1,): entry p is the Newman modularity
    of the partition {[0, p), [p, n)} (p = 0 and p = n are the one-community partition, modularity 0)."""
    n = adj.shape[0]
    prefix = adj.new_zeros(n + 1, n + 1)
    prefix[1:, 1:] = adj.cumsum(0).cumsum(1)  # prefix[p, q] = sum_{i<p, j<q} adj
    deg_cum = F.pad(adj.sum(1).cumsum(0), (1, 0))  # (n + 1,) degree mass left of p
    two_m = deg_cum[-1].clamp(min=1e-12)
    p = torch.arange(n + 1, device=adj.device)
    left = prefix[p, p]
    right = prefix[n, n] - prefix[p, n] - prefix[n, p] + prefix[p, p]
    s_left, s_right = deg_cum, deg_cum[-1] - deg_cum
    return (left + right) / two_m - (s_left**2 + s_right**2) / two_m**2


class EpisodicMemory(nn.Module):
    """EM-LLM episodic memory: surprise segmentation, modularity refinement, similarity + contiguity recall.

    Source: Fountas et al., "Human-like Episodic Memory for Infinite Context LLMs" (EM-LLM).

    Inputs: ``observe(state, item (B, d), surprise (B,) | None, valid (B,) bool | None)``;
        ``propose/recall(state, query (B, d))``; ``receive(state, broadcast (B, k, d), mask (B, k))``.
    Outputs: ``observe`` -> (state, {"boundary": (B,) bool, "surprise": (B,), "moved": (B,) long});
        ``recall`` -> (items (B, m, d), mask (B, m) bool, {"event_ids": (B, E), "event_scores": (B, top_k)}).
    State: :class:`EpisodicState` (fixed size: a ring buffer of ``capacity`` items and a ``window`` of surprises).

    Surprise: given by the caller (e.g. a language model's token NLL), or else the squared distance of the
    unit-normalised item to the mean of the current event's n unit-normalised items, divided by (1 + 1/n)
    (its expected value is then the same for every n, so a fresh event's noisy mean does not cascade cuts). Boundaries: by surprise; a hard boundary at the first
    item and after ``end_episode``; a forced one when the current event reaches ``max_event_len`` items.
    Refinement (EM-LLM Alg. 1, run online): when the event that began at boundary b closes at t, b moves within
    the span (a, t) between its neighbouring boundaries to the split maximising the modularity of the items'
    similarity graph (adjacency max(cos, 0), zero diagonal), keeping both events <= ``max_event_len``.
    Recall: event representative = mean of its items; the ``top_k_events`` closed events with the highest
    cosine to ``query_proj(query)``, each with ``neighbours`` events before and after it; every recalled
    event contributes its items in time order, padded to ``max_event_len`` (m = E * max_event_len, duplicate
    neighbours masked). The open current event is the local context: ranked never, returned only as a neighbour.
    Writes are detached (EM-LLM's stored keys/values carry no gradient); ``event_scores`` is differentiable
    w.r.t. ``query_proj`` and the query, so a slow loss can train the read-out query.

    Args:
        dim: model dim d, >= 1.
        capacity: ring-buffer size in items, >= 2 * max_event_len (a refinement span must still be stored).
        window: tau, how many previous surprises set the threshold, >= 2.
        gamma: threshold in standard deviations, >= 0.
        top_k_events: k_s, events retrieved by similarity, 1..capacity.
        neighbours: contiguity buffer, events taken on each side of a retrieved one, >= 0.
        min_event_len: no surprise boundary before the current event holds this many items (EM-LLM's
            min_block_size), 1..max_event_len.
        max_event_len: longest event in items (also the per-event padding of recall), >= min_event_len.
        refine: refine boundaries by modularity.
        persistent: keep the contents over ``end_episode`` (else clear them).
    """

    source = "episodic"

    def __init__(self, dim: int, capacity: int = 256, window: int = 32, gamma: float = 1.0,
                 top_k_events: int = 2, neighbours: int = 1, min_event_len: int = 1, max_event_len: int = 32,
                 refine: bool = True, persistent: bool = True):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 1 <= min_event_len <= max_event_len:
            raise ValueError(f"need 1 <= min_event_len <= max_event_len, got {min_event_len}, {max_event_len}")
        if capacity < 2 * max_event_len:
            raise ValueError(f"capacity must be >= 2 * max_event_len = {2 * max_event_len}, got {capacity}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if not (gamma >= 0 and gamma < float("inf")):
            raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
        if not 1 <= top_k_events <= capacity:
            raise ValueError(f"top_k_events must be in [1, capacity={capacity}], got {top_k_events}")
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        self.dim, self.capacity, self.window, self.gamma = dim, capacity, window, float(gamma)
        self.top_k_events, self.neighbours = top_k_events, neighbours
        self.min_event_len, self.max_event_len = min_event_len, max_event_len
        self.refine, self.persistent = refine, persistent
        self.num_events = top_k_events * (1 + 2 * neighbours)  # E
        self.num_candidates = self.num_events * max_event_len  # m
        self.query_proj = nn.Linear(dim, dim, bias=False)  # the slow read-out query, identity at start
        with torch.no_grad():
            self.query_proj.weight.copy_(torch.eye(dim))

    def initial_state(self, batch_size: int, device=None) -> EpisodicState:
        dtype = self.query_proj.weight.dtype
        device = device if device is not None else self.query_proj.weight.device
        B, P, d, W = batch_size, self.capacity, self.dim, self.window
        long = dict(dtype=torch.long, device=device)
        return EpisodicState(
            items=torch.zeros(B, P, d, dtype=dtype, device=device),
            event_ids=torch.full((B, P), -1, **long), times=torch.full((B, P), -1, **long),
            step=torch.zeros(B, **long), cur_event=torch.full((B,), -1, **long),
            cur_start=torch.zeros(B, **long), prev_start=torch.full((B,), -1, **long),
            cur_sum=torch.zeros(B, d, dtype=dtype, device=device),
            is_open=torch.zeros(B, dtype=torch.bool, device=device),
            surprise_hist=torch.zeros(B, W, dtype=dtype, device=device), hist_count=torch.zeros(B, **long))

    # ---------------------------------------------------------------- writing: segmentation + refinement

    def observe(self, state: EpisodicState, item: Tensor, surprise: Tensor | None = None,
                valid: Tensor | None = None) -> tuple[EpisodicState, dict]:
        """Append one item per stream (rows with ``valid`` False are left untouched)."""
        B, P, W = item.shape[0], self.capacity, self.window
        item = item.detach().to(state.items.dtype)  # (B, d)
        valid = torch.ones(B, dtype=torch.bool, device=item.device) if valid is None else valid.bool()
        has_event = state.cur_event >= 0
        cur_len = state.step - state.cur_start  # (B,)
        unit = F.normalize(item, dim=-1)  # (B, d)
        if surprise is None:  # squared error of the event-mean prediction; / (1 + 1/n) makes its mean n-free
            n = cur_len.clamp(min=1).to(item.dtype)
            surprise = (unit - state.cur_sum / n[:, None]).pow(2).sum(-1) / (1 + 1 / n)
        surprise = surprise.detach().to(item.dtype)
        surprise = torch.where(has_event, surprise, torch.zeros_like(surprise))

        # threshold mu + gamma * sigma over the last W surprises (only those that exist)
        n_hist = state.hist_count.clamp(max=W)  # (B,)
        hmask = torch.arange(W, device=item.device) < n_hist[:, None]  # (B, W)
        cnt = n_hist.clamp(min=1).to(item.dtype)
        mu = (state.surprise_hist * hmask).sum(-1) / cnt
        sigma = (((state.surprise_hist - mu[:, None]) * hmask) ** 2).sum(-1).div(cnt).sqrt()
        by_surprise = (n_hist >= 2) & (surprise > mu + self.gamma * sigma + _TOL)
        hard = ~has_event | ~state.is_open
        by_surprise &= cur_len >= self.min_event_len
        boundary = valid & (hard | by_surprise | (cur_len >= self.max_event_len))

        event_ids, starts = state.event_ids, state.cur_start
        moved = torch.zeros(B, dtype=torch.long, device=item.device)
        todo = boundary & ~hard & (state.prev_start >= 0) if self.refine else torch.zeros_like(boundary)
        if bool(todo.any()):  # per stream: spans differ in length
            event_ids, starts = event_ids.clone(), starts.clone()
            for r in todo.nonzero().flatten().tolist():
                a, b, t = (int(x[r]) for x in (state.prev_start, state.cur_start, state.step))
                new_b = self._refine_boundary(state.items[r], a, b, t)
                if new_b != b:
                    span = torch.arange(a, t, device=item.device)
                    cur = int(state.cur_event[r])
                    event_ids[r, span % P] = torch.where(span < new_b, cur - 1, cur)
                    starts[r], moved[r] = new_b, new_b - b

        write = F.one_hot(state.step % P, P).bool() & valid[:, None]  # (B, P)
        new_event = state.cur_event + boundary.long()
        push = valid & has_event
        hist_write = F.one_hot(state.hist_count % W, W).bool() & push[:, None]  # (B, W)
        v = valid[:, None]
        new_state = EpisodicState(
            items=torch.where(write[..., None], item[:, None], state.items),
            event_ids=torch.where(write, new_event[:, None], event_ids),
            times=torch.where(write, state.step[:, None], state.times),
            step=state.step + valid.long(),
            cur_event=new_event,
            cur_start=torch.where(boundary, state.step, starts),
            prev_start=torch.where(boundary, torch.where(hard, -1, starts), state.prev_start),
            cur_sum=torch.where(boundary[:, None], unit, torch.where(v, state.cur_sum + unit, state.cur_sum)),
            is_open=state.is_open | valid,
            surprise_hist=torch.where(hist_write, surprise[:, None], state.surprise_hist),
            hist_count=state.hist_count + push.long())
        return new_state, {"boundary": boundary, "surprise": surprise, "moved": moved}

    def _refine_boundary(self, items: Tensor, a: int, b: int, t: int) -> int:
        """Move boundary b between events [a, b) and [b, t) to the modularity-maximising split."""
        L, s = self.max_event_len, self.min_event_len
        lo, hi = max(a + s, t - L), min(t - s, a + L)  # both events keep min..max_event_len items
        if hi <= lo:
            return b if lo > hi else lo
        x = F.normalize(items[torch.arange(a, t, device=items.device) % self.capacity], dim=-1)  # (n, d)
        adj = (x @ x.T).clamp(min=0).fill_diagonal_(0)  # (n, n)
        q = split_modularity(adj)
        cand = torch.arange(lo - a, hi - a + 1, device=items.device)
        best = int(cand[q[cand].argmax()])
        return b if q[b - a] >= q[best] - 1e-6 else a + best  # ties keep the surprise boundary

    # ---------------------------------------------------------------- reading: similarity + contiguity

    def recall(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Two-stage recall; pure read. Returns items (B, m, d), mask (B, m), inspection dict."""
        B, P = state.event_ids.shape
        L, d = self.max_event_len, self.dim
        dev = query.device
        ids, filled = state.event_ids, state.event_ids >= 0  # (B, P)
        base = torch.where(filled, ids, _BIG).min(-1).values.clamp(max=_BIG - P)  # (B,) oldest stored id
        rel = torch.where(filled, ids - base[:, None], 0)  # (B, P) stored ids are consecutive: rel in [0, P)
        sums = torch.zeros_like(state.items).scatter_add(
            1, repeat(rel, "b p -> b p d", d=d), state.items * filled[..., None])  # (B, P, d) per event slot
        counts = torch.zeros(B, P, dtype=state.items.dtype, device=dev).scatter_add(1, rel, filled.to(sums.dtype))
        reps = sums / counts.clamp(min=1)[..., None]  # (B, P, d) event means
        slot_id = base[:, None] + torch.arange(P, device=dev)  # (B, P) event id of each event slot
        closed = (counts > 0) & ((slot_id < state.cur_event[:, None]) | ~state.is_open[:, None])
        q = F.normalize(self.query_proj(query), dim=-1)  # (B, d)
        scores = einsum(q, F.normalize(reps, dim=-1), "b d, b p d -> b p").masked_fill(~closed, float("-inf"))
        top_scores, top_rel = scores.topk(self.top_k_events, dim=-1)  # (B, k_s)
        top_ok = torch.isfinite(top_scores)

        offsets = torch.arange(-self.neighbours, self.neighbours + 1, device=dev)
        ev_rel = rearrange(top_rel[..., None] + offsets, "b k o -> b (k o)")  # (B, E)
        in_range = (ev_rel >= 0) & (ev_rel < P)
        ev_ok = repeat(top_ok, "b k -> b (k o)", o=len(offsets)) & in_range
        ev_ok &= counts.gather(1, ev_rel.clamp(0, P - 1)) > 0
        earlier = torch.ones(self.num_events, self.num_events, dtype=torch.bool, device=dev).tril(-1)
        dup = ((ev_rel[:, :, None] == ev_rel[:, None, :]) & ev_ok[:, None, :] & earlier).any(-1)  # (B, E)
        ev_ok &= ~dup
        ev_ids = torch.where(ev_ok, base[:, None] + ev_rel, -1)  # (B, E)

        match = (ids[:, None, :] == ev_ids[:, :, None]) & ev_ok[..., None]  # (B, E, P)
        key = torch.where(match, state.times[:, None, :], _BIG)
        key, pos = key.topk(L, dim=-1, largest=False)  # (B, E, L) each event's slots in time order
        mask = rearrange(key < _BIG, "b e l -> b (e l)")  # (B, m)
        pos = rearrange(pos, "b e l -> b (e l)")
        out = state.items.gather(1, repeat(pos, "b m -> b m d", d=d)) * mask[..., None]  # (B, m, d)
        info = {"event_ids": ev_ids, "event_scores": torch.where(top_ok, top_scores, torch.zeros_like(top_scores))}
        return out, mask, info

    # ---------------------------------------------------------------- the memory protocol

    def propose(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        return self.recall(state, query)

    def receive(self, state: EpisodicState, broadcast: Tensor, mask: Tensor | None = None,
                surprise: Tensor | None = None) -> tuple[EpisodicState, dict]:
        """Observe the (masked) mean of this cycle's winners; a row with no valid winner is skipped."""
        w = torch.ones(broadcast.shape[:2], dtype=broadcast.dtype, device=broadcast.device) if mask is None \
            else mask.to(broadcast.dtype)  # (B, k)
        n = w.sum(-1)  # (B,)
        mean = einsum(broadcast, w, "b k d, b k -> b d") / n.clamp(min=1)[:, None]
        return self.observe(state, mean, surprise, valid=n > 0)

    def end_episode(self, state: EpisodicState) -> EpisodicState:
        if not self.persistent:
            return self.initial_state(state.step.shape[0], device=state.step.device)
        return state._replace(is_open=torch.zeros_like(state.is_open))  # next item starts a new event

    # ---------------------------------------------------------------- inspection

    def segments(self, state: EpisodicState, row: int = 0) -> list[tuple[int, int, int]]:
        """The stored events of one stream in time order: (event id, first time, number of stored items)."""
        filled = state.event_ids[row] >= 0
        order = state.times[row][filled].argsort()
        ids, times = state.event_ids[row][filled][order].tolist(), state.times[row][filled][order].tolist()
        out: list[tuple[int, int, int]] = []
        for e, t in zip(ids, times):
            if out and out[-1][0] == e:
                out[-1] = (e, out[-1][1], out[-1][2] + 1)
            else:
                out.append((e, t, 1))
        return out
