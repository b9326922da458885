"""Vectorized episodes (cogarch.vector): N envs with batched cycles give the results of N single-env runs."""

import json

import gymnasium as gym
import pytest
import torch

import environments  # noqa: F401  (registers the envs)
from agents.baselines import RandomAgent
from agents.checkpoint import load_agent
from cogarch.runner import run_episodes
from cogarch.vector import run_episodes_vectorized


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def strip_wall(summary):
    return {k: v for k, v in summary.items() if k not in ("wall_s", "steps_per_s", "episodes_per_s")}


@pytest.mark.parametrize("num_envs", [3, 8])
def test_batched_workspace_agent_equals_single_env_runs(tmp_path, num_envs):
    make = lambda: gym.make("cogarch/StoryQA-v0", task=2)  # noqa: E731
    agent = load_agent("story_qa", vocab=make().unwrapped.vocab)
    single = run_episodes(make(), agent, 7, 5, tmp_path / "one", progress=False)
    batched = run_episodes_vectorized(make, agent, 7, 5, num_envs, tmp_path / "many", progress=False)
    assert strip_wall(batched) == strip_wall(single)
    assert lines(tmp_path / "many" / "episodes.jsonl") == lines(tmp_path / "one" / "episodes.jsonl")
    one, many = lines(tmp_path / "one" / "trace.jsonl"), lines(tmp_path / "many" / "trace.jsonl")
    assert len(one) == len(many) > 7
    for a, b in zip(one, many):  # the same cycles in the same order; scores equal up to batch rounding
        assert (a["episode"], a["step"], a["winners"], a["winner_concepts"], a["action"]) == \
               (b["episode"], b["step"], b["winners"], b["winner_concepts"], b["action"])
        assert torch.allclose(torch.tensor(a["action_logits"]), torch.tensor(b["action_logits"]), atol=1e-4)


def test_agents_that_do_not_batch_run_episode_by_episode(tmp_path):
    make = lambda: gym.make("cogarch/GraphSearch-v0", num_vertices=8)  # noqa: E731
    env = make()
    agent = RandomAgent(action_space=env.action_space)
    single = run_episodes(env, agent, 5, 0, tmp_path / "one", progress=False)
    batched = run_episodes_vectorized(make, agent, 5, 0, 4, tmp_path / "many", progress=False)
    assert strip_wall(batched) == strip_wall(single)
    assert lines(tmp_path / "many" / "episodes.jsonl") == lines(tmp_path / "one" / "episodes.jsonl")


def test_num_envs_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="num_envs=0"):
        run_episodes_vectorized(lambda: None, None, 3, 0, 0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_max_steps_must_be_none_or_a_positive_integer(bad, tmp_path):
    """max_steps=0 used to cut every episode after its first step, silently."""
    env = gym.make("cogarch/GraphSearch-v0", num_vertices=8)
    agent = RandomAgent(action_space=env.action_space)
    for run in (lambda: run_episodes(env, agent, 2, 0, tmp_path, progress=False, max_steps=bad),
                lambda: run_episodes_vectorized(lambda: env, agent, 2, 0, 2, tmp_path, progress=False, max_steps=bad)):
        with pytest.raises(ValueError, match=r"max_steps=.* allowed: null \(no limit\) or an integer >= 1"):
            run()
    assert not (tmp_path / "episodes.jsonl").exists()  # refused before any file is written
    assert run_episodes(env, agent, 2, 0, None, progress=False, max_steps=1)["env_steps"] == 2


def test_cli_num_envs_writes_the_same_episodes(tmp_path):
    import subprocess
    import sys

    def run(n):
        cmd = [sys.executable, "-m", "cogarch.cli", "run", "episodes=6", f"num_envs={n}", "progress=false",
               f"hydra.run.dir={tmp_path / str(n)}"]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert run(1).returncode == 0 and run(4).returncode == 0
    assert lines(tmp_path / "4" / "episodes.jsonl") == lines(tmp_path / "1" / "episodes.jsonl")
    assert len(lines(tmp_path / "4" / "trace.jsonl")) == len(lines(tmp_path / "1" / "trace.jsonl"))
    from cogarch.trace import MemorySnapshot

    for i in range(6):  # each episode's final state, the same with one env or four
        name = f"snapshots/episode_{i:06d}.safetensors"
        one, four = MemorySnapshot.load(tmp_path / "1" / name), MemorySnapshot.load(tmp_path / "4" / name)
        assert one.meta == four.meta and one.tensors.keys() == four.tensors.keys()
        assert all(torch.allclose(one.tensors[k].float(), four.tensors[k].float(), atol=1e-4) for k in one.tensors)
    bad = run(0)
    assert bad.returncode != 0 and "num_envs=0 is out of range" in bad.stderr


def test_the_transformer_batches_episodes_at_different_steps(tmp_path):
    """Rows of one batch sit at different steps (episodes of different lengths restart at different times) and
    windows fill up (max_context 6 < the episodes' length): the results are those of one env."""
    from agents.transformer import TransformerAgent

    make = lambda: gym.make("cogarch/StoryQA-v0", task=3)  # noqa: E731  (stories of varying length)
    agent = TransformerAgent(vocab=make().unwrapped.vocab, dim=16, max_context=6, seed=0)
    assert agent.supports_batch
    single = run_episodes(make(), agent, 9, 0, tmp_path / "one", progress=False)
    batched = run_episodes_vectorized(make, agent, 9, 0, 4, tmp_path / "many", progress=False)
    assert strip_wall(batched) == strip_wall(single)
    assert lines(tmp_path / "many" / "episodes.jsonl") == lines(tmp_path / "one" / "episodes.jsonl")
    one, many = lines(tmp_path / "one" / "trace.jsonl"), lines(tmp_path / "many" / "trace.jsonl")
    assert len(one) == len(many)
    for a, b in zip(one, many):
        assert (a["episode"], a["step"], a["action"]) == (b["episode"], b["step"], b["action"])
        assert torch.allclose(torch.tensor(a["action_logits"]), torch.tensor(b["action_logits"]), atol=1e-5)
