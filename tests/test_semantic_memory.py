"""Semantic long-term memory (cogarch.memory.semantic): broadcast facts stored as triples, completed from two roles."""

import gymnasium as gym
import pytest
import torch

import environments  # noqa: F401  (registers the envs)
from cogarch.index_layer import IndexLayer
from cogarch.memory.semantic import SemanticMemory

VOCAB = ("<none>", "?", *[f"c{i}" for i in range(200)])


def setup(dim=128, seed=0):
    torch.manual_seed(seed)
    layer = IndexLayer(VOCAB, dim)
    memory = SemanticMemory(dim, key_dim=32, capacity=None)
    memory.attach(layer)
    return layer, memory


def test_a_stored_fact_is_completed_from_any_two_of_its_roles():
    layer, memory = setup()
    g = torch.Generator().manual_seed(1)
    facts = torch.randint(2, len(VOCAB), (4, 20, 3), generator=g)  # 4 streams x 20 facts
    state = memory.initial_state(4)
    for t in range(20):  # one fact broadcast per cycle, plus a question that must not be stored
        question = facts[:, t].clone()
        question[:, 2] = 1
        items = torch.stack([layer.encode_triple(facts[:, t]), layer.encode_triple(question)], dim=1)  # (4, 2, d)
        state, receipt = memory.receive(state, items)
        assert receipt["stored"].tolist() == [1, 1, 1, 1]
    hits = from_query = total = 0
    for t in range(20):
        for role in range(3):
            cue = facts[:, t].clone()
            cue[:, role] = 1  # the role asked for
            cands, mask, info = memory.propose(state, layer.encode_triple(cue))
            from_query += int(mask[:, [r for r in range(3) if r != role]].sum())  # completed from "?"
            decoded, _ = layer.decode_triple(cands[:, role])
            hits += int(((decoded == facts[:, t]).all(-1) & mask[:, role]).sum())
            total += 4
    assert hits / total >= 0.95, hits / total
    assert from_query <= 0.02 * total  # only where the cue itself decodes wrongly (the index layer's ~0.5%)


def test_an_empty_store_proposes_nothing_and_masked_items_are_not_stored():
    layer, memory = setup()
    state = memory.initial_state(2)
    cands, mask, _ = memory.propose(state, layer.encode_triple(torch.tensor([[5, 6, 7], [8, 9, 10]])))
    assert not mask.any() and cands.abs().sum() == 0
    items = layer.encode_triple(torch.tensor([[5, 6, 7], [8, 9, 10]])).unsqueeze(1)
    state, receipt = memory.receive(state, items, torch.tensor([[True], [False]]))
    assert receipt["stored"].tolist() == [1, 0] and state.count.tolist() == [1.0, 0.0]


def test_an_unattached_memory_says_what_it_needs():
    memory = SemanticMemory(16)
    with pytest.raises(RuntimeError, match="attach"):
        memory.propose(memory.initial_state(1), torch.randn(1, 16))
    with pytest.raises(ValueError, match="min_match"):
        SemanticMemory(16, min_match=1.5)


def test_the_workspace_agent_composes_it_and_batches_it(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from cogarch.runner import run_episodes
    from cogarch.vector import run_episodes_vectorized
    from tests.test_vector import lines
    from pathlib import Path

    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base=None):
        cfg = compose("run", overrides=["env=scene_graph_qa", "agent=workspace", "cogarch/long_term@agent.long_term=triple"])
    make = lambda: gym.make("cogarch/SceneGraphQA-v0")  # noqa: E731
    agent = instantiate(cfg.agent, vocab=make().unwrapped.vocab)
    single = run_episodes(make(), agent, 4, 0, tmp_path / "one", progress=False)
    batched = run_episodes_vectorized(make, agent, 4, 0, 3, tmp_path / "many", progress=False)
    assert lines(tmp_path / "one" / "episodes.jsonl") == lines(tmp_path / "many" / "episodes.jsonl")
    assert single["episodes"] == batched["episodes"] == 4
    trace = lines(tmp_path / "one" / "trace.jsonl")
    assert any("long_term" in r["winner_sources"] for r in trace)  # its completions compete and win
