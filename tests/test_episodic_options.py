"""EpisodicMemory(recall="events"): the event table holds each event's item sum and count, kept up to date
as items arrive and as refinement moves boundaries; recall proposes one pooled vector (the item mean) per
recalled event, from the table alone; batched equals single streams; observe(inplace=True) equals the
value path."""

import pytest
import torch

from cogarch.memory.episodic import EpisodicMemory

D = 16


def stream(T, B, k=None, seed=0, period=15):
    """Items drawn around a centre that changes every ``period`` steps (so surprise cuts events)."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, B, D) if k is None else (T, B, k, D)
    centres = torch.randn(T // period + 1, B, *shape[2:], generator=g).repeat_interleave(period, 0)[:T]
    return torch.randn(*shape, generator=g) + 3 * centres


def pair(**kw):
    """The same memory (same weights) with recall="items" and recall="events"."""
    torch.manual_seed(0)
    items = EpisodicMemory(D, **kw)
    events = EpisodicMemory(D, recall="events", **kw)
    events.load_state_dict(items.state_dict())
    return items, events


def table_from_items(mem, state, row):
    """{event id: (sum of its items, count)} computed plainly from the stored segments of one stream."""
    out = {}
    for e, t0, n in mem.segments(state, row):
        out[e] = (torch.stack([state.items[row, t % mem.capacity] for t in range(t0, t0 + n)]).sum(0), n)
    return out


def test_event_table_tracks_every_event_through_refinement():
    kw = dict(capacity=400, window=8, gamma=0.5, max_event_len=12, max_events=8)  # the ring never wraps
    _, mem = pair(**kw)
    xs, B = stream(300, 2), 2
    state, moved = mem.initial_state(B), 0
    for t in range(300):
        if t == 200:
            state = mem.end_episode(state)
        state, info = mem.observe(state, xs[t])
        moved += int(info["moved"].ne(0).sum())
    assert moved > 0  # refinement moved boundaries, and the table followed
    for b in range(B):
        expect = table_from_items(mem, state, b)
        rows = {int(e): r for r, e in enumerate(state.event_rows[b].tolist()) if e >= 0}
        assert len(expect) > mem.max_events  # more events than rows: only the last max_events are kept
        last = sorted(expect)[-mem.max_events:]
        assert sorted(rows) == last
        for e in last:
            total, n = expect[e]
            stats = state.event_stats[b, rows[e]]
            assert int(stats[-1]) == n and torch.allclose(stats[:-1], total, atol=1e-4)


def test_events_recall_is_the_mean_of_what_items_recall_returns():
    # While the ring keeps every item and the table every event, both modes recall the same events, and
    # "events" proposes for each the mean of the items that "items" proposes.
    items, events = pair(capacity=160, window=8, gamma=0.5, top_k_events=2, neighbours=1, max_event_len=12)
    B, T, L = 3, 150, items.max_event_len
    xs, g = stream(T, B, seed=1), torch.Generator().manual_seed(2)
    si, se = items.initial_state(B), events.initial_state(B)
    for t in range(T):
        if t == 100:
            si, se = items.end_episode(si), events.end_episode(se)
        si, _ = items.observe(si, xs[t])
        se, _ = events.observe(se, xs[t])
        for a, b in zip(si[:11], se[:11]):  # the fields both modes keep are the same
            assert torch.equal(a, b)
        query = torch.randn(B, D, generator=g)
        ci, mi, ii = items.recall(si, query)
        ce, me, ie = events.recall(se, query)
        assert ce.shape == (B, events.num_events, D) and events.num_candidates == events.num_events
        assert torch.equal(ii["event_ids"], ie["event_ids"]) and torch.equal(me, ie["event_ids"] >= 0)
        assert torch.allclose(ii["event_scores"], ie["event_scores"], atol=1e-5)
        for b in range(B):
            for j in range(events.num_events):
                block = slice(j * L, (j + 1) * L)
                if me[b, j]:
                    assert torch.allclose(ci[b, block][mi[b, block]].mean(0), ce[b, j], atol=1e-5)
                else:
                    assert not mi[b, block].any() and not ce[b, j].any()


def test_events_older_than_the_table_are_not_recalled():
    _, mem = pair(capacity=400, window=8, gamma=0.5, max_event_len=12, max_events=4, top_k_events=1, neighbours=0)
    xs = stream(300, 1)
    state = mem.initial_state(1)
    for t in range(300):
        state, _ = mem.observe(state, xs[t])
    first = mem.segments(state)[0]  # the first event: its items are still in the ring, its row reused
    _, mask, info = mem.recall(state, state.items[:, first[1]])
    assert int(state.event_rows.min()) == int(state.cur_event) - 3
    assert first[0] not in info["event_ids"].tolist()[0] and bool(mask.any())


def test_events_batch_equals_single_streams_and_inplace_equals_value():
    torch.manual_seed(0)
    mem = EpisodicMemory(D, capacity=48, window=8, gamma=0.5, max_event_len=12, recall="events", max_events=6)
    B, k, T = 3, 2, 90
    xs = stream(T, B, k=k)
    masks = torch.rand(T, B, k) > 0.2
    queries = torch.randn(T, B, D)

    def run(rows, inplace):
        state, infos, recalls = mem.initial_state(len(rows)), [], []
        for t in range(T):
            if t == 60:
                state = mem.end_episode(state)
            recalls.append(mem.propose(state, queries[t, rows]))
            state, info = mem.receive(state, xs[t, rows], masks[t, rows], inplace=inplace)
            infos.append(info)
        return state, infos, recalls

    batched = run([0, 1, 2], inplace=False)
    assert any(bool(i["moved"].ne(0).any()) for i in batched[1])  # refinement was exercised
    runs = [(slice(None), run([0, 1, 2], inplace=True))] + [(slice(b, b + 1), run([b], inplace=False)) for b in range(B)]
    for rows, other in runs:
        for x, y in zip(batched[0], other[0]):
            assert torch.allclose(x[rows], y, atol=1e-5)
        for ib, i1 in zip(batched[1], other[1]):
            for key in ib:
                assert torch.allclose(ib[key][rows], i1[key], atol=1e-6)
        for (cb, mb, rb), (c1, m1, r1) in zip(batched[2], other[2]):
            assert torch.equal(mb[rows], m1) and torch.allclose(cb[rows], c1, atol=1e-5)
            assert torch.equal(rb["event_ids"][rows], r1["event_ids"])


def test_items_mode_keeps_no_table_and_options_are_checked():
    mem = EpisodicMemory(D, capacity=32, max_event_len=8)
    state = mem.initial_state(2)
    assert state.event_stats.shape == (2, 0, D + 1) and state.event_rows.shape == (2, 0)
    assert EpisodicMemory(D, capacity=32, max_event_len=8, recall="events").max_events == 32  # None = capacity
    with pytest.raises(ValueError, match="recall"):
        EpisodicMemory(D, recall="tokens")
    with pytest.raises(ValueError, match="max_events"):
        EpisodicMemory(D, recall="events", max_events=1)
    with pytest.raises(ValueError, match="max_events"):
        EpisodicMemory(D, recall="events", top_k_events=3, max_events=2)


def test_configured_em_llm_recalls_events():
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[1] / "configs" / "cogarch" / "episodic" / "em_llm.yaml"
    mem = instantiate(OmegaConf.create({"dim": D, "node": OmegaConf.load(path)}).node)
    assert mem.recall_mode == "events" and mem.capacity >= 2 * mem.max_event_len
    state = mem.initial_state(2)
    for x in stream(100, 2):
        state, _ = mem.observe(state, x, inplace=True)
    cands, mask, _ = mem.recall(state, torch.randn(2, D))
    assert cands.shape == (2, mem.num_events, D) and mask.any()
