"""GraphTrace: the stream is a walk on the declared graph, and exactly the neighbours are accepted."""

import math

import gymnasium as gym
import numpy as np
import pytest

import environments  # noqa: F401  (registers the ids)
from environments.graph_trace import WORDS

ID = "cogarch/GraphTrace-v0"
KINDS = [dict(graph="grid"), dict(graph="ring"), dict(graph="hex"), dict(graph="grid", size=11), dict(graph="hex", size=7)]


def adjacent(graph, p, q, size):
    """Neighbourhood from the layout alone, independent of the env's adjacency lists."""
    if graph == "grid":  # 4-neighbour moves, no wrap-around
        return abs(p[0] - q[0]) + abs(p[1] - q[1]) == 1
    if graph == "ring":  # consecutive points on the unit circle
        return math.isclose(math.dist(p, q), 2 * math.sin(math.pi / size), abs_tol=1e-4)
    return math.isclose(math.dist(p, q), 1.0, abs_tol=1e-4)  # honeycomb: unit edges, others >= sqrt(3)


def play(env, seed, policy=None):
    """One episode; returns reset info, reading facts, and per question (fact ids, accepted, oracle)."""
    obs, info = env.reset(seed=seed)
    first, reading, questions = info, [], []
    while True:
        if obs["phase"] == 0:
            reading.append((tuple(int(x) for x in obs["fact"]), obs["text"]))
        else:
            questions.append((tuple(int(x) for x in obs["fact"]), info["accepted_actions"], info["oracle_action"]))
        action = info["oracle_action"] if policy is None else policy(info)
        obs, r, term, trunc, info = env.step(action)
        if term:
            return first, reading, questions, info["success"]


@pytest.mark.parametrize("kw", KINDS)
def test_stream_is_a_walk_on_the_graph_and_accepts_exactly_the_neighbours(kw):
    env = gym.make(ID, **kw).unwrapped
    for seed in range(5):
        info, reading, questions, success = play(env, seed)
        assert success
        assert len(reading) == info["warmup"] and len(questions) == info["walk_length"] - info["warmup"]
        pos, words, size = info["positions"], info["words"], info["size"]
        assert len(words) == len(set(words)) == info["num_nodes"] and set(words) <= set(WORDS)
        name = env.vocab
        # The node sequence: reading facts chain (a to b, b to c, ...), then the question subjects.
        walk = [name[reading[0][0][0]]] if reading else []
        for (s, rel, o), text in reading:
            assert name[s] == walk[-1] and name[rel] == "to" and text == f"{name[s]} to {name[o]}."
            walk.append(name[o])
        for i, ((s, rel, o), accepted, oracle) in enumerate(questions):
            assert (name[rel], name[o]) == ("to", "?")
            if walk:
                assert name[s] == walk[-1]  # the next question asks about where the walk went
            walk = walk or [name[s]]
            truth = {env.index[w] for w in words if adjacent(info["graph"], pos[name[s]], pos[w], size)}
            assert set(accepted) == truth and oracle in truth
            walk.append(name[oracle])
        assert walk == info["walk"]
        for a, b in zip(walk, walk[1:]):
            assert adjacent(info["graph"], pos[a], pos[b], size), (a, b)


@pytest.mark.parametrize(
    "kw,num_nodes,degrees",
    [
        (dict(graph="grid"), 16, {2, 3, 4}),
        (dict(graph="grid", size=2), 4, {2}),
        (dict(graph="ring", size=3), 3, {2}),
        (dict(graph="ring"), 16, {2}),
        (dict(graph="hex", size=1), 6, {2}),
        (dict(graph="hex"), 16, {2, 3}),
        (dict(graph="hex", size=7), 126, {2, 3}),
    ],
)
def test_graph_shapes(kw, num_nodes, degrees):
    env = gym.make(ID, **kw).unwrapped
    assert env.num_nodes == num_nodes and {len(n) for n in env.neighbours} == degrees
    assert all(a in env.neighbours[b] for a in range(num_nodes) for b in env.neighbours[a])  # undirected


@pytest.mark.parametrize("graph", ["grid", "ring", "hex"])
def test_long_walk_covers_the_graph_and_words_move_between_episodes(graph):
    env = gym.make(ID, graph=graph, walk_length=3000, warmup=2999).unwrapped
    _, info = env.reset(seed=0)
    assert set(info["walk"]) == set(info["words"])
    _, other = env.reset(seed=1)
    assert other["words"] != info["words"]


def test_any_neighbour_counts_and_the_walk_ignores_the_guess():
    env = gym.make(ID, warmup=0).unwrapped

    def contrary(info):  # a valid move other than the walk's, when there is one
        return max(info["accepted_actions"] - {info["oracle_action"]}, default=info["oracle_action"])

    info, reading, questions, success = play(env, 3, contrary)
    assert reading == [] and success
    assert [env.vocab[o] for _, _, o in questions] == info["walk"][1:]
    info2, _, questions2, _ = play(env, 3)  # same seed, oracle agent: the same walk
    assert info2["walk"] == info["walk"] and questions2 == questions
    # A word that is not a neighbour fails the episode.
    info, _, _, success = play(env, 3, lambda i: env.index["to"])
    assert not success


def test_random_agent_valid_rate_is_degree_over_vocab():
    env = gym.make(ID, warmup=0, walk_length=200).unwrapped
    rng = np.random.default_rng(0)
    hits, expected, V = 0, 0.0, env.action_space.n
    for seed in range(20):
        info, _, questions, success = play(env, seed, lambda i: int(rng.integers(V)))
        assert not success  # 200 guesses of probability <= 4/131 each
    # Recount with the rewards: rate ~ mean degree / V (~ 3 / 131 on a 4x4 grid).
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        for _ in range(200):
            expected += len(info["accepted_actions"]) / V
            obs, r, term, _, info = env.step(int(rng.integers(V)))
            hits += r
    assert abs(hits - expected) < 5 * math.sqrt(expected), (hits, expected)
    assert 0.015 < hits / 4000 < 0.035


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(graph="torus"), "graph"),
        (dict(graph="grid", size=12), "size"),
        (dict(graph="grid", size=1), "size"),
        (dict(graph="ring", size=129), "size"),
        (dict(graph="hex", size=8), "size"),
        (dict(walk_length=1), "walk_length"),
        (dict(walk_length=10, warmup=10), "warmup"),
        (dict(warmup=-1), "warmup"),
    ],
)
def test_bad_kwargs_are_refused(kw, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ID, **kw)


def test_info_is_json_friendly():
    import json

    _, info = gym.make(ID, graph="hex").reset(seed=0)
    json.dumps({k: v for k, v in info.items() if k not in ("oracle_action",)})
    assert len(info["positions"]) == info["num_nodes"] == 16


@pytest.mark.parametrize("kw", [dict(graph="grid"), dict(graph="ring", size=5)])
def test_edges_twice_tag_starts_once_every_edge_was_shown_twice(kw):
    """Recount from the walk words and the layout alone: a question about w_t carries the tag exactly when the
    transitions before w_t have crossed every edge of the graph at least twice."""
    env = gym.make(ID, walk_length=300, **kw).unwrapped
    tagged_episodes = 0
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        first = info
        walk, pos, size = info["walk"], info["positions"], info["size"]
        words = info["words"]
        edges = {frozenset((a, b)) for a in words for b in words if a != b and adjacent(info["graph"], pos[a], pos[b], size)}
        shown = {e: 0 for e in edges}
        expected = []
        for t in range(len(walk) - 1):
            if t >= info["warmup"]:
                expected.append(min(shown.values()) >= 2)
            shown[frozenset(walk[t:t + 2])] += 1
        tags = []
        while True:
            if obs["phase"] == 1:
                tags.append(info["tags"] == ("edges_twice",))
                assert info["tags"] in ((), ("edges_twice",))
            obs, _, term, _, info = env.step(info["oracle_action"])
            if term:
                break
        assert tags == expected
        assert tags.count(False) == min(max(first["edges_twice_at"] - first["warmup"], 0), len(tags))
        tagged_episodes += any(tags)
    assert tagged_episodes >= 2  # 300 steps cover the 4x4 grid's 24 edges twice in most walks


def test_runs_report_accuracy_on_the_tagged_answers(tmp_path):
    from agents.baselines import OracleAgent, RandomAgent
    from cogarch.runner import run_episodes

    env = gym.make(ID, walk_length=256)
    oracle = run_episodes(env, OracleAgent(env.action_space), 4, 0, tmp_path / "oracle", trace=False, progress=False)
    assert oracle["answer_accuracy_edges_twice"] == 1.0 and oracle["answer_steps_edges_twice"] > 0
    rand = run_episodes(env, RandomAgent(action_space=env.action_space, seed=0), 4, 0, tmp_path / "random",
                        trace=False, progress=False)
    assert rand["answer_steps_edges_twice"] == oracle["answer_steps_edges_twice"]
    assert rand["answer_accuracy_edges_twice"] < 0.1
    import json

    lines = [json.loads(x) for x in (tmp_path / "random" / "episodes.jsonl").read_text().splitlines()]
    per_episode = sum(e.get("tag_steps", {}).get("edges_twice", [0, 0])[1] for e in lines)
    assert per_episode / rand["answer_steps_edges_twice"] == rand["answer_accuracy_edges_twice"]
