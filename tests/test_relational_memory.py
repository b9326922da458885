"""Relation Network over entity files (cogarch.memory.relational): objects from the broadcast's decoded facts."""

import pytest
import torch
import torch.nn.functional as F

from cogarch.memory.relational import RelationalMemory
from helpers import attached

COLS = [f"col{i}" for i in range(8)]
VOCAB = ("<none>", "?", "column", "shape", "closest", "square", "circle", *COLS, *[f"o{i}" for i in range(8)])
IX = {name: i for i, name in enumerate(VOCAB)}


def setup(dim=128, **kw):
    return attached(RelationalMemory, VOCAB, dim, **kw)


def store(layer, memory, facts):
    """Receive facts [(s, p, o), ...] per stream (same count per stream), one per cycle."""
    state = memory.initial_state(len(facts))
    ids = torch.tensor([[[IX[w] for w in f] for f in stream] for stream in facts])  # (B, T, 3)
    for t in range(ids.shape[1]):
        state, _ = memory.receive(state, layer.encode_triple(ids[:, t]).unsqueeze(1))
    return state


def question(layer, targets, relation="closest"):
    return layer.encode_triple(torch.tensor([[IX[t], IX[relation], IX["?"]] for t in targets]))


def test_a_file_is_the_sum_of_its_subjects_facts_and_each_fact_counts_once():
    layer, memory = setup()
    facts = [("o1", "column", "col3"), ("o1", "shape", "square"), ("o2", "column", "col5"), ("o1", "column", "col3")]
    state = store(layer, memory, [facts])
    files, has = memory.files(state)
    assert has[0].nonzero().flatten().tolist() == [IX["o1"], IX["o2"]]
    codes = layer.encode_triple(torch.tensor([[IX[w] for w in f] for f in facts[:3]]))
    torch.testing.assert_close(files[0, IX["o1"]], codes[0] + codes[1])  # the repeated fact is stored once
    torch.testing.assert_close(files[0, IX["o2"]], codes[2])
    assert int(state.count[0]) == 3


def test_the_candidates_do_not_depend_on_the_order_of_the_facts():
    layer, memory = setup()
    facts = [("o0", "column", "col1"), ("o1", "column", "col4"), ("o2", "column", "col6"), ("o3", "shape", "circle")]
    q = question(layer, ["o1", "o1"])
    state = store(layer, memory, [facts, facts[::-1]])
    cands, mask, info = memory.propose(state, q)
    assert mask.all()
    torch.testing.assert_close(cands[0], cands[1])
    assert info["target"].tolist() == [IX["o1"]] * 2


def test_no_candidate_without_the_target_object_or_without_another_object():
    layer, memory = setup()
    q = question(layer, ["o5", "o1"])  # o5 has no file; o1 is the only object of stream 1
    state = store(layer, memory, [[("o1", "column", "col1")], [("o1", "column", "col2")]])
    cands, mask, info = memory.propose(state, q)
    assert not mask.any() and (cands == 0).all()
    assert info["target"].tolist() == [-1, -1] and info["attended"].tolist() == [-1, -1]


def test_a_question_with_a_mark_is_not_stored_and_masked_items_are_skipped():
    layer, memory = setup()
    state = memory.initial_state(1)
    x = torch.stack([question(layer, ["o1"])[0], layer.encode_triple(torch.tensor([[IX["o2"], IX["column"], IX["col1"]]]))[0]])
    state, info = memory.receive(state, x.unsqueeze(0), torch.tensor([[True, False]]))
    assert int(info["stored"][0]) == 0 and int(state.count[0]) == 0


def test_the_pair_function_learns_which_object_is_closest():
    """The property that makes it a relation network: one learned g over (target, other, question) pairs picks,
    in scenes it was not trained on, the object that stands in the relation to the target (the nearest column)."""
    layer, memory = setup(dim=64, hidden=64)
    layer.requires_grad_(False)  # the concepts stay random: g must compute the relation from them
    gen = torch.Generator().manual_seed(0)

    def scenes(n):
        """n scenes of 4 objects in distinct columns, a random target; the index of the closest other object."""
        cols = torch.stack([torch.randperm(8, generator=gen)[:4] for _ in range(n)])  # (n, 4)
        target = torch.randint(0, 4, (n,), generator=gen)
        dist = (cols - cols.gather(1, target[:, None])).abs().float()
        dist = dist.scatter(1, target[:, None], float("inf"))
        dist = dist + 0.1 * torch.arange(4)  # ties: the lower object
        facts = [[(f"o{j}", "column", f"col{int(cols[b, j])}") for j in range(4)] for b in range(n)]
        return store(layer, memory, facts), question(layer, [f"o{int(t)}" for t in target]), dist.argmin(1)

    opt = torch.optim.Adam(memory.parameters(), lr=3e-3)
    for _ in range(300):
        state, q, want = scenes(64)
        objects, weights, *_ = memory.pairs(state, q)
        right = objects == (IX["o0"] + want)[:, None]
        loss = -(weights * right).sum(-1).clamp_min(1e-9).log().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        state, q, want = scenes(500)
        _, _, info = memory.propose(state, q)
    accuracy = (info["attended"] == IX["o0"] + want).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_gradients_reach_the_pair_function_and_the_embeddings():
    layer, memory = setup(dim=64)
    state = store(layer, memory, [[("o0", "column", "col1"), ("o1", "column", "col4"), ("o2", "column", "col6")]])
    cands, mask, _ = memory.propose(state, question(layer, ["o1"]))
    cands.square().sum().backward()
    for p in (memory.g[0].weight, memory.f[-1].weight, memory.pair_score.weight, layer.embeddings):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [dict(hidden=0), dict(capacity=0), dict(persistent="yes"), dict(hidden=2.5)])
def test_bad_settings_are_refused_by_name(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        RelationalMemory(64, **kw)


def test_in_the_workspace_only_perceived_facts_are_stored():
    """With perceived_only (the default) the workspace tells the memory which winners came from perception: a
    memory's recall that decodes into a triple is not stored as a fact, a perceived fact is."""
    from cogarch.bottleneck import Bottleneck
    from cogarch.workspace import MotorHead, Workspace

    layer, memory = setup(dim=128)
    torch.manual_seed(1)

    class Recall(torch.nn.Module):  # a memory that proposes a fixed fact it never perceived
        source = "recall"

        def initial_state(self, batch_size, device=None):
            return torch.zeros(batch_size)

        def end_episode(self, state):
            return state

        def propose(self, state, query):
            fact = layer.encode_triple(torch.tensor([[IX["o7"], IX["column"], IX["col7"]]])).detach()
            return fact.expand(query.shape[0], 1, -1), torch.ones(query.shape[0], 1, dtype=torch.bool), {}

        def receive(self, state, broadcast, mask=None):
            return state, {}

    ws = Workspace(128, Bottleneck(128, k=None), MotorHead(128, 4), [memory, Recall()], memory_cue="sensory")
    seen = layer.encode_triple(torch.tensor([[IX["o1"], IX["column"], IX["col2"]]])).unsqueeze(1)  # (1, 1, d)
    state, out = ws.cycle(ws.initial_state(1), seen)
    assert set(out.sources[i] for i in out.selection.winners[0].tolist()) >= {"sensory", "recall"}  # both won
    links = state.memories["relational"].links[0]
    assert links[links[:, 0] >= 0].tolist() == [[IX["o1"], IX["column"], IX["col2"]]]
    memory.perceived_only = False  # the ablation: the recalled fact is stored too
    state, _ = ws.cycle(ws.initial_state(1), seen)
    links = state.memories["relational"].links[0]
    assert sorted(links[links[:, 0] >= 0].tolist()) == sorted([[IX["o1"], IX["column"], IX["col2"]],
                                                              [IX["o7"], IX["column"], IX["col7"]]])
