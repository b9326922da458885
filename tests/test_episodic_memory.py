"""EpisodicMemory (EM-LLM): surprise segmentation, modularity refinement, similarity + contiguity recall."""

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.episodic import EpisodicMemory, split_modularity


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second intra-op thread only adds wake-up latency on a busy 2-core runner."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def switching_stream(T=1000, seg=50, d=32, noise=1.0, seed=0):
    """Items around two random means, switching every `seg` steps: (T, d) and the switch times."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(2, d, generator=g)
    idx = (torch.arange(T) // seg) % 2
    return means[idx] + noise * torch.randn(T, d, generator=g), list(range(seg, T, seg))


def event_stream(n_events=8, length=10, d=32, noise=0.3, seed=0):
    """n_events blocks of `length` items, each block around its own random mean."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_events, d, generator=g)
    return means.repeat_interleave(length, 0) + noise * torch.randn(n_events * length, d, generator=g)


def feed(mem, xs, surprises=None):
    """Observe a (T, d) stream at batch 1; returns the state and the times flagged as boundaries (t > 0)."""
    state, bounds = mem.initial_state(1), []
    for t in range(xs.shape[0]):
        s = None if surprises is None else surprises[t : t + 1]
        state, info = mem.observe(state, xs[t : t + 1], s)
        if t > 0 and bool(info["boundary"][0]):
            bounds.append(t)
    return state, bounds


def recall_precision(bounds, switches, tol=3):
    recall = sum(any(abs(b - s) <= tol for b in bounds) for s in switches) / len(switches)
    precision = sum(any(abs(b - s) <= tol for s in switches) for b in bounds) / max(1, len(bounds))
    return recall, precision


@pytest.mark.parametrize("gamma, min_precision", [(1.0, 0.15), (3.0, 0.7)])
def test_boundaries_at_distribution_switches(gamma, min_precision):
    xs, switches = switching_stream()
    mem = EpisodicMemory(32, capacity=1024, window=32, gamma=gamma, max_event_len=64)
    state, bounds = feed(mem, xs)
    recall, precision = recall_precision(bounds, switches)
    assert recall >= 0.9, (recall, precision, bounds)
    assert precision >= min_precision, (recall, precision, bounds)
    # after refinement the stored segmentation starts an event exactly at (nearly) every switch
    starts = [s[1] for s in mem.segments(state)]
    assert sum(s in starts for s in switches) / len(switches) >= 0.9, starts


def test_split_modularity_matches_networkx():
    x = F.normalize(event_stream(n_events=2, length=7, d=16, noise=0.8), dim=-1)
    adj = (x @ x.T).clamp(min=0).fill_diagonal_(0)
    graph = nx.from_numpy_array(adj.double().numpy())
    q = split_modularity(adj.double())
    for p in range(1, 14):
        ref = nx.algorithms.community.modularity(graph, [set(range(p)), set(range(p, 14))], weight="weight")
        assert abs(float(q[p]) - ref) < 1e-9


def test_refinement_moves_boundary_to_modularity_optimum():
    # true events [0, 30), [30, 60), [60, 80), [80, 90); the surprise cuts at 25 (5 too early), 60 and 80
    xs = event_stream(n_events=4, length=30, d=16, noise=0.6, seed=3)[:90]
    surprise = torch.zeros(90)
    surprise[[25, 60, 80]] = 10.0
    mem = EpisodicMemory(16, capacity=128, window=8, gamma=1.0, max_event_len=64)
    state, bounds = feed(mem, xs, surprise)
    assert bounds == [25, 60, 80]  # online detection
    starts = [s[1] for s in mem.segments(state)]
    assert starts == [0, 30, 60, 80]  # the 25 boundary moved to the true switch when its next event closed

    # the refined split is networkx's modularity argmax over the span [0, 60) between its neighbours
    x = F.normalize(xs[:60].double(), dim=-1)
    graph = nx.from_numpy_array((x @ x.T).clamp(min=0).fill_diagonal_(0).numpy())
    q = {p: nx.algorithms.community.modularity(graph, [set(range(p)), set(range(p, 60))]) for p in range(1, 60)}
    assert max(q, key=q.get) == 30

    plain = EpisodicMemory(16, capacity=128, window=8, gamma=1.0, max_event_len=64, refine=False)
    state, _ = feed(plain, xs, surprise)
    assert [s[1] for s in plain.segments(state)] == [0, 25, 60, 80]


def stored_items(mem, state, event_id):
    return [state.items[0, t % mem.capacity] for e, t0, n in mem.segments(state) if e == event_id
            for t in range(t0, t0 + n)]


def contains(cands, mask, item):
    return bool(((cands[mask] - item).abs().amax(-1) < 1e-6).any())


def test_recall_returns_the_event_holding_the_query():
    mem = EpisodicMemory(32, capacity=128, window=8, gamma=3.0, top_k_events=1, neighbours=0, max_event_len=16)
    state, _ = feed(mem, event_stream(n_events=8, length=10, seed=1))
    segs = mem.segments(state)
    assert [s[1] for s in segs] == list(range(0, 80, 10))  # clean blocks: one event each
    for e, t0, n in segs[:-1]:  # closed events
        cands, mask, info = mem.recall(state, state.items[:, t0 + n // 2])
        assert cands.shape == (1, mem.num_candidates, 32) and int(mask.sum()) == n
        assert info["event_ids"].tolist() == [[e]]
        assert all(contains(cands[0], mask[0], it) for it in stored_items(mem, state, e))


def test_contiguity_returns_temporal_neighbours():
    mem = EpisodicMemory(32, capacity=128, window=8, gamma=3.0, top_k_events=1, neighbours=1, max_event_len=16)
    state, _ = feed(mem, event_stream(n_events=8, length=10, seed=1))
    ids = [s[0] for s in mem.segments(state)]
    cands, mask, info = mem.recall(state, state.items[:, 35])  # an item of the 4th event
    e = ids[3]
    assert info["event_ids"].tolist() == [[e - 1, e, e + 1]]
    for n in (e - 1, e, e + 1):
        assert all(contains(cands[0], mask[0], it) for it in stored_items(mem, state, n))
    assert int(mask.sum()) == 30
    # the oldest event has no predecessor: that slot is masked
    cands, mask, info = mem.recall(state, state.items[:, 5])
    assert info["event_ids"].tolist() == [[-1, ids[0], ids[1]]] and int(mask.sum()) == 20


def test_overlapping_neighbours_are_not_duplicated():
    mem = EpisodicMemory(32, capacity=128, window=8, gamma=3.0, top_k_events=2, neighbours=1, max_event_len=16)
    state, _ = feed(mem, event_stream(n_events=8, length=10, seed=1))
    query = state.items[:, 35] + state.items[:, 45]  # between two adjacent events
    cands, mask, info = mem.recall(state, query)
    valid_ids = [i for i in info["event_ids"][0].tolist() if i >= 0]
    assert len(valid_ids) == len(set(valid_ids)) == 4  # {e-1, e, e+1, e+2}
    assert int(mask.sum()) == 40
    assert torch.unique(cands[0][mask[0]], dim=0).shape[0] == 40


def test_state_size_constant_over_10000_observations():
    mem = EpisodicMemory(8, capacity=32, window=8, max_event_len=8)
    state = mem.initial_state(2)
    shapes = [(t.shape, t.dtype) for t in state]
    xs = torch.randn(10_000, 2, 8, generator=torch.Generator().manual_seed(0))
    for t in range(10_000):
        state, _ = mem.observe(state, xs[t])
    assert [(t.shape, t.dtype) for t in state] == shapes
    assert state.step.tolist() == [10_000, 10_000]
    assert state.times.min().item() == 10_000 - 32
    cands, mask, _ = mem.recall(state, xs[-1])
    assert cands.shape == (2, mem.num_candidates, 8) and mask.any()


def test_batch_equals_single_streams():
    torch.manual_seed(0)
    mem = EpisodicMemory(16, capacity=48, window=8, gamma=0.5, max_event_len=12)
    B, k, T = 3, 2, 90
    xs = torch.randn(T, B, k, 16) + 3 * torch.randn(T // 15 + 1, B, 1, 16).repeat_interleave(15, 0)[:T]
    masks = torch.rand(T, B, k) > 0.2
    queries = torch.randn(T, B, 16)

    def run(rows):
        state, infos, recalls = mem.initial_state(len(rows)), [], []
        for t in range(T):
            if t == 60:
                state = mem.end_episode(state)
            recalls.append(mem.propose(state, queries[t, rows]))
            state, info = mem.receive(state, xs[t, rows], masks[t, rows])
            infos.append(info)
        return state, infos, recalls

    batched = run([0, 1, 2])
    assert any(bool(i["moved"].ne(0).any()) for i in batched[1])  # refinement was exercised
    for b in range(B):
        single = run([b])
        for x, y in zip(batched[0], single[0]):
            assert torch.allclose(x[b : b + 1], y, atol=1e-6)
        for ib, i1 in zip(batched[1], single[1]):
            for key in ib:
                assert torch.allclose(ib[key][b : b + 1], i1[key], atol=1e-6)
        for (cb, mb, rb), (c1, m1, r1) in zip(batched[2], single[2]):
            assert torch.equal(mb[b : b + 1], m1) and torch.allclose(cb[b : b + 1], c1, atol=1e-6)
            assert torch.equal(rb["event_ids"][b : b + 1], r1["event_ids"])


def test_receive_propose_and_end_episode():
    mem = EpisodicMemory(16, capacity=32, max_event_len=8)
    state = mem.initial_state(2)
    bc = torch.randn(2, 3, 16)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    state, info = mem.receive(state, bc, mask)
    assert torch.allclose(state.items[0, 0], bc[0, :2].mean(0)) and state.step.tolist() == [1, 0]
    assert info["boundary"].tolist() == [True, False]  # the first item opens event 0; row 1 saw nothing
    for t in range(12):
        state, _ = mem.observe(state, torch.randn(2, 16))

    before = [t.clone() for t in state]
    query = torch.randn(2, 16, requires_grad=True)
    cands, m, info = mem.propose(state, query)
    assert all(torch.equal(a, b) for a, b in zip(before, state))  # pure read
    assert cands.shape == (2, mem.top_k_events * 3 * 8, 16) and m.shape == (2, mem.num_candidates)
    info["event_scores"].sum().backward()
    assert mem.query_proj.weight.grad.abs().sum() > 0 and query.grad.abs().sum() > 0

    kept = mem.end_episode(state)
    assert torch.equal(kept.items, state.items) and not kept.is_open.any()
    nxt, info = mem.observe(kept, torch.randn(2, 16))
    assert info["boundary"].all() and (nxt.prev_start == -1).all()  # hard boundary: never refined across
    cleared = EpisodicMemory(16, capacity=32, max_event_len=8, persistent=False).end_episode(state)
    assert (cleared.event_ids == -1).all() and (cleared.step == 0).all()


@pytest.mark.parametrize("kwargs", [dict(dim=0), dict(dim=8, capacity=10, max_event_len=8),
                                    dict(dim=8, window=1), dict(dim=8, gamma=-1.0), dict(dim=8, top_k_events=0),
                                    dict(dim=8, neighbours=-1), dict(dim=8, min_event_len=0),
                                    dict(dim=8, min_event_len=40, max_event_len=32)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        EpisodicMemory(**kwargs)
