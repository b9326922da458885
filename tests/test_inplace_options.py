"""Workspace.cycle(inplace=True) and the memories' receive(inplace=True): the same results as the value path,
written into the input state's tensors (which the caller gives up); ignored under autograd."""

import pytest
import torch

from cogarch.bottleneck import Bottleneck
from cogarch.memory.episodic import EpisodicMemory
from cogarch.memory.long_term import OuterProductMemory
from cogarch.memory.neural import NeuralMemory
from cogarch.memory.working import WorkingMemory
from cogarch.workspace import MotorHead, Workspace

D = 32


def workspace(recall="events", neural=False):
    torch.manual_seed(0)
    memories = [WorkingMemory(D, slots=6), OuterProductMemory(D, capacity=8),
                EpisodicMemory(D, capacity=32, window=8, gamma=0.5, max_event_len=8, recall=recall, max_events=8)]
    if neural:
        memories.append(NeuralMemory(D))
    return Workspace(D, Bottleneck(D, k=3), MotorHead(D, 5), memories)


def clone(state):
    return type(state)(*(clone(s) if isinstance(s, tuple) else
                         {k: clone(v) for k, v in s.items()} if isinstance(s, dict) else s.clone() for s in state))


def flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in flat(v)]
    if isinstance(value, tuple):
        return [t for v in value for t in flat(v)]
    return []


@pytest.mark.parametrize("recall", ["items", "events"])
@pytest.mark.parametrize("neural", [False, True])  # neural memory has no in-place write: it takes the value path
def test_inplace_cycles_equal_value_cycles(recall, neural):
    ws = workspace(recall, neural)
    B, T = 3, 60
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(T // 6 + 1, B, 2, D, generator=g).repeat_interleave(6, 0)[:T]
    xs = torch.randn(T, B, 2, D, generator=g) + 3 * centres
    masks = torch.rand(T, B, 2, generator=g) > 0.1
    with torch.no_grad():
        value, inplace = ws.initial_state(B), ws.initial_state(B)
        for t in range(T):
            if t == 40:
                value, inplace = ws.end_episode(value), ws.end_episode(inplace)
            value, out_v = ws.cycle(value, xs[t], masks[t])
            inplace, out_i = ws.cycle(inplace, xs[t], masks[t], inplace=True)
            for a, b in zip(flat(out_v), flat(out_i)):
                assert torch.allclose(a, b, atol=1e-5)
            for a, b in zip(flat(value), flat(inplace)):
                assert torch.allclose(a, b, atol=1e-5)


def test_inplace_writes_into_the_input_state_and_value_leaves_it():
    ws = workspace()
    x = torch.randn(2, 1, D)
    with torch.no_grad():
        state = ws.initial_state(2)
        for _ in range(3):
            state, _ = ws.cycle(state, x)
        kept = clone(state)
        new, _ = ws.cycle(state, x)
        assert all(torch.equal(a, b) for a, b in zip(flat(state), flat(kept)))  # value: the input is unchanged
        new, _ = ws.cycle(state, x, inplace=True)
    for name in ("working", "long_term", "episodic"):  # slots, matrix, item ring: the input's own, written over
        assert new.memories[name][0].data_ptr() == state.memories[name][0].data_ptr()
        assert not torch.equal(new.memories[name][0], kept.memories[name][0])


def test_inplace_is_ignored_under_autograd():
    ws = workspace()
    state = ws.initial_state(2)
    kept = clone(state)
    new, out = ws.cycle(state, torch.randn(2, 1, D), inplace=True)
    assert all(torch.equal(a, b) for a, b in zip(flat(state), flat(kept)))
    out.logits.sum().backward()  # the graph is intact


def test_long_term_inplace_with_rows_that_fade_differently():
    mem = OuterProductMemory(D, capacity=3, decay=0.1)
    x = torch.randn(4, 2, D)
    state = mem.initial_state(4)
    state, _ = mem.receive(state, x, torch.tensor([[True, True]] * 4))
    mask = torch.tensor([[True, False], [True, True], [False, False], [True, True]])  # different fades per row
    with torch.no_grad():
        value, _ = mem.receive(state, x, mask)
        inplace, _ = mem.receive(clone(state), x, mask, inplace=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(value, inplace))


def test_inplace_batch_equals_single_stream_value_cycles():
    ws = workspace()
    B, T = 3, 30
    xs = torch.randn(T, B, 1, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        state, logits = ws.initial_state(B), []
        for t in range(T):
            state, out = ws.cycle(state, xs[t], inplace=True)
            logits.append(out.logits)
        for b in range(B):
            single = ws.initial_state(1)
            for t in range(T):
                single, out = ws.cycle(single, xs[t, b : b + 1])
                assert torch.allclose(out.logits, logits[t][b : b + 1], atol=1e-5)
