"""GraphSearch-v0: the defining properties of the graphs and answers, checked from the streamed facts.

Every graph here is rebuilt with networkx from the observations (never from env internals), so the
tests check what an agent actually sees.
"""

import warnings

import gymnasium as gym
import networkx as nx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy.stats import chisquare

import environments  # noqa: F401  (registers the ids)

ID = "cogarch/GraphSearch-v0"
DISTRIBUTIONS = ("balanced", "naive", "star")


def make(**kwargs):
    return gym.make(ID, **kwargs).unwrapped


def read_episode(env, seed=None):
    """Reset, consume the reading phase with <none>; return (graph, question obs, question info, reset info)."""
    obs, reset_info = env.reset(seed=seed)
    edge = env.index["edge"]
    graph = nx.DiGraph()
    info = reset_info
    while obs["phase"] == 0:
        s, r, o = (int(x) for x in obs["fact"])
        assert r == edge
        assert obs["text"] == f"There is an edge from {env.vocab[s]} to {env.vocab[o]}."
        assert not graph.has_edge(s, o), "an edge is streamed twice"
        graph.add_edge(s, o)
        obs, reward, terminated, truncated, info = env.step(0)
        assert reward == 0 and not terminated and not truncated
    return graph, obs, info, reset_info


def useful_next(graph, current, goal):
    return {c for c in graph.successors(current) if nx.has_path(graph, c, goal)}


def test_vocab_layout():
    env = make(num_vertices=12)
    assert env.vocab[:3] == ("<none>", "?", "edge")
    assert env.vocab[3:] == tuple(f"v{k}" for k in range(12))
    assert env.action_space.n == 15


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("num_vertices,episodes", [(3, 20), (20, 40), (61, 10), (200, 4)])
def test_graph_is_a_dag_and_goal_is_reachable(distribution, num_vertices, episodes):
    env = make(num_vertices=num_vertices, distribution=distribution)
    for seed in range(episodes):
        graph, obs, info, reset_info = read_episode(env, seed=seed)
        start, goal, query = (int(x) for x in obs["fact"])
        assert query == env.index["?"] and obs["phase"] == 1
        assert obs["text"] == f"From {env.vocab[start]}, which vertex leads toward {env.vocab[goal]}?"
        assert graph.number_of_edges() == reset_info["num_edges"]
        assert nx.is_directed_acyclic_graph(graph)
        assert start != goal and nx.has_path(graph, start, goal)
        assert nx.shortest_path_length(graph, start, goal) == reset_info["path_length"] >= 1
        if distribution == "naive":  # their generator: every vertex but the first has a parent
            assert graph.number_of_nodes() == num_vertices
            assert sum(1 for v in graph if graph.in_degree(v) == 0) == 1
        if distribution == "balanced":  # every vertex is used, and the start has num_paths branches
            assert graph.number_of_nodes() == num_vertices
            assert graph.out_degree(start) >= 2


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_accepted_actions_are_exactly_the_useful_next_vertices(distribution):
    env = make(num_vertices=24, distribution=distribution)
    for seed in range(60):
        graph, obs, info, reset_info = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        accepted = info["accepted_actions"]
        assert accepted == useful_next(graph, start, goal)
        # The oracle's vertex is one step closer to the goal on a shortest path; ties go to the smallest id.
        dist = nx.shortest_path_length(graph, target=goal)
        best = min(c for c in accepted if dist[c] == dist[start] - 1)
        assert info["oracle_action"] == best
        # The supporting facts are the edges of a shortest start-goal path.
        path_edges = {tuple(int(x) for x in env._episode.reading[i].ids[::2]) for i in info["supporting_facts"]}
        path = nx.DiGraph(path_edges)
        assert len(path_edges) == dist[start] and nx.has_path(path, start, goal)
        assert all(graph.has_edge(u, v) for u, v in path_edges)


def test_balanced_lookahead_is_uniform_and_only_one_branch_leads_to_the_goal():
    env = make()
    max_lookahead = env.max_lookahead
    assert max_lookahead == 9  # the default: (20 - 1) // 2
    counts = np.zeros(max_lookahead + 1, dtype=int)
    for seed in range(2000):
        graph, obs, info, reset_info = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        length = nx.shortest_path_length(graph, start, goal)  # measured on the streamed graph
        assert 1 <= length <= max_lookahead and length == reset_info["lookahead"]
        counts[length] += 1
        assert len(info["accepted_actions"]) == 1  # the decoys never lead to the goal
        assert nx.has_path(graph, start, goal)
    assert counts[0] == 0
    assert chisquare(counts[1:]).pvalue > 0.001, counts


def test_balanced_lookahead_uniform_with_more_paths():
    env = make(num_vertices=30, max_lookahead=4, num_paths=3)
    counts = np.zeros(5, dtype=int)
    for seed in range(800):
        graph, obs, info, _ = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        counts[nx.shortest_path_length(graph, start, goal)] += 1
        assert graph.out_degree(start) >= 3 and len(info["accepted_actions"]) == 1
    assert counts[0] == 0 and chisquare(counts[1:]).pvalue > 0.001, counts


def test_star_graph_shape():
    env = make(num_vertices=25, num_paths=3, distribution="star")
    for seed in range(50):
        graph, obs, info, reset_info = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        L = reset_info["lookahead"]
        assert graph.out_degree(start) == 3 and graph.in_degree(start) == 0
        assert graph.number_of_nodes() == 1 + 3 * L and graph.out_degree(goal) == 0
        arms = [nx.shortest_path_length(graph, start, leaf) for leaf in graph if graph.out_degree(leaf) == 0]
        assert arms == [L, L, L]
        assert nx.shortest_path_length(graph, start, goal) == L


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_walk_oracle_reaches_the_goal(distribution):
    env = make(distribution=distribution, mode="walk")
    for seed in range(40):
        graph, obs, info, reset_info = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        current, rewards, terminated = start, [], False
        while not terminated:
            assert obs["phase"] == 1 and int(obs["fact"][0]) == current and int(obs["fact"][1]) == goal
            assert info["accepted_actions"] == useful_next(graph, current, goal)
            action = info["oracle_action"]
            assert graph.has_edge(current, action)
            current = action
            obs, reward, terminated, truncated, info = env.step(action)
            rewards.append(reward)
            assert not truncated
        assert current == goal and info["success"] is True
        assert rewards == [1.0] * reset_info["path_length"]


def test_walk_none_agent_fails_after_max_walk_steps():
    env = make(mode="walk", max_walk_steps=12)
    for seed in range(10):
        _, obs, info, _ = read_episode(env, seed=seed)
        start = int(obs["fact"][0])
        steps, terminated = 0, False
        while not terminated:
            obs, reward, terminated, truncated, info = env.step(0)
            steps += 1
            assert reward == 0 and not truncated
            if not terminated:  # a non-neighbour leaves the agent where it was
                assert int(obs["fact"][0]) == start
        assert steps == 12 and info["success"] is False


def test_walk_wrong_turn_strands_the_agent():
    env = make(mode="walk")
    for seed in range(20):
        graph, obs, info, _ = read_episode(env, seed=seed)
        start, goal, _ = (int(x) for x in obs["fact"])
        decoy = min(c for c in graph.successors(start) if c not in info["accepted_actions"])
        obs, reward, terminated, _, info = env.step(decoy)
        assert reward == 0 and not terminated and int(obs["fact"][0]) == decoy  # moved, but unrewarded
        assert info["accepted_actions"] == frozenset()  # nothing leads to the goal any more
        while not terminated:
            obs, reward, terminated, _, info = env.step(info["oracle_action"])
            assert reward == 0
        assert info["success"] is False


def test_random_agent_is_near_chance():
    env = make()
    rng = np.random.default_rng(0)
    wins = 0
    episodes = 1000
    for seed in range(episodes):
        env.reset(seed=seed)
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(int(rng.integers(env.action_space.n)))
        wins += info["success"]
    chance = 1 / env.action_space.n  # exactly one useful vertex in the balanced distribution
    assert abs(wins / episodes - chance) < 0.03


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(num_vertices=1), "num_vertices"),
        (dict(num_vertices=5, max_lookahead=3), "num_vertices"),
        (dict(num_vertices=20, num_paths=0), "num_paths"),
        (dict(max_lookahead=0), "max_lookahead"),
        (dict(distribution="grid"), "distribution"),
        (dict(mode="run"), "mode"),
        (dict(mode="walk", max_walk_steps=3), "max_walk_steps"),
        (dict(num_vertices=2.5), "num_vertices"),
    ],
)
def test_invalid_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ID, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(distribution="naive", num_vertices=30),
        dict(distribution="star", num_paths=4, num_vertices=17),
        dict(mode="walk", max_lookahead=3, num_paths=3),
        dict(num_vertices=200, num_paths=5),
    ],
)
def test_check_env_and_determinism_with_other_arguments(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ID, **kwargs).unwrapped)
    a, b = gym.make(ID, **kwargs), gym.make(ID, **kwargs)
    (oa, ia), (ob, ib) = a.reset(seed=7), b.reset(seed=7)
    for _ in range(200):
        assert np.array_equal(oa["fact"], ob["fact"]) and oa["text"] == ob["text"]
        assert a.observation_space.contains(oa)
        oa, ra, ta, _, ia = a.step(ia["oracle_action"])
        ob, rb, tb, _, ib = b.step(ib["oracle_action"])
        assert ra == rb and ta == tb
        if ta:
            assert ia["success"] is True
            (oa, ia), (ob, ib) = a.reset(), b.reset()
