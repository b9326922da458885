"""The global-workspace cycle: batch equivalence, every module gets the broadcast, constant state size."""

from typing import NamedTuple

import pytest
import torch
from torch import nn

from cogarch.bottleneck import Bottleneck
from cogarch.trace import MemorySnapshot
from cogarch.workspace import MotorHead, Workspace

D = 16


class SpyState(NamedTuple):
    received: torch.Tensor  # (B, k, d) the last broadcast this module saw
    calls: torch.Tensor  # (B,) how many broadcasts it received
    memory: torch.Tensor  # (B, d) a running mean of what it saw (proposed back as a candidate)


class Spy(nn.Module):
    """A memory that proposes its running mean and records every broadcast it receives."""

    def __init__(self, source, k=2):
        super().__init__()
        self.source, self.k = source, k
        self.bias = nn.Parameter(torch.randn(D))

    def initial_state(self, batch_size, device=None):
        return SpyState(torch.zeros(batch_size, self.k, D), torch.zeros(batch_size, dtype=torch.long), torch.zeros(batch_size, D))

    def propose(self, state, query):
        cand = (state.memory + self.bias).unsqueeze(1)
        return cand, torch.ones(cand.shape[:2], dtype=torch.bool), {"norm": cand.norm(dim=-1)}

    def receive(self, state, broadcast, mask=None):
        mean = (broadcast * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return SpyState(broadcast.detach(), state.calls + 1, 0.9 * state.memory + 0.1 * mean.detach()), {"calls": state.calls + 1}

    def end_episode(self, state):
        return state


def make_workspace(k=2, sources=("spy_a", "spy_b")):
    torch.manual_seed(0)
    return Workspace(D, Bottleneck(D, k=k), MotorHead(D, 7), [Spy(s, k) for s in sources])


def test_every_module_receives_the_broadcast():
    ws = make_workspace()
    state = ws.initial_state(3)
    for _ in range(4):
        state, out = ws.cycle(state, torch.randn(3, 2, D))
        for source in ("spy_a", "spy_b"):
            assert torch.equal(state.memories[source].received, state.broadcast)
    assert all((state.memories[s].calls == 4).all() for s in ("spy_a", "spy_b"))
    assert out.sources == ("sensory", "sensory", "spy_a", "spy_b") and out.logits.shape == (3, 7)


def test_the_broadcast_is_the_winning_candidates_with_their_source_tags():
    ws = make_workspace(k=3)
    state, _ = ws.cycle(ws.initial_state(1), torch.randn(1, 5, D))  # give the spies something to propose
    state, out = ws.cycle(state, torch.randn(1, 5, D))
    winners = out.selection.winners[0]
    assert torch.equal(state.broadcast[0], out.candidates[0, winners])
    # candidates are laid out sensory items first, then each memory's proposals in order
    assert out.sources == ("sensory",) * 5 + ("spy_a", "spy_b")
    records = ws.records(out, state.step, cycle=0)
    assert records[0].winner_sources == [out.sources[w] for w in winners.tolist()]


def test_one_cycle_at_batch_B_equals_B_cycles_at_batch_1():
    ws = make_workspace()
    B = 5
    sensory = [torch.randn(B, 3, D) for _ in range(3)]
    state = ws.initial_state(B)
    for x in sensory:
        state, out = ws.cycle(state, x)
    for b in range(B):
        single = ws.initial_state(1)
        for x in sensory:
            single, out1 = ws.cycle(single, x[b : b + 1])
        assert torch.allclose(single.conscious, state.conscious[b : b + 1], atol=1e-6)
        assert torch.allclose(out1.logits, out.logits[b : b + 1], atol=1e-6)
        assert torch.equal(out1.selection.winners, out.selection.winners[b : b + 1])


def test_state_size_is_constant_over_10000_cycles():
    ws = make_workspace()
    state = ws.initial_state(2)
    sizes = set()
    with torch.no_grad():
        for t in range(10_000):
            state, _ = ws.cycle(state, torch.randn(2, 2, D))
            if t % 1000 == 999:
                sizes.add(MemorySnapshot.of(state).size_bytes())
    assert len(sizes) == 1


def test_end_episode_resets_the_episode_and_keeps_memories():
    ws = make_workspace()
    state = ws.initial_state(2)
    state, _ = ws.cycle(state, torch.randn(2, 2, D))
    after = ws.end_episode(state)
    assert (after.step == 0).all() and (after.memories["spy_a"].calls == 1).all()


def test_reset_rows_starts_new_episodes_when_fewer_candidates_than_k_won():
    """k = 4 of N = 2 candidates: the broadcast holds 2 winners, not the initial state's 4; resetting some rows
    (a vectorized run whose episodes end at different steps) still works and clears only those rows."""
    torch.manual_seed(0)
    ws = Workspace(D, Bottleneck(D, k=4), MotorHead(D, 7), [Spy("spy_a", k=2)])
    state, _ = ws.cycle(ws.initial_state(3), torch.randn(3, 1, D))
    assert state.broadcast.shape == (3, 2, D)
    rows = torch.tensor([True, False, True])
    after = ws.reset_rows(state, rows)
    assert after.broadcast.shape == (3, 2, D) and after.broadcast_mask.shape == (3, 2)
    assert not after.broadcast_mask[rows].any() and not after.broadcast[rows].any() and (after.step[rows] == 0).all()
    assert torch.equal(after.broadcast[1], state.broadcast[1]) and torch.equal(after.conscious[1], state.conscious[1])
    assert torch.equal(after.conscious[0], ws.initial_conscious.detach())
    ws.cycle(after, torch.randn(3, 1, D))


def test_gradients_flow_from_logits_to_the_bottleneck_and_source_embeddings():
    ws = make_workspace()
    state, _ = ws.cycle(ws.initial_state(2), torch.randn(2, 3, D))
    state, out = ws.cycle(state, torch.randn(2, 3, D))  # the second cycle predicts from a non-zero state
    (out.logits.logsumexp(-1).sum() + out.aux_loss.sum()).backward()
    assert ws.bottleneck.key.weight.grad.abs().sum() > 0
    assert ws.source_embedding.weight.grad.abs().sum() > 0
    assert ws.bottleneck.predictor[0].weight.grad.abs().sum() > 0


def test_duplicate_sources_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        Workspace(D, Bottleneck(D, k=2), MotorHead(D, 3), [Spy("a"), Spy("a")])


def test_a_memory_that_breaks_the_protocol_is_named():
    with pytest.raises(TypeError, match=r"Spy is not a workspace memory: it needs a `source` name \(a str, got None\)"):
        Workspace(D, Bottleneck(D, k=2), MotorHead(D, 3), [Spy(None)])
    with pytest.raises(TypeError, match=r"\(missing: initial_state, propose, receive, end_episode\)"):
        Workspace(D, Bottleneck(D, k=2), MotorHead(D, 3), [nn.Linear(D, D)])

    class StateOnly(Spy):  # receive returns the state alone
        def receive(self, state, broadcast, mask=None):
            return super().receive(state, broadcast, mask)[0]

    class Flat(Spy):  # propose returns (B, d) and (B,)
        def propose(self, state, query):
            cand, mask, info = super().propose(state, query)
            return cand[:, 0], mask[:, 0], info

    for cls, message in ((StateOnly, r"StateOnly\.receive \(source 'b'\) must return \(new state, info dict\); got SpyState"),
                         (Flat, r"Flat\.propose \(source 'b'\) must return \(candidates \(3, n, 16\), mask \(3, n\) bool, "
                                r"info dict\); got \(a tensor of shape \(3, 16\), a tensor of shape \(3,\), dict\)")):
        ws = Workspace(D, Bottleneck(D, k=2), MotorHead(D, 3), [Spy("a"), cls("b")])
        with pytest.raises(TypeError, match=message):
            ws.cycle(ws.initial_state(3), torch.randn(3, 1, D))


def test_a_cycle_under_inference_mode_does_not_break_a_later_training_cycle():
    from cogarch.bottleneck import Bottleneck
    from cogarch.memory.working import WorkingMemory
    from cogarch.workspace import MotorHead, Workspace

    ws = Workspace(16, Bottleneck(16, k=2), MotorHead(16, 5), [WorkingMemory(16, slots=3)])
    items = torch.randn(2, 1, 16)
    with torch.inference_mode():
        ws.cycle(ws.initial_state(2), items)
    _, out = ws.cycle(ws.initial_state(2), items)
    out.logits.sum().backward()  # raised "Inference tensors cannot be saved for backward" before
    assert ws.source_embedding.weight.grad is not None


def test_a_suppressed_cycle_broadcasts_nothing_in_its_rows_only():
    """The Thought Anchors counterfactual: a suppressed row's memories get no winner and its conscious state
    stays the previous one; the other rows run as usual and the output still says what won."""
    from cogarch.memory.working import WorkingMemory

    torch.manual_seed(0)
    ws = Workspace(D, Bottleneck(D, k=2), MotorHead(D, 7), [WorkingMemory(D, slots=4)])
    state = ws.initial_state(2)
    state, _ = ws.cycle(state, torch.randn(2, 2, D))
    sensory = torch.randn(2, 2, D)
    plain, out_plain = ws.cycle(state, sensory)
    off, out_off = ws.cycle(state, sensory, suppress=torch.tensor([True, False]))
    assert torch.equal(off.conscious[0], state.conscious[0]) and not off.broadcast_mask[0].any()
    assert torch.equal(off.memories["working"].slots[0], state.memories["working"].slots[0])
    assert not torch.equal(plain.memories["working"].slots[0], state.memories["working"].slots[0])
    assert torch.equal(off.memories["working"].slots[1], plain.memories["working"].slots[1])
    assert torch.equal(off.conscious[1], plain.conscious[1]) and torch.equal(out_off.logits[1], out_plain.logits[1])
    assert torch.equal(out_off.selection.winners, out_plain.selection.winners)


def test_a_nan_input_is_dropped_and_reported_and_does_not_poison_later_cycles():
    from cogarch.memory.episodic import EpisodicMemory
    from cogarch.memory.long_term import OuterProductMemory
    from cogarch.memory.working import WorkingMemory

    torch.manual_seed(0)
    memories = [WorkingMemory(D, slots=4), OuterProductMemory(D, capacity=8), EpisodicMemory(D, capacity=8, max_event_len=4)]
    ws = Workspace(D, Bottleneck(D, k=2), MotorHead(D, 7), memories)
    state = ws.initial_state(2)
    for t in range(8):
        sensory = torch.randn(2, 1, D)
        if t == 3:
            sensory[0, 0, 5] = float("nan")  # row 0 only
        state, out = ws.cycle(state, sensory)
        rec = ws.records(out, [t, t], 0)
        if t == 3:
            assert out.poisoned is not None and out.poisoned[0, 0] and not out.poisoned[1].any()
            assert rec[0].extra["nonfinite_candidates"] == ["sensory"] and "nonfinite_candidates" not in rec[1].extra
            assert 0 not in rec[0].winners  # the poisoned item cannot win
        else:
            assert out.poisoned is None
        assert torch.isfinite(out.logits).all()
        for value in (state.conscious, state.broadcast, *state.memories["working"][:3], state.memories["long_term"].matrix,
                      state.memories["episodic"].items):
            assert torch.isfinite(value).all()


class CueSpy(Spy):
    """A Spy that records the query each propose call is given."""

    def propose(self, state, query):
        self.queries.append(query.clone())
        return super().propose(state, query)


@pytest.mark.parametrize("cue", ["conscious", "conscious_and_sensory", "sensory", "projected"])
def test_memories_are_cued_by_the_conscious_state_or_also_by_what_was_just_perceived(cue):
    torch.manual_seed(0)
    spy = CueSpy("spy")
    spy.queries = []
    ws = Workspace(D, Bottleneck(D, k=1), MotorHead(D, 7), [spy], memory_cue=cue)
    state = ws.initial_state(2)
    state, _ = ws.cycle(state, torch.randn(2, 1, D))
    sensory = torch.randn(2, 3, D)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    ws.cycle(state, sensory, mask)
    query = spy.queries[-1]
    rms = lambda x: torch.nn.functional.rms_norm(x, (D,), eps=1e-6)  # noqa: E731
    seen = torch.stack([sensory[0, :2].mean(0), sensory[1, 0]])  # the mean of the valid sensory items
    if cue == "conscious":
        assert torch.equal(query, state.conscious)
    elif cue == "sensory":  # that mean alone, at RMS 1
        assert torch.allclose(query, rms(seen), atol=1e-5)
        assert not torch.allclose(query, state.conscious)
    else:  # the conscious state plus that mean, each at RMS 1 ("projected": each through a map, identity at init)
        assert torch.allclose(query, rms(state.conscious + rms(seen)), atol=1e-5)
        assert not torch.allclose(query, state.conscious)


def test_the_projected_cue_maps_each_term_by_its_own_learned_weights():
    torch.manual_seed(0)
    spy = CueSpy("spy")
    spy.queries = []
    ws = Workspace(D, Bottleneck(D, k=1), MotorHead(D, 7), [spy], memory_cue="projected")
    with torch.no_grad():
        ws.cue_conscious.weight.copy_(torch.randn(D, D))
    state = ws.initial_state(2)._replace(conscious=torch.randn(2, D))
    sensory = torch.randn(2, 1, D)
    _, out = ws.cycle(state, sensory)
    rms = lambda x: torch.nn.functional.rms_norm(x, (D,), eps=1e-6)  # noqa: E731
    want = rms(state.conscious @ ws.cue_conscious.weight.T + rms(sensory[:, 0]) @ ws.cue_sensory.weight.T)
    assert torch.allclose(spy.queries[-1], want, atol=1e-5)
    spy.queries[-1].square().sum().backward()  # the cue is in the graph: the maps learn
    assert ws.cue_conscious.weight.grad.abs().sum() > 0 and ws.cue_sensory.weight.grad.abs().sum() > 0


def test_an_unknown_memory_cue_is_refused():
    with pytest.raises(ValueError, match="memory_cue='question'"):
        Workspace(D, Bottleneck(D, k=1), MotorHead(D, 7), [], memory_cue="question")


def test_with_the_sensory_cue_a_partial_fact_reads_its_completion_from_long_term_memory_in_the_same_cycle():
    """What the cue changes: a stored fact comes back from the outer-product store in the cycle that perceives
    a part of it, where the conscious-state cue (the previous cycle's winner) reads something else."""
    from cogarch.memory.long_term import OuterProductMemory

    torch.manual_seed(1)
    d = 64
    facts = torch.nn.functional.normalize(torch.randn(6, d), dim=-1) * d**0.5
    probe = facts[2] + 0.5 * torch.randn(d)  # a noisy partial cue of fact 2
    cos = {}
    for cue in ("conscious", "conscious_and_sensory"):
        torch.manual_seed(2)
        memory = OuterProductMemory(d)
        ws = Workspace(d, Bottleneck(d, k=1), MotorHead(d, 7), [memory], memory_cue=cue)
        state = ws.initial_state(1)
        stored, _ = memory.receive(state.memories["long_term"], facts.unsqueeze(0))  # the six facts consolidated
        # the previous cycle attended fact 5
        state = state._replace(memories={"long_term": stored}, conscious=facts[5].unsqueeze(0))
        _, out = ws.cycle(state, probe.view(1, 1, d))
        readout = out.candidates[0, out.sources.index("long_term")]
        cos[cue] = torch.nn.functional.cosine_similarity(readout, facts[2], dim=0).item()
    assert cos["conscious_and_sensory"] > 0.5 and cos["conscious"] < 0.3, cos
