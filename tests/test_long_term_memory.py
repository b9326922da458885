"""OuterProductMemory and TripleMemory (PMI long-term memory): stored associations are recalled by
contraction (facts from partial cues, triples from any two roles), decay and the capacity bound follow the
documented rules exactly, batch B equals B runs at batch 1, persistence across episodes."""

import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.long_term import OuterProductMemory, OuterProductState, TripleMemory, TripleState

D, C = 256, 1000


def concepts(seed=0, n=C, dim=D):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1)  # (C, d)


def triples(T, seed=0):
    """T random (s, p, o) id triples with distinct (s, p) pairs, so every query has one answer."""
    g = torch.Generator().manual_seed(seed)
    sp = torch.randperm(C * C, generator=g)[:T]
    return torch.stack([sp // C, sp % C, torch.randint(0, C, (T,), generator=g)], dim=1)  # (T, 3)


def nearest(vectors, emb):
    return (vectors @ emb.T).argmax(-1)


# ------------------------------------------------------------------ TripleMemory
@pytest.mark.parametrize("T", [50, 200])
def test_triple_memory_completes_any_role(T):
    E, ids = concepts(), triples(T)
    tm = TripleMemory(D, key_dim=32)
    s, p, o = (E[ids[:, r]][None] for r in range(3))  # (1, T, d)
    state = tm.write(tm.initial_state(1), s, p, o)
    assert nearest(tm.complete(state, s=s, p=p)[0], E).eq(ids[:, 2]).float().mean() >= 0.95
    assert nearest(tm.complete(state, s=s, o=o)[0], E).eq(ids[:, 1]).float().mean() >= 0.95
    assert nearest(tm.complete(state, p=p, o=o)[0], E).eq(ids[:, 0]).float().mean() >= 0.95
    # One at a time (B, d) gives the same store as all at once.
    one = tm.initial_state(1)
    for t in range(3):
        one = tm.write(one, s[:, t], p[:, t], o[:, t])
    some = tm.write(tm.initial_state(1), s[:, :3], p[:, :3], o[:, :3])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one, some))
    assert tm.complete(one, s=s[:, 0], p=p[:, 0]).shape == (1, D)


def test_triple_memory_recall_fails_when_empty_or_unrelated():
    E, ids = concepts(), triples(50)
    tm = TripleMemory(D)
    s, p, o = (E[ids[:, r]][None] for r in range(3))
    assert tm.complete(tm.initial_state(1), s=s, p=p).abs().sum() == 0
    state = tm.write(tm.initial_state(1), s[:, :25], p[:, :25], o[:, :25])
    # Queries about triples never written do not come back as their objects.
    assert nearest(tm.complete(state, s=s[:, 25:], p=p[:, 25:])[0], E).eq(ids[25:, 2]).float().mean() < 0.2


def test_triple_memory_decay_and_capacity_follow_the_rules():
    E = concepts(n=9, dim=64)
    s, p, o = E[0:3][None], E[3:6][None], E[6:9][None]  # three triples, (1, 3, d)
    tm = TripleMemory(64, key_dim=8, decay=0.25)
    st = tm.initial_state(1)
    for t in range(3):
        st = tm.write(st, s[:, t], p[:, t], o[:, t])
    single = [tm.write(tm.initial_state(1), s[:, t], p[:, t], o[:, t]) for t in range(3)]
    for field in range(3):  # each write multiplies what was there by 0.75
        expect = 0.75**2 * single[0][field] + 0.75 * single[1][field] + single[2][field]
        assert torch.allclose(st[field], expect, atol=1e-6)
    assert torch.allclose(st.count, torch.tensor([0.75**2 + 0.75 + 1]))

    capped = TripleMemory(64, key_dim=8, capacity=2)
    st = capped.initial_state(1)
    for t in range(3):
        st = capped.write(st, s[:, t], p[:, t], o[:, t])
    # Third write: 2 stored + 1 new > 2, so the old ones are scaled by (2 - 1) / 2 and the new enters whole.
    for field in range(3):
        expect = 0.5 * (single[0][field] + single[1][field]) + single[2][field]
        assert torch.allclose(st[field], expect, atol=1e-6)
    assert torch.allclose(st.count, torch.tensor([2.0]))


def test_triple_memory_batch_equals_batch_one_and_masks():
    E = concepts(n=50, dim=64)
    g = torch.Generator().manual_seed(5)
    B, n = 3, 6
    ids = torch.randint(0, 50, (B, n, 3), generator=g)
    mask = torch.rand(B, n, generator=g) > 0.3
    tm = TripleMemory(64, key_dim=8, decay=0.1, capacity=4)
    st = tm.initial_state(B)
    for t in range(n):
        st = tm.write(st, E[ids[:, t, 0]], E[ids[:, t, 1]], E[ids[:, t, 2]], mask[:, t])
    out = tm.complete(st, s=E[ids[:, :, 0]], p=E[ids[:, :, 1]])  # (B, n, d)
    for b in range(B):
        one = tm.initial_state(1)
        for t in range(n):
            x = ids[b : b + 1, t]
            one = tm.write(one, E[x[:, 0]], E[x[:, 1]], E[x[:, 2]], mask[b : b + 1, t])
        assert all(torch.allclose(a[b : b + 1], c, atol=1e-6) for a, c in zip(st, one))
        s1, p1, o1 = (E[ids[b : b + 1, :, r]] for r in range(3))  # (1, n, d)
        assert torch.allclose(out[b : b + 1], tm.complete(one, s=s1, p=p1), atol=1e-6)
        masked_out = tm.write(tm.initial_state(1), s1, p1, o1, torch.zeros(1, n, dtype=torch.bool))
        assert all(t.abs().sum() == 0 for t in masked_out)


def test_triple_memory_end_episode_and_arguments():
    tm = TripleMemory(D, key_dim=8)
    E = concepts()
    st = tm.write(tm.initial_state(2), E[:2], E[2:4], E[4:6])
    assert isinstance(tm.end_episode(st), TripleState) and tm.end_episode(st) is st
    cleared = TripleMemory(D, key_dim=8, persistent=False).end_episode(st)
    assert all(t.abs().sum() == 0 for t in cleared)
    with pytest.raises(ValueError, match="exactly two"):
        tm.complete(st, s=E[:2])
    for kwargs, name in [({"dim": 0}, "dim"), ({"key_dim": 0}, "key_dim"), ({"decay": 1.0}, "decay"),
                         ({"capacity": 0}, "capacity")]:
        with pytest.raises(ValueError, match=name):
            TripleMemory(**{"dim": D, **kwargs})


# ------------------------------------------------------------------ OuterProductMemory
def role_bound_facts(ids, E, roles):
    return (E[ids] * roles).sum(-2)  # (..., d): s*r_s + p*r_p + o*r_o


def test_outer_product_memory_completes_facts_from_partial_cues():
    E, ids = concepts(), triples(40)
    roles = torch.randint(0, 2, (3, D), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    m = OuterProductMemory(D)
    with torch.no_grad():
        state = m.initial_state(1)
        for t in range(0, 40, 4):  # four facts per cycle
            state, _ = m.receive(state, role_bound_facts(ids[t : t + 4], E, roles)[None])
        cue = role_bound_facts(ids[:, :2], E, roles[:2])  # (T, d): the facts without their objects
        readout = m.read(OuterProductState(*(x.expand(40, *x.shape[1:]) for x in state)), cue)
        # Unbinding the object role from the completed fact decodes the object.
        assert nearest(readout * roles[2], E).eq(ids[:, 2]).float().mean() >= 0.95
        # Without memory, the cue alone does not contain the object.
        assert nearest(cue * roles[2], E).eq(ids[:, 2]).float().mean() < 0.1


def test_outer_product_memory_rate_decay_capacity_follow_the_rules():
    basis = torch.eye(32)  # orthonormal items: strengths are read off the diagonal of M exactly
    m = OuterProductMemory(32, rate=0.5, decay=0.1)
    st = m.initial_state(1)
    for i in range(3):
        st, _ = m.receive(st, basis[i][None, None])
    assert torch.allclose(st.matrix[0].diagonal()[:3], 0.5 * torch.tensor([0.9**2, 0.9, 1.0]))
    assert torch.allclose(st.count, torch.tensor([0.5 * (0.9**2 + 0.9 + 1)]))

    cap = OuterProductMemory(32, capacity=5)
    st = cap.initial_state(1)
    for i in range(20):
        st, info = cap.receive(st, basis[i][None, None])
        assert info["count"].item() <= 5 + 1e-5
    strength = st.matrix[0].diagonal()[:20]
    # Full from the 5th write on: each later write scales the old contents by (5 - 1) / 5.
    expect = torch.tensor([0.8 ** min(19 - i, 15) for i in range(20)])
    assert torch.allclose(strength, expect, atol=1e-6)
    assert torch.allclose(st.count, torch.tensor([5.0]))
    assert st.matrix.norm() <= 5 + 1e-5
    assert torch.allclose(cap.read(st, basis[19][None]), basis[19][None])  # newest at full strength

    many = OuterProductMemory(32, capacity=3)
    st = many.initial_state(1)
    for _ in range(500):
        st, _ = many.receive(st, 10 * torch.randn(1, 4, 32))
    assert st.count.item() <= 4 + 1e-4 and st.matrix.norm() <= 4 * 10 * 32**0.5 * 1.5  # bounded


def test_outer_product_memory_protocol_batch_equivalence_and_gradients():
    torch.manual_seed(0)
    m = OuterProductMemory(64, decay=0.05, capacity=6)
    g = torch.Generator().manual_seed(2)
    B, steps, k = 3, 5, 2
    xs = torch.randn(steps, B, k, 64, generator=g)
    masks = torch.rand(steps, B, k, generator=g) > 0.3
    q = torch.randn(B, 64, generator=g)
    st = m.initial_state(B)
    cands, mask, _ = m.propose(st, q)
    assert cands.shape == (B, 1, 64) and not mask.any()
    for t in range(steps):
        st, _ = m.receive(st, xs[t], masks[t])
    before = [t.clone() for t in st]
    cands, mask, info = m.propose(st, q)
    assert all(torch.equal(a, b) for a, b in zip(before, st))  # pure read
    assert torch.equal(mask[:, 0], st.count > 0) and info["readout_norm"].shape == (B,)
    for b in range(B):
        one = m.initial_state(1)
        for t in range(steps):
            one, _ = m.receive(one, xs[t, b : b + 1], masks[t, b : b + 1])
        assert all(torch.allclose(a[b : b + 1], c, atol=1e-5) for a, c in zip(st, one))
        assert torch.allclose(cands[b : b + 1], m.propose(one, q[b : b + 1])[0], atol=1e-5)
    cands.sum().backward()  # slow weights (query, key, value) learn through propose and the writes
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_outer_product_memory_end_episode_and_arguments():
    m = OuterProductMemory(16)
    st, _ = m.receive(m.initial_state(2), torch.randn(2, 3, 16))
    assert m.end_episode(st) is st
    cleared = OuterProductMemory(16, persistent=False).end_episode(st)
    assert isinstance(cleared, OuterProductState) and all(t.abs().sum() == 0 for t in cleared)
    for kwargs, name in [({"dim": 0}, "dim"), ({"decay": -0.1}, "decay"), ({"capacity": -1}, "capacity"),
                         ({"rate": 0}, "rate")]:
        with pytest.raises(ValueError, match=name):
            OuterProductMemory(**{"dim": 16, **kwargs})
