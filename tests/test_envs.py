"""Contracts every registered fact-stream env must meet (Minigrid's test_envs.py in spirit)."""

import inspect
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import environments
from agents.baselines import OracleAgent, RandomAgent
from cogarch.runner import run_episodes

IDS = environments.ENV_IDS
# One out-of-range kwarg per env; the error must name it.
BAD_KWARGS = {
    "cogarch/GraphSearch-v0": {"num_vertices": 1},
    "cogarch/GraphTrace-v0": {"warmup": 10_000},
    "cogarch/StoryQA-v0": {"task": 25},
    "cogarch/SortOfClevr-v0": {"questions": "colourful"},
    "cogarch/Passkey-v0": {"key_len": 0},
    "cogarch/SceneGraphQA-v0": {"num_objects": 1},
}


def test_exactly_the_six_ids_are_registered():
    ours = sorted(k for k in gym.registry if k.startswith("cogarch/"))
    assert ours == sorted(IDS)


def test_environments_never_import_torch():
    import subprocess
    import sys

    code = "import sys, environments, gymnasium as gym\n"
    code += "".join(f"gym.make({i!r}).reset(seed=0)\n" for i in IDS)
    code += "assert 'torch' not in sys.modules, 'environments imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id).unwrapped)
        check_env(gym.make(env_id, render_mode="ansi").unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_protocol_spaces_and_vocab(env_id):
    env = gym.make(env_id).unwrapped
    V = env.action_space.n
    assert env.vocab[0] == "<none>" and env.vocab[1] == "?"
    assert len(env.vocab) == V == len(set(env.vocab))
    space = env.observation_space
    assert {"fact", "text", "phase"} <= set(space.spaces)
    assert list(space["fact"].nvec) == [V, V, V]
    obs, info = env.reset(seed=0)
    assert "oracle_action" in info and space.contains(obs)


def _rollout(env, seed, steps, actions_rng):
    """`steps` steps; random actions from `actions_rng` (identical across copies); resets without seed."""
    obs, info = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        a = info["oracle_action"] if actions_rng.random() < 0.5 else int(actions_rng.integers(env.action_space.n))
        obs, r, term, trunc, info = env.step(a)
        out.append(obs)
        assert env.observation_space.contains(obs), obs
        if term or trunc:
            assert isinstance(info["success"], bool)
            obs, info = env.reset()
            assert env.observation_space.contains(obs)
            out.append(obs)
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_observations_for_200_steps(env_id):
    a = _rollout(gym.make(env_id), 123, 200, np.random.default_rng(7))
    b = _rollout(gym.make(env_id), 123, 200, np.random.default_rng(7))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x["fact"], y["fact"]) and x["text"] == y["text"] and x["phase"] == y["phase"]
    c = _rollout(gym.make(env_id), 124, 200, np.random.default_rng(7))
    assert any(x["text"] != y["text"] for x, y in zip(a, c)), "a different seed should change the episodes"


@pytest.mark.parametrize("env_id", IDS)
def test_oracle_solves_every_episode(env_id):
    env = gym.make(env_id)
    summary = run_episodes(env, OracleAgent(env.action_space), 200, seed=0, progress=False)
    assert summary["episodes"] == 200
    assert summary["success_rate"] == 1.0


@pytest.mark.parametrize("env_id", IDS)
def test_random_agent_is_at_chance(env_id):
    """Per answer step, a uniform action is right with probability |accepted| / V; check that rate."""
    env = gym.make(env_id)
    V = env.action_space.n
    rng = np.random.default_rng(0)
    hits, expected, successes, expected_successes = 0, 0.0, 0, 0.0
    for ep in range(300):
        obs, info = env.reset(seed=ep)
        done, p_all = False, 1.0
        while not done:
            if info["phase"] == 1:
                p = len(info["accepted_actions"]) / V
                expected += p
                p_all *= p
            obs, r, term, trunc, info = env.step(int(rng.integers(V)))
            hits += r > 0
            done = term or trunc
        successes += info["success"]
        expected_successes += p_all
    assert abs(hits - expected) < 5 * max(np.sqrt(expected), 1.0), (hits, expected)
    assert successes <= expected_successes + 5 * np.sqrt(expected_successes) + 2, (successes, expected_successes)


@pytest.mark.parametrize("env_id", IDS)
def test_bad_input_is_refused(env_id):
    assert env_id in BAD_KWARGS, f"a new env: give one out-of-range keyword of {env_id} in BAD_KWARGS (tests/test_envs.py)"
    (name, value), = BAD_KWARGS[env_id].items()
    with pytest.raises(ValueError, match=name):
        gym.make(env_id, **{name: value})
    env = gym.make(env_id).unwrapped
    with pytest.raises(ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    for bad in (env.action_space.n, -1, "a", 1.5):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)


@pytest.mark.parametrize("env_id", IDS)
def test_docstring_has_gymnasium_sections_and_every_kwarg(env_id):
    cls = gym.spec(env_id).entry_point
    module, name = cls.split(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    doc = inspect.getdoc(cls)
    for section in ("## Description", "## Action Space", "## Observation Space", "## Rewards", "## Episode End", "## Arguments"):
        assert section in doc, f"{name} docstring lacks {section}"
    args = doc.split("## Arguments", 1)[1]
    for p in inspect.signature(cls.__init__).parameters:
        if p not in ("self",):
            assert re.search(rf"\b{p}\b", args), f"{name} docstring does not document {p}"


@pytest.mark.parametrize("env_id", IDS)
def test_sync_vector_env_runs_the_oracle_to_success(env_id):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(3)])
    obs, info = envs.reset(seed=0)
    finished = []
    for _ in range(300):
        obs, reward, term, trunc, info = envs.step(info["oracle_action"])
        if "success" in info:
            finished += [bool(s) for s, done in zip(info["success"], info["_success"]) if done]
        assert envs.observation_space.contains(obs)
    assert finished and all(finished)
