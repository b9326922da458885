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
from torch import Tensor, nn

from cogarch.memory._ops import define_op, matvec, matvec_unit, unit

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
    # The event table (recall="events"; M = max_events rows, M = 0 with recall="items"): event id e lives in
    # row e % M, so the table holds the last M events, kept up to date as items arrive and boundaries move.
    event_stats: Tensor  # (B, M, d + 1) per row: the sum of the event's items, and its item count (last column)
    event_rows: Tensor  # (B, M) long the event id each row holds, -1 empty


def split_modularity(adj: Tensor) -> Tensor:
    """Modularity of every contiguous two-way split of a weighted graph.

    adj (..., n, n): symmetric, non-negative, zero diagonal (any leading axes are a batch of graphs).
    Returns (..., n + 1): entry p is the Newman modularity of the partition {[0, p), [p, n)} (p = 0 and
    p = n are the one-community partition, modularity 0). Nodes without edges change no entry, so a graph
    padded with isolated nodes at the end gives the same values for every p up to its own size."""
    n = adj.shape[-1]
    prefix = F.pad(adj.cumsum(-2).cumsum(-1), (1, 0, 1, 0))  # prefix[p, q] = sum_{i<p, j<q} adj
    deg_cum = F.pad(adj.sum(-1).cumsum(-1), (1, 0))  # (..., n + 1) degree mass left of p
    two_m = deg_cum[..., -1:].clamp(min=1e-12)
    left = prefix.diagonal(dim1=-2, dim2=-1)  # prefix[p, p]
    right = prefix[..., n, n, None] - prefix[..., :, n] - prefix[..., n, :] + left
    s_left, s_right = deg_cum, deg_cum[..., -1:] - deg_cum
    return (left + right) / two_m - (s_left**2 + s_right**2) / two_m**2


def _refine_spans(state: EpisodicState, rows: Tensor, capacity: int, max_event_len: int, min_event_len: int,
                  max_events: int, ok: Tensor | None = None) -> tuple[Tensor, ...]:
    """EM-LLM's refinement for the streams ``rows`` (R,) at once: boundary b between events [a, b) and [b, t)
    moves to the split of the span (a, t) that maximises the modularity of its items' similarity graph.

    Returns (slots, ids, b, new_b, table_rows, table): the span's ring slots (R, 2L) with the event id each then
    holds (the id it held where nothing moved), the old and new boundaries (R,), and the event table's rows
    (R, 2) of the two events with their recomputed sums and counts (R, 2, d + 1) (None without a table). With
    ``ok`` (R,) bool, rows where it is False keep their boundary (their other outputs are not to be written).

    The spans differ in length (<= 2 * max_event_len items); each is padded with zero items to that length,
    which are isolated nodes of its graph and so change no modularity (split_modularity)."""
    P, L, s = capacity, max_event_len, min_event_len
    a, b, t = state.prev_start[rows], state.cur_start[rows], state.step[rows]  # (R,)
    span = torch.arange(2 * L + 1, device=rows.device)  # (2L + 1,) split positions in a span
    pos = span[:-1]  # (2L,) offsets into the span
    in_span = pos < (t - a)[:, None]  # (R, 2L)
    slots = (a[:, None] + pos) % P  # (R, 2L)
    raw = state.items[rows[:, None], slots] * in_span[..., None]  # (R, 2L, d)
    x = unit(raw)
    adj = (x @ x.transpose(1, 2)).clamp(min=0)  # (R, 2L, 2L)
    adj.diagonal(dim1=1, dim2=2).zero_()
    q = split_modularity(adj)  # (R, 2L + 1)
    lo, hi = torch.maximum(a + s, t - L), torch.minimum(t - s, a + L)  # both events keep min..max items
    split = span[None] + a[:, None]  # (R, 2L + 1) the boundary time of each split
    allowed = (split >= lo[:, None]) & (split <= hi[:, None])
    best = torch.where(allowed, q, float("-inf")).argmax(-1)  # first maximum among the allowed splits
    # (b - a is in [0, 2L] in a row that refines; the clamp keeps rows where ok is False in range)
    q_b = q.gather(1, (b - a).clamp(0, 2 * L)[:, None]).squeeze(1)
    q_best = q.gather(1, best[:, None]).squeeze(1)
    new_b = torch.where(q_b >= q_best - 1e-6, b, a + best)  # ties keep the surprise boundary
    new_b = torch.where(hi < lo, b, torch.where(hi == lo, lo, new_b))  # no room: keep b / the one split
    if ok is not None:
        new_b = torch.where(ok, new_b, b)

    cur = state.cur_event[rows, None]
    relabel = in_span & (new_b != b)[:, None]  # (R, 2L) span slots of the streams whose boundary moved
    ids = torch.where(split[:, :-1] < new_b[:, None], cur - 1, cur)  # (R, 2L)
    # every span slot is written (a span's slots are distinct, as P >= 2L): the new id where the boundary
    # moved, else the id it holds (fixed shapes: no host sync to find the relabelled slots)
    new_ids = torch.where(relabel, ids, state.event_ids[rows[:, None], slots])
    table_rows = table = None
    if max_events:  # the table rows of events [a, new_b) and [new_b, t), recomputed from the span
        left = ids < cur  # (R, 2L) the span items of the earlier event (those past t are zero in raw)
        # two masked sums over the span, which a compiled graph fuses into one pass (a (R, 2, 2L) @ (R, 2L, d) bmm
        # is a BLAS call per stream)
        sums = torch.stack([(raw * left[..., None]).sum(1), (raw * ~left[..., None]).sum(1)], dim=1)  # (R, 2, d)
        counts = torch.stack([new_b - a, t - new_b], dim=1).to(raw.dtype)  # (R, 2)
        table_rows = (cur + torch.tensor([-1, 0], device=cur.device)) % max_events  # (R, 2)
        table = torch.cat([sums, counts.unsqueeze(-1)], dim=-1)  # (R, 2, d + 1)
    return slots, new_ids, b, new_b, table_rows, table


def _refine(state: EpisodicState, rows: Tensor, put, *spans: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_refine_spans` of the streams ``rows`` (R,), written: the new event ids (B, P), current starts
    (B,), moves (B,) and event table (B, M, d + 1); ``put`` is index_put or index_put_."""
    slots, new_ids, b, new_b, table_rows, table = _refine_spans(state, rows, *spans)
    event_ids = put(state.event_ids, (rows[:, None].expand_as(slots), slots), new_ids)
    starts = state.cur_start.index_put((rows,), new_b)
    moved = torch.zeros_like(state.cur_start).index_put((rows,), new_b - b)
    stats = state.event_stats
    if table is not None:
        stats = put(stats, (rows[:, None].expand_as(table_rows), table_rows), table)
    return event_ids, starts, moved, stats


def _refine_op(items: Tensor, event_ids: Tensor, event_stats: Tensor, step: Tensor, cur_event: Tensor,
               cur_start: Tensor, prev_start: Tensor, todo: Tensor, capacity: int, max_event_len: int,
               min_event_len: int, max_events: int) -> tuple[Tensor, Tensor]:
    """:func:`_refine` of the streams where ``todo`` (B,) is True, as the op ``cogarch::refine_boundaries_`` for
    compiled code (see cogarch.memory._ops): it writes ``event_ids`` and ``event_stats`` in place and returns the
    current events' starts (B,) and how far each boundary moved (B,). It picks the rows on the host."""
    rows = todo.nonzero().squeeze(1)
    if len(rows) == 0:
        return cur_start.clone(), torch.zeros_like(cur_start)
    state = EpisodicState(items, event_ids, None, step, cur_event, cur_start, prev_start, None, None, None, None,
                          event_stats, None)
    _, starts, moved, _ = _refine(state, rows, Tensor.index_put_, capacity, max_event_len, min_event_len,
                                  max_events)
    return starts, moved


define_op("refine_boundaries_(Tensor items, Tensor(a!) event_ids, Tensor(b!) event_stats, Tensor step, "
          "Tensor cur_event, Tensor cur_start, Tensor prev_start, Tensor todo, int capacity, int max_event_len, "
          "int min_event_len, int max_events) -> (Tensor, Tensor)", _refine_op,
          lambda items, event_ids, event_stats, step, cur_event, cur_start, *rest: (torch.empty_like(cur_start),
                                                                                    torch.empty_like(cur_start)))


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
    cosine to ``query_proj(query)``, each with ``neighbours`` events before and after it (duplicate neighbours
    masked). The open current event is the local context: ranked never, returned only as a neighbour. What a
    recalled event proposes depends on ``recall``:

    - ``"items"``: its stored items in time order, padded to ``max_event_len`` (m = E * max_event_len). The
      events are those with an item in the ring; recall scans the ring (cost ~ capacity per stream).
    - ``"events"``: one candidate, the mean of its items (m = E). The events are the last ``max_events``,
      whose item sums and counts the state keeps in an event table (updated as items arrive and when
      refinement moves a boundary), so recall never reads the item ring (cost ~ max_events). The ring is
      then read only by refinement, which needs the last 2 * max_event_len items.
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
        recall: ``"items"`` (default: every stored item of a recalled event is a candidate) or ``"events"``
            (one pooled candidate per recalled event, from the event table); see Recall above.
        max_events: rows of the event table with ``recall="events"``, >= max(2, top_k_events); None = capacity
            (the ring holds at most that many events, so every event with a stored item is in the table).
            Ignored with ``recall="items"``.

    ``observe``/``receive`` take ``inplace=True`` to write into the given state's tensors instead of copies
    (inference only, the caller must not reuse the input state; see ``Workspace.cycle``).
    """

    source = "episodic"
    graph_refine_rows = 64  # a compiled cycle refines at least this many closing streams in its graph (see below)

    def __init__(self, dim: int, capacity: int = 256, window: int = 32, gamma: float = 1.0,
                 top_k_events: int = 2, neighbours: int = 1, min_event_len: int = 1, max_event_len: int = 32,
                 refine: bool = True, persistent: bool = True, recall: str = "items",
                 max_events: int | None = None):
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
        if recall not in ("items", "events"):
            raise ValueError(f"recall must be 'items' or 'events', got {recall!r}")
        if max_events is not None and max_events < max(2, top_k_events):
            raise ValueError(f"max_events must be None or >= max(2, top_k_events={top_k_events}), got {max_events}")
        self.dim, self.capacity, self.window, self.gamma = dim, capacity, window, float(gamma)
        self.top_k_events, self.neighbours = top_k_events, neighbours
        self.min_event_len, self.max_event_len = min_event_len, max_event_len
        self.refine, self.persistent = refine, persistent
        self.recall_mode = recall
        # rows of the event table (none with recall="items": the table is not kept)
        self.max_events = (capacity if max_events is None else max_events) if recall == "events" else 0
        self._spans = (capacity, max_event_len, min_event_len, self.max_events)  # what refinement needs
        self.num_events = top_k_events * (1 + 2 * neighbours)  # E
        self.num_candidates = self.num_events * (max_event_len if recall == "items" else 1)  # m
        self.query_proj = nn.Linear(dim, dim, bias=False)  # the slow read-out query, identity at start
        with torch.no_grad():
            self.query_proj.weight.copy_(torch.eye(dim))
        # constant index tensors of the hot paths, made once (buffers, so they follow the module's device)
        for name, values in (("_window_pos", torch.arange(window)), ("_event_pos", torch.arange(max_event_len)),
                             ("_ring_pos", torch.arange(capacity + 1)),
                             ("_offsets", torch.arange(-neighbours, neighbours + 1)),
                             ("_earlier", torch.ones(self.num_events, self.num_events, dtype=torch.bool).tril(-1))):
            self.register_buffer(name, values, persistent=False)

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
            surprise_hist=torch.zeros(B, W, dtype=dtype, device=device), hist_count=torch.zeros(B, **long),
            event_stats=torch.zeros(B, self.max_events, d + 1, dtype=dtype, device=device),
            event_rows=torch.full((B, self.max_events), -1, **long))

    # ---------------------------------------------------------------- writing: segmentation + refinement

    def observe(self, state: EpisodicState, item: Tensor, surprise: Tensor | None = None,
                valid: Tensor | None = None, inplace: bool = False) -> tuple[EpisodicState, dict]:
        """Append one item per stream (rows with ``valid`` False are left untouched). With ``inplace`` the
        item ring and the event table of ``state`` are written in place (no copies; ``state`` is consumed)."""
        B, P, W = item.shape[0], self.capacity, self.window
        dtype = state.items.dtype
        item = item.detach()
        item = item if item.dtype == dtype else item.to(dtype)  # (B, d)
        valid = torch.ones(B, dtype=torch.bool, device=item.device) if valid is None else \
            valid if valid.dtype == torch.bool else valid.bool()
        has_event = state.cur_event >= 0
        cur_len = state.step - state.cur_start  # (B,)
        item_unit = unit(item)  # (B, d)
        if surprise is None:  # squared error of the event-mean prediction; / (1 + 1/n) makes its mean n-free
            n = cur_len.clamp(min=1).to(dtype)
            surprise = (item_unit - state.cur_sum / n[:, None]).square().sum(-1) / n.reciprocal().add_(1)
        else:
            surprise = surprise.detach()
            surprise = surprise if surprise.dtype == dtype else surprise.to(dtype)
        surprise = torch.where(has_event, surprise, 0.0)

        # threshold mu + gamma * sigma over the last W surprises (only those that exist)
        n_hist = state.hist_count.clamp(max=W)  # (B,)
        hmask = self._window_pos < n_hist[:, None]  # (B, W)
        cnt = n_hist.clamp(min=1).to(dtype)
        mu = (state.surprise_hist * hmask).sum(-1) / cnt
        sigma = (state.surprise_hist - mu[:, None]).mul_(hmask).square_().sum(-1).div_(cnt).sqrt_()
        by_surprise = (n_hist >= 2) & (surprise > mu + self.gamma * sigma + _TOL) & (cur_len >= self.min_event_len)
        hard = ~(has_event & state.is_open)
        boundary = valid & (hard | by_surprise | (cur_len >= self.max_event_len))

        # One ring slot (step % P) and one event table row of each stream change: those rows are read and
        # written back as rows of the flattened tensors (index_copy copies the tensor, index_copy_ writes into
        # the given one; both copy whole rows, several times faster than scatter at large batch), valid streams
        # taking the new values.
        put = Tensor.index_put_ if inplace else Tensor.index_put  # the refinement's writes (compiled: all row writes)
        copy_rows = Tensor.index_copy_ if inplace else Tensor.index_copy
        event_ids, starts, stats = state.event_ids, state.cur_start, state.event_stats
        moved = None
        compiling = torch.compiler.is_compiling()
        if self.refine:
            todo = boundary & ~hard & (state.prev_start >= 0)
            if compiling:
                event_ids, starts, moved, stats = self._refine_compiled(state, todo, inplace)
            elif bool(todo.any()):
                event_ids, starts, moved, stats = _refine(state, todo.nonzero().squeeze(1), put, *self._spans)
        if moved is None:
            moved = torch.zeros(B, dtype=torch.long, device=item.device)

        def write_rows(ts: list[Tensor], row: Tensor, news: list[Tensor]) -> list[Tensor]:
            """Each t (B, n, ...) of ts with row ``row`` (B,) of each stream set to its new (B, ...) where valid."""
            n = ts[0].shape[1]
            at = row + torch.arange(0, B * n, n, device=row.device)  # (B,) the rows of the flattened tensors
            flats = [t.reshape(B * t.shape[1], *t.shape[2:]) for t in ts]  # views (the state's are contiguous)
            news = [torch.where(valid.view(-1, *(1,) * (new.dim() - 1)), new, flat.index_select(0, at))
                    for flat, new in zip(flats, news)]
            if compiling:  # written through a flattened view, a tensor the refinement wrote too is copied onto itself
                index = (torch.arange(B, device=row.device), row)
                return [put(t, index, new) for t, new in zip(ts, news)]
            return [copy_rows(flat, 0, at, new).view(t.shape) for t, flat, new in zip(ts, flats, news)]

        new_event = state.cur_event + boundary
        push = valid & has_event
        event_rows = state.event_rows
        if self.max_events:  # the event table: the new event's row restarts, else the current one grows
            M = self.max_events
            row_e = new_event % M  # (B,) each stream's row of the table
            old = stats.reshape(B * M, -1).index_select(0, row_e + torch.arange(0, B * M, M, device=item.device))
            add = torch.cat([item, item.new_ones(B, 1)], dim=-1)  # (B, d + 1) the item and a count of 1
            stats, event_rows = write_rows([stats, event_rows], row_e,
                                           [torch.where(boundary[:, None], add, old + add), new_event])
        items, event_ids, times = write_rows([state.items, event_ids, state.times], state.step % P,
                                             [item, new_event, state.step])
        new_state = EpisodicState(
            items=items,
            event_ids=event_ids,
            times=times,
            step=state.step + valid,
            cur_event=new_event,
            cur_start=torch.where(boundary, state.step, starts),
            prev_start=torch.where(boundary, torch.where(hard, -1, starts), state.prev_start),
            cur_sum=torch.where(boundary[:, None], item_unit,
                                torch.where(valid[:, None], state.cur_sum + item_unit, state.cur_sum)),
            is_open=state.is_open | valid,
            surprise_hist=torch.where(push[:, None] & (self._window_pos == (state.hist_count % W)[:, None]),
                                      surprise[:, None], state.surprise_hist),
            hist_count=state.hist_count + push,
            event_stats=stats, event_rows=event_rows)
        return new_state, {"boundary": boundary, "surprise": surprise, "moved": moved}

    def _refine_compiled(self, state: EpisodicState, todo: Tensor, inplace: bool) -> tuple[Tensor, ...]:
        """The refinement of the streams where ``todo`` (B,) is True, in a compiled graph. The event ids and table
        are written with ``index_put_``, in place. Two ways, chosen when the graph is traced:

        - the compiler captures scalar outputs (``torch._dynamo.config.capture_scalar_outputs``, which
          ``cogarch.workspace.compile_cycle`` sets): the number n of closing streams is read on the host, a value
          the graph's shapes depend on, and the graph refines those n streams and no others;
        - else (no host sync): the first R = min(B, max(graph_refine_rows, B / 4)) of them in the graph itself, a
          fixed-size batch whose rows past the closing streams are masked; any more (many streams closing events at
          once) by the eager refinement as one op (see cogarch.memory._ops). At batch 256 about 21 streams close an
          event per cycle on the bench's random stream, so most of the R = 64 rows are work for nothing."""
        B = todo.shape[0]
        if torch._dynamo.config.capture_scalar_outputs:
            n = int(todo.sum().item())
            torch._check(n <= B)
            # (n,) the closing streams in order: each scattered to its rank among them (the others to a spare slot
            # B), one fused pass where an argsort was a sort call
            rank = torch.where(todo, todo.cumsum(0) - 1, B)
            rows = torch.zeros(B + 1, dtype=torch.long, device=todo.device).index_put_(
                (rank,), torch.arange(B, device=todo.device))[:n]
            return _refine(state, rows, Tensor.index_put_ if inplace else Tensor.index_put, *self._spans)
        event_ids, stats = (state.event_ids, state.event_stats) if inplace else \
            (state.event_ids.clone(), state.event_stats.clone())
        R = min(B, max(self.graph_refine_rows, B // 4))
        rows = (~todo).to(torch.int32).argsort(stable=True)[:R]  # (R,) the closing streams first
        ok = todo[rows]
        slots, new_ids, b, new_b, table_rows, table = _refine_spans(state, rows, *self._spans, ok=ok)
        # rows where ok is False write back what they hold (the (row, slot) pairs are distinct: no mask, no sync)
        at = (rows[:, None].expand_as(slots), slots)
        event_ids.index_put_(at, torch.where(ok[:, None], new_ids, event_ids[at]))
        if table is not None:
            at = (rows[:, None].expand_as(table_rows), table_rows)
            stats.index_put_(at, torch.where(ok[:, None, None], table, stats[at]))
        starts = state.cur_start.scatter(0, rows, new_b)
        moved = torch.zeros_like(starts).scatter(0, rows, new_b - b)
        if R < B:  # the closing streams past the first R
            starts, more = torch.ops.cogarch.refine_boundaries_(
                state.items, event_ids, stats, state.step, state.cur_event, starts, state.prev_start,
                todo.scatter(0, rows, False), *self._spans)
            moved = moved + more
        return event_ids, starts, moved, stats

    # ---------------------------------------------------------------- reading: similarity + contiguity

    def recall(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Two-stage recall; pure read. Returns candidates (B, m, d), mask (B, m), inspection dict."""
        return self._recall_events(state, query) if self.recall_mode == "events" else self._recall_items(state, query)

    def _contiguity(self, ev: Tensor, top_ok: Tensor, stored: Tensor) -> Tensor:
        """Which of the recalled events ev (B, E) (each top event, k_s of them, with its neighbours) are
        proposed: those of a valid top event (top_ok (B, k_s)) that are stored (B, E), each once."""
        ok = top_ok.repeat_interleave(len(self._offsets), dim=1) & stored
        dup = ((ev.unsqueeze(2) == ev.unsqueeze(1)) & ok.unsqueeze(1) & self._earlier).any(-1)  # (B, E)
        return ok & ~dup

    def _recall_events(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """recall="events": one pooled vector (the item mean) per recalled event, from the event table."""
        M, d = self.max_events, self.dim
        ids = state.event_rows  # (B, M)
        closed = (ids >= 0) & ((ids < state.cur_event[:, None]) | ~state.is_open[:, None])  # (B, M)
        q = F.linear(query, self.query_proj.weight)  # (B, d)
        sums = state.event_stats[..., :d]  # (B, M, d)
        # cosine to the event mean = (sum . q) / (|sum| |q|): the sums' norms divide the (B, M) scores, not the
        # sums. Compiled for inference, so does q's (matvec_unit); the product and the sums' norms are two fused
        # loops over the table in one kernel (torch 2.13 keeps them apart: the norms' loop runs over B * M rows, the
        # product's over (B, M); one reduction of both, stacked, ran 3x slower); eager, the product runs over the
        # whole contiguous rows (B, M, d + 1) with unit(q) padded by a 0 for the count column, as the BLAS call
        # would copy a strided (B, M, d) slice
        if torch.compiler.is_compiling() and not torch.is_grad_enabled():
            dots = matvec_unit(sums, q)  # (B, M)
        else:
            dots = matvec(state.event_stats, F.pad(unit(q), (0, 1)))  # (B, M)
        cosine = dots / torch.linalg.vector_norm(sums, dim=-1).clamp_min(1e-12)  # (B, M)
        top_scores, top_rows = torch.where(closed, cosine, float("-inf")).topk(self.top_k_events, dim=-1)
        top_ok = torch.isfinite(top_scores)  # (B, k_s)
        B = ids.shape[0]
        ev = (ids.gather(1, top_rows).unsqueeze(-1) + self._offsets).view(B, -1)  # (B, E) with neighbours
        rows = ev % M  # (B, E) their table rows; an event is stored while its row still holds it
        ok = self._contiguity(ev, top_ok, (ev >= 0) & (ids.gather(1, rows) == ev))
        flat = rows + M * torch.arange(B, device=ids.device)[:, None]  # (B, E) rows of the flattened table
        stats = state.event_stats.view(B * M, d + 1).index_select(0, flat.view(-1)).view(B, -1, d + 1)
        out = stats[..., :d] / stats[..., d:].clamp(min=1) * ok.unsqueeze(-1)  # (B, E, d) the event means
        info = {"event_ids": torch.where(ok, ev, -1), "event_scores": torch.where(top_ok, top_scores, 0.0)}
        return out, ok, info

    def _recall_items(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """recall="items": every stored item of each recalled event, padded to max_event_len per event."""
        B, P = state.event_ids.shape
        L, d, k_s = self.max_event_len, self.dim, self.top_k_events
        ids, filled = state.event_ids, state.event_ids >= 0  # (B, P)
        base = torch.where(filled, ids, _BIG).amin(-1).clamp(max=_BIG - P)  # (B,) oldest stored id
        # Event slot e = id - base of every stored item: stored ids are consecutive, so e in [0, P). Only the
        # S event slots that occur anywhere in the batch are made (at least k_s, for top-k), plus a spare
        # one, S, that collects the unfilled ring slots. Per event slot: sum of items, count, first time.
        rel = torch.where(filled, ids - base[:, None], -1)  # (B, P)
        S = max(int(rel.max()) + 1 if B else 0, k_s)
        rows = torch.arange(B, device=ids.device)[:, None]  # (B, 1)
        flat = torch.where(filled, rel, S).add_(rows * (S + 1)).view(-1)  # (B P,) event slot in the batch
        sums = state.items.new_zeros(B * (S + 1), d).index_add_(0, flat, state.items.reshape(B * P, d))
        counts = torch.bincount(flat, minlength=B * (S + 1)).view(B, S + 1)  # (B, S + 1)
        firsts = flat.new_zeros(B * (S + 1)).scatter_reduce_(
            0, flat, state.times.reshape(-1), "amin", include_self=False).view(B, S + 1)  # (B, S + 1)
        # closed: stored and older than the open current event (the spare slot S is never below the limit)
        limit = torch.where(state.is_open, state.cur_event - base, S)  # (B,)
        closed = (counts > 0) & (self._ring_pos[: S + 1] < limit[:, None])  # (B, S + 1)
        q = unit(self.query_proj(query))  # (B, d)
        # cosine to the event mean = cosine to the event sum (the count is a positive scale)
        scores = matvec(unit(sums.view(B, S + 1, d)), q)  # (B, S + 1)
        scores = torch.where(closed, scores, float("-inf"))
        top_scores, top_rel = scores.topk(k_s, dim=-1)  # (B, k_s)
        top_ok = torch.isfinite(top_scores)

        ev_rel = (top_rel.unsqueeze(-1) + self._offsets).view(B, -1)  # (B, E): each event with its neighbours
        ev_clamped = ev_rel.clamp(0, S - 1)
        ev_count = counts.gather(1, ev_clamped)  # (B, E)
        ev_ok = self._contiguity(ev_rel, top_ok, (ev_rel >= 0) & (ev_rel < S) & (ev_count > 0))
        ev_ids = torch.where(ev_ok, base[:, None] + ev_rel, -1)  # (B, E)

        # An event holds <= L items, stored at consecutive times (events are contiguous runs of the stream
        # and the ring keeps the last P times), so its items in time order sit at ring slots (first + l) % P.
        pos = (firsts.gather(1, ev_clamped).unsqueeze(-1) + self._event_pos) % P  # (B, E, L)
        mask = ((self._event_pos < ev_count.unsqueeze(-1)) & ev_ok.unsqueeze(-1)).view(B, -1)  # (B, m)
        flat_pos = pos.view(B, -1).add_(rows * P).view(-1)  # (B m,) rows of the flattened ring
        out = state.items.reshape(B * P, d).index_select(0, flat_pos).view(B, -1, d).mul_(mask.unsqueeze(-1))
        info = {"event_ids": ev_ids, "event_scores": torch.where(top_ok, top_scores, 0.0)}
        return out, mask, info  # (B, m, d), (B, m)

    # ---------------------------------------------------------------- the memory protocol

    def propose(self, state: EpisodicState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        return self.recall(state, query)

    supports_inplace = True  # receive(..., inplace=True): see Workspace.cycle

    def receive(self, state: EpisodicState, broadcast: Tensor, mask: Tensor | None = None,
                surprise: Tensor | None = None, inplace: bool = False) -> tuple[EpisodicState, dict]:
        """Observe the (masked) mean of this cycle's winners; a row with no valid winner is skipped."""
        w = torch.ones(broadcast.shape[:2], dtype=broadcast.dtype, device=broadcast.device) if mask is None \
            else mask.to(broadcast.dtype)  # (B, k)
        n = w.sum(-1)  # (B,)
        mean = torch.bmm(w.unsqueeze(1), broadcast).squeeze(1) / n.clamp(min=1)[:, None]
        return self.observe(state, mean, surprise, valid=n > 0, inplace=inplace)

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
