"""NeuralMemory (Titans): test-time learning lowers surprise; chunked == pieces == reference loop; NaN guard;
clipping; batch == single; forgetting gate; masked skips; protocol; gradients."""

import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.neural import NeuralMemory, NeuralMemoryState


def close(a: NeuralMemoryState, b: NeuralMemoryState, atol=1e-5):
    return (
        all(torch.allclose(x, y, atol=atol) for x, y in zip(a.weights + a.momentum, b.weights + b.momentum))
        and torch.equal(a.step, b.step)
        and torch.equal(a.nan_count, b.nan_count)
    )


def row(state: NeuralMemoryState, b: int) -> NeuralMemoryState:
    pick = lambda t: t[b : b + 1]  # noqa: E731
    return NeuralMemoryState(*(tuple(map(pick, f)) if isinstance(f, tuple) else pick(f) for f in state))


def written(mem: NeuralMemory, batch: int, tokens: int = 5, seed: int = 0) -> NeuralMemoryState:
    """A state that has already stored something (so momentum and weights differ per stream)."""
    torch.manual_seed(seed)
    state, _ = mem.update(mem.initial_state(batch), torch.randn(batch, tokens, mem.dim))
    return state


def test_repeated_presentation_lowers_surprise():
    torch.manual_seed(0)
    mem = NeuralMemory(dim=128)  # the defaults
    pairs = torch.randn(3, 8, 128)  # 8 key-value tokens per stream
    state, losses = mem.initial_state(3), []
    for _ in range(5):
        losses.append(mem.surprise(state, pairs).mean(1))  # (B,) before this presentation
        state, info = mem.update(state, pairs)
        assert torch.allclose(info["surprise"], losses[-1], atol=1e-4)  # one chunk: loss at the start weights
    assert (losses[4] < 0.5 * losses[0]).all(), torch.stack(losses)


@pytest.mark.parametrize("adaptive", [False, True])
def test_chunked_whole_equals_pieces(adaptive):
    torch.manual_seed(1)
    kwargs = dict(dim=16, hidden=24, lr=0.3, momentum=0.8, decay=0.05, adaptive_gates=adaptive)
    mem = NeuralMemory(chunk_size=4, **kwargs)
    if adaptive:
        torch.nn.init.normal_(mem.to_gates.weight, std=0.3)
    state, x = written(mem, 2), torch.randn(2, 12, 16)
    whole, info = mem.update(state, x)
    pieces = state
    for i in range(3):
        pieces, _ = mem.update(pieces, x[:, 4 * i : 4 * i + 4])
    assert close(whole, pieces)
    assert torch.equal(whole.step, state.step + 12)
    # chunking is a real approximation: one-token chunks give different weights
    single = NeuralMemory(chunk_size=1, **kwargs)
    single.load_state_dict(mem.state_dict())
    one_by_one, _ = single.update(state, x)
    assert not close(whole, one_by_one, atol=1e-4)


def reference_update(mem, state, x, chunk_start_grads=True):
    """Titans' update written as a plain loop: per stream, per token, autograd at the chunk-start weights."""
    keys, values = F.normalize(mem.to_key(x), dim=-1), mem.to_value(x)
    out_w, out_s = [], []
    for b in range(x.shape[0]):
        w = [t[b].clone() for t in state.weights]
        s = [t[b].clone() for t in state.momentum]
        for start in range(0, x.shape[1], mem.chunk_size):
            w0 = [t.clone().requires_grad_() for t in w]
            for t in range(start, min(start + mem.chunk_size, x.shape[1])):
                at = w0 if chunk_start_grads else [v.clone().requires_grad_() for v in w]
                h = keys[b, t]
                for i, layer in enumerate(at):
                    h = h @ layer if i == len(at) - 1 else F.silu(h @ layer)
                g = torch.autograd.grad((h - values[b, t]).pow(2).sum(), at)
                norm = torch.sqrt(sum(gi.pow(2).sum() for gi in g))
                coef = 1.0 if mem.max_norm is None else min(1.0, mem.max_norm / (norm.item() + 1e-6))
                s = [mem.momentum * si - mem.lr * coef * gi for si, gi in zip(s, g)]
                w = [(1 - mem.decay) * wi + si for wi, si in zip(w, s)]
        out_w.append(w)
        out_s.append(s)
    stack = lambda rows: tuple(torch.stack(layer) for layer in zip(*rows))  # noqa: E731
    return stack(out_w), stack(out_s)


@pytest.mark.parametrize("max_norm", [None, 2.0])
def test_chunk_matches_reference_loop(max_norm):
    torch.manual_seed(2)
    mem = NeuralMemory(dim=12, hidden=20, depth=3, chunk_size=3, lr=0.2, momentum=0.9, decay=0.1,
                       max_norm=max_norm)
    state, x = written(mem, 2, tokens=2), torch.randn(2, 8, 12)  # 8 tokens: chunks of 3, 3, 2
    with torch.no_grad():
        new, info = mem.update(state, x)
    ref_w, ref_s = reference_update(mem, state, x)
    for a, b in zip(new.weights + new.momentum, ref_w + ref_s):
        assert torch.allclose(a, b, atol=1e-5)
    if max_norm is not None:  # the clip was active on some tokens and not on others
        assert (info["grad_norm"] > max_norm).any() and (info["grad_norm"] < max_norm).any()
    # negative control: gradients at each token's current weights are a different algorithm
    cur_w, _ = reference_update(mem, state, x, chunk_start_grads=False)
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(new.weights, cur_w))


def test_nan_input_refused_for_that_stream_only():
    torch.manual_seed(3)
    mem = NeuralMemory(dim=16, chunk_size=8)
    state, x = written(mem, 3), torch.randn(3, 4, 16)
    x[1, 2, 5] = float("nan")
    new, info = mem.update(state, x)
    assert info["nan_refused"].tolist() == [False, True, False]
    assert new.nan_count.tolist() == [0, 1, 0]
    for w_new, w_old in zip(new.weights + new.momentum, state.weights + state.momentum):
        assert torch.equal(w_new[1], w_old[1])  # the NaN stream kept its weights
        assert not torch.allclose(w_new[0], w_old[0]) and torch.isfinite(w_new).all()
    for b in (0, 2):  # the others updated exactly as if alone
        single, _ = mem.update(row(state, b), x[b : b + 1])
        assert close(row(new, b), single)
    assert torch.isfinite(mem.retrieve(new, torch.randn(3, 16))).all()


def test_gradient_clipping_bounds_the_update():
    torch.manual_seed(4)
    kwargs = dict(dim=16, lr=0.3, momentum=0.0, decay=0.0)
    clipped, free = NeuralMemory(**kwargs, max_norm=0.5), NeuralMemory(**kwargs, max_norm=None)
    free.load_state_dict(clipped.state_dict())
    x = 100 * torch.randn(2, 1, 16)  # a huge value -> a huge gradient
    for mem, bounded in ((clipped, True), (free, False)):
        state = mem.initial_state(2)
        new, info = mem.update(state, x)
        delta = torch.sqrt(sum((a - b).pow(2).sum((1, 2)) for a, b in zip(new.weights, state.weights)))  # (B,)
        assert (info["grad_norm"] > 10).all()
        if bounded:
            assert torch.allclose(delta, torch.full_like(delta, 0.3 * 0.5), atol=1e-4)
        else:
            assert (delta > 10 * 0.3 * 0.5).all()


@pytest.mark.parametrize("adaptive", [False, True])
def test_batch_equals_single_streams(adaptive):
    torch.manual_seed(5)
    mem = NeuralMemory(dim=16, hidden=32, chunk_size=3, momentum=0.7, decay=0.02, adaptive_gates=adaptive)
    if adaptive:
        torch.nn.init.normal_(mem.to_gates.weight, std=0.3)
    state, x, query = written(mem, 4), torch.randn(4, 7, 16), torch.randn(4, 16)
    mask = torch.rand(4, 7) > 0.3
    new, info = mem.receive(state, x, mask)
    cands, cmask, _ = mem.propose(state, query)
    loss = mem.surprise(state, x)
    for b in range(4):
        s = row(state, b)
        new_b, info_b = mem.receive(s, x[b : b + 1], mask[b : b + 1])
        assert close(row(new, b), new_b)
        for key in ("loss", "surprise", "grad_norm", "nan_refused"):
            assert torch.allclose(info[key][b : b + 1].float(), info_b[key].float(), atol=1e-5)
        c_b, m_b, _ = mem.propose(s, query[b : b + 1])
        assert torch.allclose(cands[b : b + 1], c_b, atol=1e-6) and torch.equal(cmask[b : b + 1], m_b)
        assert torch.allclose(loss[b : b + 1], mem.surprise(s, x[b : b + 1]), atol=1e-5)


def test_masked_broadcast_items_are_skipped():
    torch.manual_seed(6)
    mem = NeuralMemory(dim=16, chunk_size=2, momentum=0.6)
    state, x = written(mem, 2), torch.randn(2, 5, 16)
    mask = torch.tensor([[True, False, True, True, False], [False, False, True, False, True]])
    x[~mask] = float("nan")  # garbage in masked slots must not leak in
    new, info = mem.receive(state, x, mask)
    assert not info["nan_refused"].any() and torch.equal(new.step, state.step + mask.sum(1))
    for b in range(2):
        only_valid, info_b = mem.update(row(state, b), x[b : b + 1, mask[b]])
        assert close(row(new, b), only_valid)
        assert torch.allclose(info["surprise"][b], info_b["surprise"][0])
        assert (info["loss"][b][~mask[b]] == 0).all()


def test_forgetting_gate_one_erases():
    torch.manual_seed(7)
    keep = NeuralMemory(dim=32, lr=0.4, momentum=0.0, decay=0.0)
    erase = NeuralMemory(dim=32, lr=0.4, momentum=0.0, decay=1.0)
    erase.load_state_dict(keep.state_dict())
    pairs = torch.randn(2, 4, 32)
    empty = (erase.to_value(pairs) ** 2).sum(-1).mean(1)  # the loss of an all-zero memory
    state = keep.initial_state(2)
    for _ in range(20):
        state, _ = keep.update(state, pairs)
    assert (keep.surprise(state, pairs).mean(1) < 0.3 * empty).all()
    new, _ = erase.update(state, torch.randn(2, 1, 32))
    for w, s in zip(new.weights, new.momentum):
        assert torch.equal(w, s)  # M_t = (1 - 1) M_{t-1} + S_t
    assert (erase.surprise(new, pairs).mean(1) > 0.8 * empty).all()


def test_protocol_shapes_purity_and_episodes():
    torch.manual_seed(8)
    for persistent in (True, False):
        mem = NeuralMemory(dim=16, chunk_size=2, persistent=persistent)
        state = mem.initial_state(3)
        shapes_of = lambda s: [t.shape for t in s.weights + s.momentum] + [s.step.shape, s.nan_count.shape]  # noqa
        shapes = shapes_of(state)
        for _ in range(40):
            cands, mask, info = mem.propose(state, torch.randn(3, 16))
            assert cands.shape == (3, 1, 16) and mask.shape == (3, 1) and mask.dtype == torch.bool and mask.all()
            assert info["readout_norm"].shape == (3,)
            before = [t.clone() for t in state.weights + state.momentum]
            mem.propose(state, torch.randn(3, 16))  # a pure read: the state is unchanged
            assert all(torch.equal(a, b) for a, b in zip(before, state.weights + state.momentum))
            state, info = mem.receive(state, torch.randn(3, 4, 16))
            assert info["surprise"].shape == (3,)
        assert shapes_of(state) == shapes
        ended = mem.end_episode(state)
        fresh = mem.initial_state(3)
        assert all((s == 0).all() for s in ended.momentum)
        for w_end, w_old, w_init in zip(ended.weights, state.weights, fresh.weights):
            assert torch.equal(w_end, w_old if persistent else w_init)


def test_gradients_reach_slow_parameters():
    torch.manual_seed(9)
    mem = NeuralMemory(dim=16, chunk_size=2)  # detached writes
    mem.propose(mem.initial_state(2), torch.randn(2, 16))[0].pow(2).sum().backward()
    assert mem.init_weights[0].grad.abs().sum() > 0 and mem.to_query.weight.grad.abs().sum() > 0
    mem.zero_grad(set_to_none=True)
    state, _ = mem.receive(mem.initial_state(2), torch.randn(2, 3, 16))
    assert not any(w.requires_grad for w in state.weights)
    mem.propose(state, torch.randn(2, 16))[0].pow(2).sum().backward()
    assert mem.to_query.weight.grad is not None and mem.to_key.weight.grad is None

    outer = NeuralMemory(dim=16, chunk_size=2, adaptive_gates=True, detach_writes=False)  # Titans' outer loop
    state, _ = outer.receive(outer.initial_state(2), torch.randn(2, 3, 16))
    outer.propose(state, torch.randn(2, 16))[0].pow(2).sum().backward()
    for p in (outer.to_key.weight, outer.to_value.weight, outer.to_gates.weight, outer.init_weights[1]):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [({"dim": 0}, "dim"), ({"depth": 0}, "depth"), ({"chunk_size": 0}, "chunk_size"), ({"lr": -1.0}, "lr"),
     ({"momentum": 1.5}, "momentum"), ({"decay": -0.1}, "decay"), ({"max_norm": 0.0}, "max_norm"),
     ({"hidden": 0}, "hidden")],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NeuralMemory(**{"dim": 8, **kwargs})
