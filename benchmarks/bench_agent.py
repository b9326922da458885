"""Agent-level figures, each beside its reference measured in this process:

1. training samples/s (episodes per second through teacher-forced forward, backward and an AdamW step) of the
   workspace agent (the default composition of configs/agent/workspace.yaml, dim 64) against the transformer
   baseline with the same number of parameters, on the same StoryQA (task 1) batches of 32 episodes;
2. Passkey at 1K, 10K, 100K and 1M tokens (64 tokens per step): time per token and resident memory of the
   workspace agent of the passkey experiment (configs/experiment/passkey.yaml: working memory only, no time
   code; untrained, as the speed does not depend on the weights) reading the whole stream and answering,
   each as a ratio to the 1K run. RSS is sampled every 1,000 steps; the lengths run in one process in
   increasing order, so a leak would show as growth from row to row.

One torch thread (BENCH_THREADS sets it).

    .venv/bin/python benchmarks/bench_agent.py        (part of `make bench`)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import environments  # noqa: F401  (registers the envs)
from agents.data import VocabMap, collect_episode, make_batch
from agents.learned import answer_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "2.0"))
PASSKEY_TOKENS = (1_000, 10_000, 100_000, 1_000_000)


def agent_from(overrides: list[str], env, **kwargs):
    with initialize_config_dir(str(CONFIGS), version_base=None):
        cfg = compose(config_name="run", overrides=overrides)
    torch.manual_seed(0)
    return instantiate(cfg.agent, vocab=env.unwrapped.vocab, action_space=env.action_space, seed=0, **kwargs)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def training_rate(agent, batches) -> float:
    """Episodes per second through forward, backward and an optimizer step."""
    opt = torch.optim.AdamW(agent.model.parameters(), lr=1e-3)
    agent.model.train()
    n, episodes, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS or n < 2:
        batch = batches[n % len(batches)]
        logits, aux = agent.episode_logits(batch)
        loss = answer_loss(logits, batch)[0] + 0.1 * aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        n, episodes = n + 1, episodes + batch.mask.shape[0]
    return episodes / (time.perf_counter() - start)


def training_table() -> list[str]:
    env = gym.make("cogarch/StoryQA-v0", task=1)
    workspace = agent_from(["agent=workspace"], env)
    transformer = agent_from(["agent=transformer"], env, target_parameters=workspace.num_parameters())
    vmap = VocabMap(workspace.vocab, env.unwrapped.vocab)
    batches = [make_batch([collect_episode(env, 10_000 + 32 * b + i, vmap) for i in range(32)], len(workspace.vocab))
               for b in range(4)]
    rates = {name: training_rate(agent, batches) for name, agent in (("workspace", workspace), ("transformer", transformer))}
    return [
        "## Training samples/s: workspace agent against the transformer baseline of equal parameters\n",
        f"StoryQA task 1, batches of 32 episodes, AdamW; {THREADS} torch thread(s).\n",
        "| agent | parameters | episodes/s | ratio to the transformer |",
        "|---|---:|---:|---:|",
        f"| workspace | {workspace.num_parameters():,} | {rates['workspace']:.1f} | {rates['workspace'] / rates['transformer']:.2f} |",
        f"| transformer | {transformer.num_parameters():,} | {rates['transformer']:.1f} | 1.00 |",
        "",
    ]


@torch.no_grad()
def passkey_run(agent, tokens: int) -> dict:
    env = gym.make("cogarch/Passkey-v0", context_tokens=tokens)
    agent.bind_env(env.unwrapped.vocab)
    obs, info = env.reset(seed=0)
    state, steps, peak, done = agent.initial_state(seed=0), 0, rss_mib(), False
    start = time.perf_counter()
    while not done:
        action, state, _ = agent.act(obs, state, info)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        done = terminated or truncated
        if steps % 1000 == 0:
            peak = max(peak, rss_mib())
    wall = time.perf_counter() - start
    return {"tokens": tokens, "steps": steps, "us_per_token": wall / tokens * 1e6, "rss": max(peak, rss_mib())}


def passkey_table() -> list[str]:
    env = gym.make("cogarch/Passkey-v0")
    agent = agent_from(["agent=workspace", "cogarch/long_term@agent.long_term=none",
                        "cogarch/episodic@agent.episodic=none", "agent.time=false"], env)
    agent.trace_cycles = False  # as `cogarch run trace=false`
    passkey_run(agent, PASSKEY_TOKENS[0])  # warm-up
    rows = [passkey_run(agent, t) for t in PASSKEY_TOKENS]
    base = rows[0]
    lines = [
        "## Passkey: the workspace agent's time per token and resident memory against context length\n",
        "Working-memory agent of the passkey experiment (untrained), 64 tokens per step, trace off; "
        "goal: time per token at 1M within 1.2x of 1K, peak RSS within 1.1x.\n",
        "| context tokens | steps | us/token | ratio to 1K | peak RSS MiB | ratio to 1K |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['tokens']:,} | {r['steps']:,} | {r['us_per_token']:.1f} | "
                     f"{r['us_per_token'] / base['us_per_token']:.2f} | {r['rss']:.1f} | {r['rss'] / base['rss']:.3f} |")
    lines.append(f"\nRSS growth from the 1K run to the end of the 1M run: {rows[-1]['rss'] - base['rss']:+.1f} MiB.\n")
    return lines


def main() -> str:
    torch.set_num_threads(THREADS)
    text = "\n".join(training_table() + passkey_table()) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
