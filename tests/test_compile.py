"""torch.compile(workspace.cycle): the default composition (working slots, outer-product long-term and EM-LLM
episodic memory, a k-winner bottleneck) compiles into one graph, and the compiled cycle gives the eager cycle's
results.

Inside a compiled graph the cycle takes other paths where eager code tests a value first or writes the state in
place: non-finite candidates masked, the long-term update as one elementwise pass, the episodic and working-memory
row writes as index_put_ on the state's tensors. The streams that close an event are refined in one of two ways:
when the compiler captures scalar outputs (cogarch.workspace.compile_cycle), just those streams, their count read
as a value the graph's shapes depend on; else the first few in the graph and any more by an operator, with no host
sync. The first test checks those paths against the eager ones without compiling (with more streams closing events
at once than the graph refines itself), the others compile."""

import shutil

import pytest
import torch
from torch.utils._pytree import tree_leaves

from cogarch.bottleneck import Bottleneck
from cogarch.memory import episodic
from cogarch.memory.episodic import EpisodicMemory, _refine as refine
from cogarch.memory.long_term import OuterProductMemory
from cogarch.memory.working import WorkingMemory
from cogarch.workspace import MotorHead, Workspace, compile_cycle

D = 16


def workspace():
    torch.manual_seed(0)
    memories = [WorkingMemory(D, slots=4), OuterProductMemory(D, capacity=8),
                EpisodicMemory(D, capacity=16, window=8, gamma=0.5, max_event_len=6, recall="events", max_events=8)]
    return Workspace(D, Bottleneck(D, k=3), MotorHead(D, 5), memories)


def stream(B, T):
    """Items that switch distribution every 5 cycles, so events close and their boundaries get refined."""
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(T // 5 + 1, B, 1, D, generator=g).repeat_interleave(5, 0)[:T]
    return torch.randn(T, B, 1, D, generator=g) + 3 * centres


def tensors(value):
    """The tensors in a state or output (named tuples, dicts, tuples), in a fixed order."""
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def run(ws, cycle, xs, inplace):
    """Every cycle's output (logits, winners, receipts) and the last state, as lists of tensors. Without
    ``inplace``, also checks that no cycle changed the state it was given (the state is a value)."""
    outs = []
    with torch.inference_mode():
        state = ws.initial_state(xs.shape[1])
        for t, x in enumerate(xs):
            if t == 2 * len(xs) // 3:  # a hard boundary: the next event has no earlier one to refine against
                state = ws.end_episode(state)
            before = None if inplace else [s.clone() for s in tensors(state)]
            old, (state, out) = state, cycle(state, x, inplace=inplace)
            if before is not None:
                assert all(torch.equal(a, b) for a, b in zip(before, tensors(old))), "a value cycle wrote its input"
            outs.append([out.logits, out.selection.winners, *tensors(out.receipts), *tensors(out.proposals)])
        return outs, [t.clone() for t in tensors(state)]


def assert_same(a, b):
    (outs_a, state_a), (outs_b, state_b) = a, b
    for x, y in zip(outs_a, outs_b):
        assert len(x) == len(y)
        for s, t in zip(x, y):
            assert torch.allclose(s.float(), t.float(), atol=1e-4), (s, t)
    for s, t in zip(state_a, state_b):
        assert torch.allclose(s.float(), t.float(), atol=1e-4)


# None: the count of closing streams is read (scalar outputs captured); 64: all 3 streams refined in the graph's
# fixed rows; 1: the streams past the first closing one go to the operator
@pytest.mark.parametrize("graph_rows", [None, 64, 1])
@pytest.mark.parametrize("inplace", [False, True])
def test_the_compiled_paths_equal_the_eager_ones(monkeypatch, inplace, graph_rows):
    with torch._dynamo.config.patch(capture_scalar_outputs=graph_rows is None):
        compiled_paths_against_eager(monkeypatch, inplace, graph_rows)


def compiled_paths_against_eager(monkeypatch, inplace, graph_rows):
    if graph_rows is not None:
        monkeypatch.setattr(EpisodicMemory, "graph_refine_rows", graph_rows)
    ws, xs = workspace(), stream(3, 40)
    eager = run(ws, ws.cycle, xs, inplace)
    moved = [o for step in eager[0] for o in step if o.dtype == torch.long and o.shape == (3,)]
    assert any(bool((m != 0).any()) for m in moved), "the stream should make refinement move a boundary"
    # Dynamo maps torch functions to its handlers once, on first use: done here first, that map holds the real
    # is_compiling, not the stand-in below (which a later compiled test would otherwise meet)
    torch.compile(lambda x: x + 1, backend="eager", fullgraph=True)(torch.ones(1))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    calls = []  # the rows each _refine was given: with the count, every cycle's closing streams (none or some of
    # the 3); else the eager refinement of the streams past the first graph_rows, for the operator
    monkeypatch.setattr(episodic, "_refine", lambda *a: calls.append(len(a[1])) or refine(*a))
    assert_same(eager, run(ws, ws.cycle, xs, inplace))
    if graph_rows is None:
        assert len(calls) == len(xs) and 0 in calls and any(0 < n < 3 for n in calls), calls
    else:
        assert (sum(calls) > 0) == (graph_rows < 3), calls


def test_the_compiled_long_term_paths_leave_masked_items_out(monkeypatch):
    # in the workspace a masked winner is a zero vector, which adds nothing either way: here they are not zero
    torch.manual_seed(0)
    mem = OuterProductMemory(D, capacity=8)
    for lin in (mem.key, mem.value, mem.query):  # not the identity: each projection's place in the formula counts
        torch.nn.init.normal_(lin.weight, std=D**-0.5)
    xs, query = torch.randn(2, 3, 4, D), torch.randn(3, D)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False], [True, True, True, True]])

    def run():
        with torch.inference_mode():
            state, reads = mem.initial_state(3), []
            for x in xs:
                state, _ = mem.receive(state, x, mask)
                reads.append(mem.read(state, query))
            return [*state, *reads]

    eager = run()
    torch.compile(lambda x: x + 1, backend="eager", fullgraph=True)(torch.ones(1))  # see the test above
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for e, c in zip(eager, run()):
        assert torch.allclose(e, c, atol=1e-5), (e, c)
    assert not eager[0][1].any()  # the stream with every item masked stored nothing


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")  # torch's own, while compiling
def test_a_compiled_cycle_is_one_graph_and_equals_the_eager_cycle(monkeypatch):
    # one stream refined in the graph, the other (when both close an event) by the operator: both in the graph
    monkeypatch.setattr(EpisodicMemory, "graph_refine_rows", 1)
    ws, xs = workspace(), stream(2, 14)
    eager = run(ws, ws.cycle, xs, inplace=True)
    torch._dynamo.reset()
    compiled = torch.compile(ws.cycle, fullgraph=True, dynamic=False)  # fullgraph: a graph break raises
    assert_same(eager, run(ws, compiled, xs, inplace=True))


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_compile_cycle_reads_the_count_of_closing_streams_in_one_graph_without_fullgraph():
    # as the workspace agent compiles (no fullgraph): without scalar capture, the count would break the graph and
    # each count met would compile another one, up to dynamo's recompile limit (then the cycle runs eager)
    ws, xs = workspace(), stream(3, 40)
    eager = run(ws, ws.cycle, xs, inplace=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    assert_same(eager, run(ws, compile_cycle(ws, dynamic=False), xs, inplace=True))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1, torch._dynamo.utils.counters["stats"]
    assert not torch._dynamo.utils.counters["graph_break"], torch._dynamo.utils.counters["graph_break"]
    assert not torch._dynamo.config.capture_scalar_outputs  # put back after each call


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_an_agent_built_with_compile_acts_through_the_compiled_cycle_with_the_same_logits():
    from agents.workspace import WorkspaceAgent

    vocab = ["<none>", "?"] + [f"w{i}" for i in range(10)]

    def agent(compile):
        torch.manual_seed(0)
        return WorkspaceAgent(Bottleneck(D, k=2), dim=D, working=WorkingMemory(D, slots=3), vocab=vocab,
                              compile=compile)

    eager, compiled = agent(False), agent(True)
    facts = torch.randint(0, len(vocab), (5, 2, 3), generator=torch.Generator().manual_seed(2))
    phase = torch.tensor([0, 0, 0, 0, 1])
    states = [a.initial_state(batch_size=2) for a in (eager, compiled)]
    with torch.no_grad():
        for t in range(5):
            (le, states[0], _), (lc, states[1], _) = (a.step_logits(s, facts[t], phase[t].expand(2), trace=False)
                                                      for a, s in zip((eager, compiled), states))
            assert torch.allclose(le, lc, atol=1e-4)
    assert compiled._compiled_cycle is not None and eager._compiled_cycle is None
    with pytest.raises(ValueError, match="compile"):
        WorkspaceAgent(Bottleneck(D, k=2), dim=D, vocab=vocab, compile="yes")


def test_a_loaded_agent_takes_compile_as_how_it_acts():
    from agents.checkpoint import load_agent

    agent = load_agent("story_qa", compile=True)  # the shipped checkpoint; compiled on its first step
    assert agent.compile and agent._compiled_cycle is None
    assert not load_agent("story_qa").compile
    with pytest.raises(ValueError, match="compile"):
        load_agent("story_qa", compile="yes")
