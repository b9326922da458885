"""WorkingMemory (PMI): what is written can be read back up to K items, the (K+1)-th displaces one (the
least recently written), matching items update in place, write weights are differentiable, batch B equals
B runs at batch 1, end_episode clears."""

import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.working import WorkingMemory, WorkingMemoryState

D, K = 128, 8


def items(n, dim=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1)  # (n, d) distinct random items


def write_all(wm, xs, state=None):
    """Write the rows of xs (n, d) one per cycle into a batch-1 memory."""
    state = wm.initial_state(1) if state is None else state
    for x in xs:
        state, _ = wm.receive(state, x[None, None])
    return state


def recall_cos(wm, state, xs):
    """Cosine between each item and what reading with that item as the key returns."""
    out, _ = wm.read(state.__class__(*(t.expand(len(xs), *t.shape[1:]) for t in state)), xs)
    return F.cosine_similarity(out, xs, dim=-1)


@pytest.mark.parametrize("n", [1, 5, K])
def test_up_to_k_distinct_items_are_all_kept(n):
    torch.manual_seed(0)
    wm = WorkingMemory(D, slots=K)
    xs = items(n)
    with torch.no_grad():
        state = write_all(wm, xs)
    assert (recall_cos(wm, state, xs) > 0.9).all()
    assert int((state.usage > 0.5).sum()) == n  # one slot per item, no duplicates


def test_k_plus_one_displaces_exactly_the_least_recently_written():
    wm = WorkingMemory(D, slots=K)
    xs = items(K + 1)
    with torch.no_grad():
        full = write_all(wm, xs[:K])
        after = write_all(wm, xs[K:], full)
    changed = ~torch.isclose(full.slots, after.slots).all(-1)  # (1, K)
    assert int(changed.sum()) <= 1
    cos = recall_cos(wm, after, xs)
    assert cos[K] > 0.9  # the new item is stored
    assert (cos[1:K] > 0.9).all()  # every other item is untouched
    assert cos[0] < 0.5  # the oldest one was displaced


def test_rewriting_an_item_updates_its_slot_and_refreshes_it():
    wm = WorkingMemory(D, slots=K)
    xs = items(K + 1)
    with torch.no_grad():
        state = write_all(wm, xs[:K])
        state, info = wm.receive(state, xs[None, 0:1])  # rehearse item 0
        assert info["write_weights"][0, 0].argmax() == 0  # into its own slot
        assert int((state.usage > 0.5).sum()) == K
        state = write_all(wm, xs[K:], state)  # now item 1 is the least recently written
    cos = recall_cos(wm, state, xs)
    assert cos[0] > 0.9 and cos[K] > 0.9 and cos[1] < 0.5
    with torch.no_grad():  # the most recent item, with free slots left, is updated in place too
        state = write_all(wm, xs[:3])
        state, info = wm.receive(state, xs[None, 2:3])
    assert info["write_weights"][0, 0].argmax() == 2 and int((state.usage > 0.5).sum()) == 3


def test_items_broadcast_together_take_different_slots_and_masked_items_do_not_write():
    wm = WorkingMemory(D, slots=K)
    xs = items(3)
    with torch.no_grad():
        state, info = wm.receive(wm.initial_state(1), xs[None], torch.tensor([[True, False, True]]))
    w = info["write_weights"][0]  # (k, K)
    assert w.shape == (3, K)
    assert w[1].abs().sum() == 0
    assert w[0].argmax() != w[2].argmax()
    cos = recall_cos(wm, state, xs)
    assert cos[0] > 0.9 and cos[2] > 0.9 and int((state.usage > 0.5).sum()) == 2


@pytest.mark.parametrize("top_k", [1, 2, None])
def test_write_weights_and_slots_are_differentiable(top_k):
    torch.manual_seed(0)
    wm = WorkingMemory(D, slots=4, top_k=top_k)
    xs = items(3)
    x_near = F.normalize(xs[0] + 0.8 * xs[2], dim=-1)  # partly matches item 0: the match term has gradient
    state = write_all(wm, xs[:2])
    state, info = wm.receive(state, x_near[None, None])
    w = info["write_weights"]
    assert torch.allclose(w.sum(-1), torch.ones(1, 1))
    loss = (state.slots * torch.randn_like(state.slots)).sum() + (w * torch.randn_like(w)).sum()
    loss.backward()
    for name in ["key.weight", "gate_x.weight", "gate_x.bias", "gate_s.weight"]:
        grad = dict(wm.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_top_k_sparsifies_the_write():
    wm = WorkingMemory(D, slots=K, top_k=2)
    with torch.no_grad():
        _, info = wm.receive(wm.initial_state(1), items(1)[None])
    assert int((info["write_weights"] > 0).sum()) == 2
    soft = WorkingMemory(D, slots=K, top_k=None)
    with torch.no_grad():
        _, info = soft.receive(soft.initial_state(1), items(1)[None])
    assert int((info["write_weights"] > 0).sum()) == K


def test_batch_equals_batch_one_runs():
    torch.manual_seed(1)
    wm = WorkingMemory(D, slots=4, top_k=1)
    B, steps, k = 3, 7, 2
    g = torch.Generator().manual_seed(3)
    xs = F.normalize(torch.randn(steps, B, k, D, generator=g), dim=-1)
    xs[4, :, 0] = xs[1, :, 1]  # a repeated item (in-place update path)
    masks = torch.rand(steps, B, k, generator=g) > 0.3
    query = torch.randn(B, D, generator=g)
    with torch.no_grad():
        state = wm.initial_state(B)
        for t in range(steps):
            state, info = wm.receive(state, xs[t], masks[t])
        cands, mask, pinfo = wm.propose(state, query)
        for b in range(B):
            s1 = wm.initial_state(1)
            for t in range(steps):
                s1, info1 = wm.receive(s1, xs[t, b : b + 1], masks[t, b : b + 1])
            c1, m1, p1 = wm.propose(s1, query[b : b + 1])
            for full, one in zip(state, s1):
                assert torch.allclose(full[b : b + 1], one, atol=1e-6)
            assert torch.allclose(cands[b : b + 1], c1, atol=1e-6) and torch.equal(mask[b : b + 1], m1)
            assert torch.allclose(pinfo["read_weights"][b : b + 1], p1["read_weights"], atol=1e-6)
            assert torch.allclose(info["write_weights"][b : b + 1], info1["write_weights"], atol=1e-6)


def test_propose_is_pure_and_masks_used_slots():
    wm = WorkingMemory(D, slots=K)
    xs = items(3)
    with torch.no_grad():
        state = write_all(wm, xs)
        before = [t.clone() for t in state]
        cands, mask, info = wm.propose(state, xs[1:2])
    assert cands.shape == (1, K, D) and mask.shape == (1, K) and mask.dtype == torch.bool
    assert int(mask.sum()) == 3
    assert info["read_weights"].argmax() == 1  # slot of item 1, the query
    assert all(torch.equal(a, b) for a, b in zip(before, state))
    empty_read, w = wm.read(wm.initial_state(2), torch.randn(2, D))
    assert not empty_read.isnan().any() and w.abs().sum() == 0


def test_end_episode_clears_unless_persistent_and_state_size_is_constant():
    xs = items(3)
    wm = WorkingMemory(D, slots=K)
    with torch.no_grad():
        state = write_all(wm, xs)
        shapes = [t.shape for t in state]
        for _ in range(50):
            state, _ = wm.receive(state, torch.randn(1, 2, D))
    assert [t.shape for t in state] == shapes
    cleared = wm.end_episode(state)
    assert isinstance(cleared, WorkingMemoryState)
    assert all(t.abs().sum() == 0 for t in cleared) and [t.shape for t in cleared] == shapes
    kept = WorkingMemory(D, slots=K, persistent=True).end_episode(state)
    assert all(torch.equal(a, b) for a, b in zip(kept, state))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dim": 0}, "dim"),
        ({"slots": 0}, "slots"),
        ({"top_k": 9}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"temperature": 0.0}, "temperature"),
        ({"usage_penalty": -1.0}, "usage_penalty"),
        ({"match_threshold": 1.0}, "match_threshold"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, name):
    args = {"dim": D, "slots": K, **kwargs}
    with pytest.raises(ValueError, match=name):
        WorkingMemory(**args)
