"""Spreading-activation memory (cogarch.memory.spreading): intersection search over the broadcast's facts."""

import networkx as nx
import pytest
import torch

from cogarch.memory.spreading import SpreadingMemory, SpreadingState
from helpers import attached

VOCAB = ("<none>", "?", "edge", "knows", *[f"v{i}" for i in range(60)])
V0 = 4  # id of v0


def setup(dim=256, **kw):
    return attached(SpreadingMemory, VOCAB, dim, **kw)


def random_dag(rng: torch.Generator, n: int = 40, edges: int = 70) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    while g.number_of_edges() < edges:
        u, v = sorted(torch.randint(0, n, (2,), generator=rng).tolist())
        if u != v:
            g.add_edge(u, v)
    return g


def state_of(graphs: list[nx.DiGraph], capacity: int = 256) -> SpreadingState:
    """A state whose links are the graphs' edges (ids, no decoding), one graph per stream."""
    links = torch.full((len(graphs), capacity, 3), -1, dtype=torch.long)
    for b, g in enumerate(graphs):
        for i, (u, v) in enumerate(g.edges):
            links[b, i] = torch.tensor([V0 + u, 2, V0 + v])
    return SpreadingState(links, torch.tensor([g.number_of_edges() for g in graphs]))


def test_activation_is_decay_to_the_power_of_the_shortest_distance_to_a_target():
    _, memory = setup(dim=32, decay=0.5)
    rng = torch.Generator().manual_seed(0)
    graphs = [random_dag(rng) for _ in range(4)]
    targets = torch.zeros(4, len(VOCAB), dtype=torch.bool)
    goals = [39, 30, 25, 39]
    for b, goal in enumerate(goals):
        targets[b, V0 + goal] = True
    act = memory.spread(state_of(graphs), targets)
    for b, (g, goal) in enumerate(zip(graphs, goals)):
        dist = nx.shortest_path_length(g.reverse(copy=True), goal)  # every node's distance to the goal
        want = torch.zeros(len(VOCAB))
        for node, d in dist.items():
            want[V0 + node] = 0.5**d
        assert torch.equal(act[b], want)  # max, not sum: many paths do not add up


def test_the_proposed_fact_leads_from_the_cue_subject_along_a_shortest_path_to_the_target():
    layer, memory = setup()
    rng = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(10):
        graphs = [random_dag(rng) for _ in range(4)]
        state = memory.initial_state(4)
        order = [list(g.edges) for g in graphs]
        for i in range(max(map(len, order))):  # the facts arrive as broadcast items, one per cycle
            facts = torch.tensor([[V0 + e[i][0], 2, V0 + e[i][1]] if i < len(e) else [0, 0, 0] for e in order])
            state, _ = memory.receive(state, layer.encode_triple(facts).unsqueeze(1))
        for start in range(0, 20, 3):
            goals = [max(nx.descendants(g, start) | {start}) for g in graphs]
            cue = torch.tensor([[V0 + start, V0 + goal, 1] for goal in goals])  # "(start, goal, ?)"
            cands, mask, info = memory.propose(state, layer.encode_triple(cue))
            for b, (g, goal) in enumerate(zip(graphs, goals)):
                if goal == start:  # nothing reachable: nothing to propose
                    assert not mask[b, 0] and cands[b].abs().sum() == 0
                    continue
                nxt = int(info["next"][b]) - V0
                d = nx.shortest_path_length(g, start, goal)
                assert mask[b, 0] and g.has_edge(start, nxt)
                assert nx.shortest_path_length(g, nxt, goal) == d - 1 == int(info["distance"][b])
                decoded, _ = layer.decode_triple(cands[b, 0][None])
                assert decoded[0].tolist() == [V0 + start, 2, V0 + nxt]  # the stored fact itself
                checked += 1
    assert checked > 100


def test_receive_stores_each_fact_once_skips_questions_and_masked_items_and_wraps_at_capacity():
    layer, memory = setup(capacity=3)
    state = memory.initial_state(2)
    fact, question = torch.tensor([[5, 2, 6], [7, 2, 8]]), torch.tensor([[5, 6, 1], [7, 8, 1]])
    items = torch.stack([layer.encode_triple(fact), layer.encode_triple(fact), layer.encode_triple(question)], 1)
    state, receipt = memory.receive(state, items, torch.tensor([[True, True, True], [False, True, True]]))
    assert receipt["stored"].tolist() == [1, 1] and state.count.tolist() == [1, 1]
    # a link's label may decode to anything, even "?": the link is kept (the spread ignores labels)
    state, receipt = memory.receive(state, layer.encode_triple(torch.tensor([[5, 1, 9], [5, 1, 9]])).unsqueeze(1))
    assert receipt["stored"].tolist() == [1, 1] and state.links[0, 1].tolist() == [5, 1, 9]
    for i in range(4):  # four new facts into three rows: the first three stored are overwritten
        more = torch.tensor([[10 + i, 3, 20 + i]] * 2)
        state, _ = memory.receive(state, layer.encode_triple(more).unsqueeze(1))
    assert state.count.tolist() == [6, 6]
    assert sorted(state.links[0, :, 0].tolist()) == [11, 12, 13]
    cleared = memory.end_episode(state)
    assert (cleared.links == -1).all() and cleared.count.tolist() == [0, 0]


def test_a_path_longer_than_hops_is_not_found():
    layer, memory = setup(hops=3)
    chain = nx.path_graph(6, create_using=nx.DiGraph)  # v0 -> v1 -> ... -> v5
    state = state_of([chain, chain])
    cue = torch.tensor([[V0 + 0, V0 + 3, 1], [V0 + 0, V0 + 5, 1]])  # 3 links: found; 5: beyond hops=3
    _, mask, info = memory.propose(state, layer.encode_triple(cue))
    assert mask[:, 0].tolist() == [True, False] and info["next"].tolist() == [V0 + 1, -1]


def test_the_candidate_carries_gradient_to_the_embeddings_and_bad_settings_are_refused():
    layer, memory = setup()
    state = state_of([nx.path_graph(3, create_using=nx.DiGraph)])
    cands, mask, _ = memory.propose(state, layer.encode_triple(torch.tensor([[V0, V0 + 2, 1]])))
    cands.sum().backward()
    assert mask.all() and layer.embeddings.grad[V0 + 1].abs().sum() > 0
    for kw, name in [({"capacity": 0}, "capacity"), ({"hops": 1.5}, "hops"), ({"decay": 1.0}, "decay")]:
        with pytest.raises(ValueError, match=name):
            SpreadingMemory(8, **kw)
    with pytest.raises(RuntimeError, match="attach"):
        SpreadingMemory(8).propose(SpreadingMemory(8).initial_state(1), torch.randn(1, 8))


def test_in_the_workspace_agent_the_recalled_fact_names_a_useful_next_vertex_before_any_training():
    """The composition of experiment=graph_search_scaling, untrained: at the question the long-term candidate is
    the stored edge out of the start toward the goal (what training then teaches the motor head to read)."""
    import gymnasium as gym
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    import environments  # noqa: F401
    from cogarch.memory import spreading

    from pathlib import Path

    from omegaconf import OmegaConf

    env = gym.make("cogarch/GraphSearch-v0", num_vertices=20)
    experiment = Path(__file__).resolve().parents[1] / "configs" / "experiment" / "graph_search_scaling.yaml"
    overrides = list(OmegaConf.load(experiment).agents.workspace)
    assert "cogarch/long_term@agent.long_term=spreading" in overrides
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="run", overrides=overrides)
    agent = instantiate(cfg.agent, vocab=env.unwrapped.vocab)
    recalled = []
    propose = spreading.SpreadingMemory.propose

    def spy(self, state, query):
        out = propose(self, state, query)
        recalled.append(int(out[2]["next"][0]))
        return out

    hits = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spreading.SpreadingMemory, "propose", spy)
        for seed in range(30):
            obs, info = env.reset(seed=seed)
            state = agent.initial_state(seed=seed)
            while int(obs["phase"]) == 0:
                action, state, _ = agent.act(obs, state, info)
                obs, _, _, _, info = env.step(action)
            agent.act(obs, state, info)
            hits += recalled[-1] >= 0 and agent.env_map.action_to_env(recalled[-1]) in info["accepted_actions"]
    assert hits >= 29, hits  # (the experiment's dim 128: in dim 64 about one fact in 40 decodes wrongly)


def test_receive_keeps_the_facts_of_a_reference_ring_with_repeats_within_and_across_cycles():
    """The vectorised receive against a plain Python ring: a fact the ring held when the cycle began or that came
    earlier in the cycle is not added again; new facts take the next rows in broadcast order and wrap."""
    layer, memory = setup(dim=256, capacity=6)
    gen = torch.Generator().manual_seed(3)
    pool = torch.tensor([[V0 + a, 2, V0 + b] for a in range(4) for b in range(4) if a != b])  # 12 facts
    state = memory.initial_state(3)
    ring = [[] for _ in range(3)]  # the reference: (fact, row) in the order written
    rows = [[None] * 6 for _ in range(3)]
    for _ in range(12):
        pick = torch.randint(0, 9, (3, 4), generator=gen)  # few distinct facts: repeats, and the ring wraps
        facts = pool[pick]  # (3, 4, 3)
        valid = torch.rand(3, 4, generator=gen) < 0.8
        state, _ = memory.receive(state, layer.encode_triple(facts.view(-1, 3)).view(3, 4, -1), valid)
        for b in range(3):
            held, seen = list(rows[b]), set()  # what the ring held when the cycle began; this cycle's items
            for i in range(4):
                f = tuple(facts[b, i].tolist())
                if valid[b, i] and f not in held and f not in seen:
                    seen.add(f)
                    rows[b][len(ring[b]) % 6] = f
                    ring[b].append(f)
    for b in range(3):
        assert int(state.count[b]) == len(ring[b])
        want = [list(f) if f is not None else [-1, -1, -1] for f in rows[b]]
        assert state.links[b].tolist() == want
