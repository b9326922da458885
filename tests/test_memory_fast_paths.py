"""The memories' fast paths against plain references: working memory's inference write (only the chosen
slots are recomputed) equals its autograd write; episodic recall (event statistics by index_add, each
event's items located from its first stored time) equals recall computed from the stored segments."""

import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.episodic import EpisodicMemory
from cogarch.memory.working import WorkingMemory


@pytest.mark.parametrize("top_k", [1, 2, None])
def test_working_memory_inference_write_equals_autograd_write(top_k):
    torch.manual_seed(0)
    wm = WorkingMemory(32, slots=6, top_k=top_k)
    with torch.no_grad():  # non-trivial slow weights, so the gates and the address projection matter
        for p in wm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    B, k, T = 4, 3, 40
    xs = F.normalize(torch.randn(T, B, k, 32, generator=g), dim=-1)
    xs[10:20, :, 2] = xs[0:10, :, 0]  # rehearsals: in-place updates
    masks = torch.rand(T, B, k, generator=g) > 0.2
    runs = []
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            state, weights = wm.initial_state(B), []
            for t in range(T):
                state = type(state)(*(s.detach() for s in state))
                state, info = wm.receive(state, xs[t], masks[t])
                weights.append(info["write_weights"].detach())
        runs.append([*(s.detach() for s in state), torch.stack(weights)])
    for fast, reference in zip(*runs):
        assert torch.allclose(fast, reference, atol=1e-5)


def test_working_memory_items_written_in_one_cycle_tie_exactly_in_age():
    # The bookkeeping takes the exact forward write weight (1 for a single winner), not the straight-through
    # expression, whose rounding would leave same-cycle writes at ages 1 +- 1e-7 and let that noise pick
    # the least recently written slot.
    wm = WorkingMemory(16, slots=4)
    xs = F.normalize(torch.randn(2, 1, 3, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            state, _ = wm.receive(wm.initial_state(1), xs[0])
            state, _ = wm.receive(state, torch.zeros(1, 1, 16), torch.zeros(1, 1, dtype=torch.bool))  # ages 2
            state, info = wm.receive(state, xs[1])  # one free slot, then two displacements
        written = info["write_weights"][0].detach().argmax(-1)
        assert len(set(written.tolist())) == 3
        assert (state.age[0, written] == 1).all()  # exactly


@torch.no_grad()
def reference_recall(mem, state, query, row=0):
    """Recall of one stream from its stored segments, written plainly: event means, top-k closed events by
    cosine, their neighbours, each event's items in time order padded to max_event_len."""
    segs = mem.segments(state, row)  # (event id, first time, count), time order
    items = {int(t): state.items[row, t % mem.capacity] for t in state.times[row].tolist() if t >= 0}
    cur, is_open = int(state.cur_event[row]), bool(state.is_open[row])
    q = F.normalize(mem.query_proj(query[row]), dim=-1)
    scores = {}
    for e, t0, n in segs:
        if e < cur or not is_open:
            mean = torch.stack([items[t] for t in range(t0, t0 + n)]).mean(0)
            scores[e] = float(q @ F.normalize(mean, dim=-1))
    top = sorted(scores, key=lambda e: -scores[e])[: mem.top_k_events]
    by_id = {e: (t0, n) for e, t0, n in segs}
    chosen = []
    for e in top:
        for o in range(-mem.neighbours, mem.neighbours + 1):
            if e + o in by_id and e + o not in chosen:
                chosen.append(e + o)
    return {e: torch.stack([items[t] for t in range(by_id[e][0], by_id[e][0] + by_id[e][1])]) for e in chosen}


def test_episodic_recall_equals_recall_from_segments():
    torch.manual_seed(0)
    mem = EpisodicMemory(16, capacity=40, window=8, gamma=0.5, top_k_events=2, neighbours=1, max_event_len=8)
    g = torch.Generator().manual_seed(3)
    B, T = 3, 150  # the ring wraps several times; the oldest stored event is partly overwritten
    xs = torch.randn(T, B, 16, generator=g) + 3 * torch.randn(T // 6 + 1, B, 16, generator=g).repeat_interleave(6, 0)[:T]
    state = mem.initial_state(B)
    for t in range(T):
        if t == 100:
            state = mem.end_episode(state)  # the open event closes
        state, _ = mem.observe(state, xs[t])
        if t in (60, 101, 149):
            query = torch.randn(B, 16, generator=g)
            cands, mask, info = mem.recall(state, query)
            L = mem.max_event_len
            for b in range(B):
                expect = reference_recall(mem, state, query, b)
                got = {}
                for j, e in enumerate(info["event_ids"][b].tolist()):
                    if e >= 0:
                        block = slice(j * L, (j + 1) * L)
                        got[e] = cands[b, block][mask[b, block]]
                assert got.keys() == expect.keys()
                for e in expect:
                    assert torch.allclose(got[e], expect[e], atol=1e-6)


def test_working_memory_key_cache_matches_the_slots_and_autograd_ignores_it():
    # The state caches W_k slots for inference (read and write share it); it must equal the keys computed from
    # the slots after inference writes, and autograd must recompute them (gradients, changed weights).
    torch.manual_seed(0)
    wm = WorkingMemory(16, slots=4)
    with torch.no_grad():
        for p in wm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    xs = torch.randn(6, 2, 3, 16)
    with torch.inference_mode():
        state = wm.initial_state(2)
        assert torch.equal(state.keys, F.linear(state.slots, wm.key.weight))
        for x in xs:
            state, _ = wm.receive(state, x)
        assert torch.allclose(state.keys, F.linear(state.slots, wm.key.weight), atol=1e-6)
        assert all(t.abs().sum() == 0 for t in wm.end_episode(state))
    state = type(state)(*(t.clone() for t in state))
    with torch.no_grad():
        wm.key.weight.mul_(2.0)  # the cache is now stale
    query = torch.randn(2, 16)
    fresh = state._replace(keys=F.linear(state.slots, wm.key.weight))
    _, _, info = wm.propose(state, query)  # autograd on: recomputed from the slots
    _, _, expected = wm.propose(fresh, query)
    assert torch.allclose(info["read_weights"], expected["read_weights"], atol=1e-6)
    info["read_weights"].sum().backward()
    assert wm.key.weight.grad is not None
