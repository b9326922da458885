"""Fuzzing with Hypothesis (issue 8, item 1).

Envs: random kwargs drawn inside each env's documented range (the "Arguments" section of its docstring)
always give episodes that the oracle (``info["oracle_action"]``) solves, with every observation inside
``observation_space``; a kwarg set outside its range (below, above, NaN, a fractional value for an int, an
unknown choice) raises ValueError naming the kwarg and saying what is allowed.

Agent: random valid fact-stream observations, fed to small workspace agents bound to an env's vocabulary,
never make ``act`` crash, give non-finite logits or an action outside the env's action space.

Sizes are capped (graphs, walks, stories, contexts) where the documented range is large, but each
range's edges are drawn too (``st.just(edge)``) or, where an episode at the edge is too long to play through
(a 10**12-token Passkey, a 100,000-step walk), built, reset and stepped in ``test_range_edges_build_and_step``.
``derandomize=True``: the examples are the same on every run (CI is reproducible).
"""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from gymnasium.envs.registration import load_env_creator
from hypothesis import strategies as st

import environments
from environments import babi_tasks as bt
from environments.core import CHARSET
from environments.graph_trace import SIZES
from environments.story_qa import SUPPORTED_TASKS

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------- valid kwargs, per env
@st.composite
def graph_search_kwargs(draw):
    distribution = draw(st.sampled_from(["balanced", "naive", "star"]))
    num_vertices = draw(st.integers(3, 40))
    num_paths = draw(st.integers(1, num_vertices - 1))
    fits = (num_vertices - 1) // num_paths
    max_lookahead = draw(st.none() | st.integers(1, fits))
    mode = draw(st.sampled_from(["next", "walk"]))
    longest = num_vertices - 1 if distribution == "naive" else (max_lookahead or fits)
    max_walk_steps = draw(st.none() | st.integers(longest, longest + 3) | st.just(1_000_000))
    return dict(num_vertices=num_vertices, max_lookahead=max_lookahead, num_paths=num_paths,
                distribution=distribution, mode=mode, max_walk_steps=max_walk_steps)


def graph_search_bounds(kw):
    n, p = kw["num_vertices"], kw["num_paths"]
    fits = (n - 1) // p
    L = kw["max_lookahead"] or fits
    longest = n - 1 if kw["distribution"] == "naive" else L
    bounds = {"num_vertices": (3, 10_000), "num_paths": (1, n - 1), "max_lookahead": (1, fits),
              "max_walk_steps": (longest, 1_000_000)}
    if kw["max_lookahead"] is not None and kw["distribution"] != "naive":  # the joint bound, L held fixed
        bounds["num_vertices"] = (max(3, 1 + p * L), 10_000, "joint")
    return bounds


@st.composite
def graph_trace_kwargs(draw):
    graph = draw(st.sampled_from(sorted(SIZES)))
    low, high, _ = SIZES[graph]
    size = draw(st.none() | st.integers(low, high))
    walk_length = draw(st.integers(2, 120))
    warmup = draw(st.integers(0, walk_length - 1))
    return dict(graph=graph, size=size, walk_length=walk_length, warmup=warmup)


def graph_trace_bounds(kw):
    low, high, _ = SIZES[kw["graph"]]
    return {"size": (low, high), "walk_length": (2, 100_000), "warmup": (0, kw["walk_length"] - 1)}


@st.composite
def story_qa_kwargs(draw):
    task = draw(st.sampled_from(SUPPORTED_TASKS))
    lo, hi = bt.TASKS[task][1]
    story_length = draw(st.none() | st.integers(lo, min(hi, 30)) | st.just(hi))
    return dict(task=task, story_length=story_length)


def story_qa_bounds(kw):
    return {"story_length": bt.TASKS[kw["task"]][1]}


@st.composite
def sort_of_clevr_kwargs(draw):
    return dict(questions=draw(st.sampled_from(["all", "relational", "non_relational", "same_shape_count"])),
                obs_mode=draw(st.sampled_from(["facts", "image"])))


@st.composite
def passkey_kwargs(draw):
    key_len = draw(st.integers(1, 16))
    chunk_tokens = draw(st.integers(1, 48) | st.just(4096))
    low = chunk_tokens * (key_len + 1)
    context_tokens = draw(st.integers(low, low + 12 * chunk_tokens))
    depth = draw(st.none() | st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0]))
    return dict(key_len=key_len, chunk_tokens=chunk_tokens, context_tokens=context_tokens, depth=depth)


def passkey_bounds(kw):
    return {"key_len": (1, 16), "chunk_tokens": (1, 4096),
            "context_tokens": (kw["chunk_tokens"] * (kw["key_len"] + 1), 10**12), "depth": (0.0, 1.0)}


@st.composite
def scene_graph_qa_kwargs(draw):
    num_objects = draw(st.integers(3, 20))
    max_hops = draw(st.integers(1, 3))
    hops = draw(st.none() | st.integers(1, max_hops))
    k = hops or max_hops
    most = min(2 * num_objects - 2, num_objects * (num_objects - 1) // 2 - 1)
    num_relations = draw(st.integers(max(1, k - 1), most))
    p_verify = draw(st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0]))
    return dict(num_objects=num_objects, num_relations=num_relations, max_hops=max_hops, hops=hops,
                p_verify=p_verify)


def scene_graph_qa_bounds(kw):
    n, k = kw["num_objects"], kw["hops"] or kw["max_hops"]
    return {"num_objects": (3, 20), "max_hops": (1, 3), "hops": (1, kw["max_hops"]), "p_verify": (0.0, 1.0),
            "num_relations": (max(1, k - 1), min(2 * n - 2, n * (n - 1) // 2 - 1))}


ENVS = {
    "cogarch/GraphSearch-v0": (graph_search_kwargs(), graph_search_bounds),
    "cogarch/GraphTrace-v0": (graph_trace_kwargs(), graph_trace_bounds),
    "cogarch/StoryQA-v0": (story_qa_kwargs(), story_qa_bounds),
    "cogarch/SortOfClevr-v0": (sort_of_clevr_kwargs(), lambda kw: {}),
    "cogarch/Passkey-v0": (passkey_kwargs(), passkey_bounds),
    "cogarch/SceneGraphQA-v0": (scene_graph_qa_kwargs(), scene_graph_qa_bounds),
}
# The kwargs that take one of a fixed set of values, and those values.
CHOICES = {
    "cogarch/GraphSearch-v0": {"distribution": ["balanced", "naive", "star"], "mode": ["next", "walk"]},
    "cogarch/GraphTrace-v0": {"graph": list(SIZES)},
    "cogarch/StoryQA-v0": {"task": list(SUPPORTED_TASKS)},
    "cogarch/SortOfClevr-v0": {"questions": ["all", "relational", "non_relational", "shape", "horizontal", "vertical",
                                             "closest_shape", "furthest_shape", "same_shape_count"],
                               "obs_mode": ["facts", "image"]},
    "cogarch/Passkey-v0": {},
    "cogarch/SceneGraphQA-v0": {},
}
INTEGER = {"num_vertices", "num_paths", "max_lookahead", "max_walk_steps", "size", "walk_length", "warmup",
           "story_length", "key_len", "chunk_tokens", "context_tokens", "num_objects", "num_relations", "max_hops",
           "hops"}


def test_every_registered_env_is_fuzzed():
    assert sorted(ENVS) == sorted(environments.ENV_IDS) == sorted(CHOICES)


def construct(env_id, **kwargs):
    """The env class itself (what ``gym.make`` forwards kwargs to), without gymnasium's wrappers."""
    return load_env_creator(gym.spec(env_id).entry_point)(**kwargs)


def play_with_oracle(env, seed: int, max_steps: int = 100_000) -> dict:
    """One episode under the oracle; every observation checked against the space. Returns the last info."""
    space = env.observation_space
    obs, info = env.reset(seed=seed)
    assert space.contains(obs), f"reset observation outside the space: {obs}"
    for _ in range(max_steps):
        action = info["oracle_action"]
        assert env.action_space.contains(action), f"oracle action {action!r} outside the action space"
        obs, reward, terminated, truncated, info = env.step(action)
        assert space.contains(obs), f"observation outside the space: {obs}"
        if terminated or truncated:
            assert terminated and not truncated
            return info
    raise AssertionError(f"no end after {max_steps} steps")


@pytest.mark.parametrize("env_id", sorted(ENVS))
@FUZZ
@given(data=st.data(), seed=seeds)
def test_valid_kwargs_give_episodes_the_oracle_solves(env_id, data, seed):
    kwargs = data.draw(ENVS[env_id][0], label="kwargs")
    env = gym.make(env_id, **kwargs).unwrapped
    for episode in range(2):  # a seeded reset, then one that continues the env's own generator
        info = play_with_oracle(env, seed if episode == 0 else None)
        assert info["success"] is True, f"the oracle failed {env_id} {kwargs} seed={seed} episode={episode}"


def out_of_range(low, high, integer):
    """Values strictly below ``low`` or above ``high`` (and NaN, and fractional values inside for ints)."""
    options = [st.just(math.nan)]
    if integer:
        options += [st.integers(low - 10**6, low - 1), st.integers(high + 1, high + 10**6)]
        if high > low:  # a fraction between two allowed integers
            options.append(st.integers(low, high - 1).map(lambda v: v + 0.5))
    else:
        options += [st.floats(-1e6, low, exclude_max=True), st.floats(high, 1e6, exclude_min=True),
                    st.just(math.inf), st.just(-math.inf)]
    return st.one_of(options)


@pytest.mark.parametrize("env_id", sorted(e for e in ENVS if e != "cogarch/SortOfClevr-v0"))
@FUZZ
@given(data=st.data())
def test_out_of_range_values_raise_naming_the_kwarg_and_range(env_id, data):
    strategy, bounds = ENVS[env_id]
    kwargs = data.draw(strategy, label="kwargs")
    limits = bounds(kwargs)
    name = data.draw(st.sampled_from(sorted(limits)), label="kwarg")
    low, high, *joint = limits[name]
    value = data.draw(out_of_range(low, high, name in INTEGER), label=name)
    with pytest.raises(ValueError) as err:
        construct(env_id, **{**kwargs, name: value})
    message = str(err.value)
    assert re.search(rf"\b{name}\b", message) and "allowed" in message, message
    # The range itself is stated, both ends. A joint bound (GraphSearch's num_vertices >= 1 + num_paths *
    # max_lookahead) may be reported by a partner's check, which then names every kwarg it involves.
    if not joint:
        assert f"{low} <= {name} <= {high}" in message, message


@pytest.mark.parametrize("env_id", sorted(ENVS))
@FUZZ
@given(data=st.data())
def test_unknown_choices_raise_naming_the_kwarg_and_the_choices(env_id, data):
    choices = dict(CHOICES[env_id], render_mode=[None, "ansi"])
    name = data.draw(st.sampled_from(sorted(choices)))
    allowed = choices[name]
    value = data.draw(st.one_of(st.text(max_size=8), st.integers(-50, 50)).filter(lambda v: v not in allowed))
    with pytest.raises(ValueError) as err:
        construct(env_id, **{name: value})
    assert re.search(rf"\b{name}\b", str(err.value)) and str(allowed) in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "env_id, kwargs, steps",
    [
        ("cogarch/GraphSearch-v0", dict(num_vertices=10_000, distribution="naive"), None),
        ("cogarch/GraphSearch-v0", dict(num_vertices=10_000, num_paths=9_999, distribution="star"), None),
        ("cogarch/GraphTrace-v0", dict(graph="ring", size=128, walk_length=100_000, warmup=99_999), 2_000),
        ("cogarch/GraphTrace-v0", dict(graph="hex", size=7, walk_length=100_000, warmup=0), 2_000),
        ("cogarch/Passkey-v0", dict(key_len=16, chunk_tokens=4096, context_tokens=10**12, depth=0.0), 40),
        ("cogarch/Passkey-v0", dict(key_len=16, chunk_tokens=4096, context_tokens=4096 * 17, depth=1.0), None),
        ("cogarch/SceneGraphQA-v0", dict(num_objects=20, num_relations=38, max_hops=3, hops=3, p_verify=1.0), None),
        ("cogarch/SceneGraphQA-v0", dict(num_objects=3, num_relations=2, max_hops=3, hops=3, p_verify=0.0), None),
    ],
)
def test_range_edges_build_and_step(env_id, kwargs, steps):
    """The largest documented settings: played to the end where that is quick, else the first ``steps``."""
    env = gym.make(env_id, **kwargs).unwrapped
    if steps is None:
        assert play_with_oracle(env, seed=0)["success"] is True
        return
    obs, info = env.reset(seed=0)
    for _ in range(steps):
        assert env.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = env.step(info["oracle_action"])
        assert not truncated and (not terminated or info["success"] is True)
        if terminated:
            break


# ---------------------------------------------------------------- the workspace agent under random observations
AGENT_ENVS = {  # an env of each vocabulary size class; the agent is bound to the env's vocabulary
    "graph_search": lambda: gym.make("cogarch/GraphSearch-v0", num_vertices=12).unwrapped,
    "story_qa": lambda: gym.make("cogarch/StoryQA-v0").unwrapped,
    "scene_graph_qa": lambda: gym.make("cogarch/SceneGraphQA-v0").unwrapped,
}
COMPOSITIONS = {
    "default": [],  # slots, outer-product long-term, EM-LLM episodic, k4 bottleneck
    "neural": ["cogarch/long_term@agent.long_term=neural", "agent.cycles_per_step=2"],
}
_agents: dict = {}


def agent_for(env_name: str, composition: str):
    key = env_name, composition
    if key not in _agents:
        from hydra import compose, initialize_config_module
        from hydra.utils import instantiate

        env = AGENT_ENVS[env_name]()
        with initialize_config_module(config_module="configs", version_base="1.3"):
            cfg = compose(config_name="run", overrides=["agent=workspace", "dim=16", *COMPOSITIONS[composition]])
        agent = instantiate(cfg.agent, vocab=env.vocab, action_space=env.action_space,
                            observation_space=env.observation_space)
        _agents[key] = env, agent
    return _agents[key]


@st.composite
def observation_streams(draw, space):
    """A stream of observations inside ``space``: random facts, or one fact repeated (degenerate input)."""
    V = int(space["fact"].nvec[0])
    fact = st.lists(st.integers(0, V - 1), min_size=3, max_size=3)
    n = draw(st.integers(1, 48))
    if draw(st.booleans()):
        facts = draw(st.lists(fact, min_size=n, max_size=n))
    else:
        facts = [draw(fact)] * n
    phases = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    text = st.text(alphabet=sorted(CHARSET), max_size=min(40, space["text"].max_length))
    return [{"fact": np.array(f, dtype=np.int64), "text": draw(text), "phase": p} for f, p in zip(facts, phases)]


@pytest.mark.parametrize("composition", sorted(COMPOSITIONS))
@pytest.mark.parametrize("env_name", sorted(AGENT_ENVS))
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_valid_observations_never_crash_the_workspace_agent_or_give_nan(env_name, composition, data):
    env, agent = agent_for(env_name, composition)
    stream = data.draw(observation_streams(env.observation_space))
    seen = []
    step = agent.step_logits

    def recording(*args, **kwargs):  # what act computes, kept for the checks below
        logits, state, records = step(*args, **kwargs)
        seen.append(logits)
        return logits, state, records

    agent.step_logits = recording
    try:
        state = agent.initial_state(seed=0)
        for t, obs in enumerate(stream):
            assert env.observation_space.contains(obs)
            action, state, records = agent.act(obs, state, {})
            assert env.action_space.contains(action), f"step {t}: action {action!r}"
            assert obs["phase"] == 1 or action == 0  # reading steps answer <none>
            assert torch.isfinite(seen[-1]).all(), f"step {t}: non-finite logits {seen[-1]}"
            for rec in records:
                assert all(math.isfinite(x) for x in rec.action_logits), f"step {t}: non-finite logits in the trace"
    finally:
        del agent.step_logits  # back to the class's method
