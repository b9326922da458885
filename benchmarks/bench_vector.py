"""Episodes/s of the workspace agent with num_envs = 1 against num_envs = 64, side by side in this process.

The agent is the default workspace composition of configs/agent/workspace.yaml (working, long-term and
episodic memory, bottleneck k4) at dim 64, untrained (the speed does not depend on the weights), acting
through ``cogarch.vector.run_episodes_vectorized`` (``num_envs=1`` runs the same loop on one env) without
traces, on StoryQA (task 1) and GraphSearch (20 vertices). Both rows of an env play the same episodes
(seeds 0..); each row checks that the per-episode results agree. One torch thread by default
(BENCH_THREADS sets it).

    .venv/bin/python benchmarks/bench_vector.py        (part of `make bench`)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import environments  # noqa: F401  (registers the envs)
from cogarch.vector import run_episodes_vectorized

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
ENVS = {"cogarch/StoryQA-v0": {"task": 1}, "cogarch/GraphSearch-v0": {"num_vertices": 20}}
EPISODES = {1: 16, 64: 128}  # num_envs -> episodes played (the batched row plays two rounds of 64)


def workspace_agent(env):
    with initialize_config_dir(str(CONFIGS), version_base=None):
        cfg = compose(config_name="run", overrides=["agent=workspace"])
    torch.manual_seed(0)
    return instantiate(cfg.agent, vocab=env.unwrapped.vocab, action_space=env.action_space, seed=0)


def episodes_per_s(env_id: str, kwargs: dict, num_envs: int) -> tuple[float, list]:
    make = lambda: gym.make(env_id, **kwargs)  # noqa: E731
    agent = workspace_agent(make())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_episodes_vectorized(make, agent, EPISODES[num_envs], 0, num_envs, tmp, trace=False, progress=False)
        wall = time.perf_counter() - start
        lines = (Path(tmp) / "episodes.jsonl").read_text().splitlines()
    return EPISODES[num_envs] / wall, lines


def main() -> str:
    torch.set_num_threads(THREADS)
    rows = [
        "## Vectorized episodes: workspace agent, num_envs 64 against num_envs 1\n",
        f"Default workspace composition at dim 64, untrained, no traces, {THREADS} torch thread(s); "
        "goal: >= 10x episodes/s at num_envs 64.\n",
        "| env | episodes/s, num_envs 1 | episodes/s, num_envs 64 | ratio | same results on the shared episodes |",
        "|---|---:|---:|---:|---|",
    ]
    for env_id, kwargs in ENVS.items():
        one, one_lines = episodes_per_s(env_id, kwargs, 1)
        many, many_lines = episodes_per_s(env_id, kwargs, 64)
        same = many_lines[: len(one_lines)] == one_lines
        rows.append(f"| {env_id} {kwargs} | {one:.2f} | {many:.2f} | {many / one:.1f} | {same} |")
    text = "\n".join(rows) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
