"""Environment throughput against CartPole-v1, measured side by side in this one process.

Each cogarch env is driven by its oracle (``info["oracle_action"]``), CartPole-v1 by random actions;
all are made with ``gym.make`` (same wrappers) and resets are included. CartPole is measured right before
and right after each env and averaged, so drift in machine load shows up in that env's reference too. Then one
Passkey episode of 1,000,000 tokens runs under the oracle while resident memory is sampled.

    make bench        # runs every benchmark and writes their tables to benchmarks/results.md
"""

from __future__ import annotations

import os
import platform
import time

import gymnasium as gym

import environments

SECONDS = float(os.environ.get("BENCH_SECONDS", "2.0"))


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def steps_per_s(env, policy, seconds: float = SECONDS) -> float:
    obs, info = env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(500):
            obs, r, term, trunc, info = env.step(policy(env, info))
            if term or trunc:
                obs, info = env.reset()
        n += 500
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def oracle(env, info):
    return info["oracle_action"]


def random_action(env, info):
    return env.action_space.sample()


def passkey_flat_memory(context_tokens: int) -> dict:
    env = gym.make("cogarch/Passkey-v0", context_tokens=context_tokens)
    obs, info = env.reset(seed=0)
    base = peak = rss_mb()
    steps, start, done = 0, time.perf_counter(), False
    while not done:
        obs, r, term, trunc, info = env.step(info["oracle_action"])
        steps += 1
        done = term or trunc
        if steps % 1000 == 0:
            peak = max(peak, rss_mb())
    elapsed = time.perf_counter() - start
    peak = max(peak, rss_mb())
    return {"tokens": context_tokens, "steps": steps, "s": elapsed, "us_per_step": 1e6 * elapsed / steps,
            "rss_start": base, "rss_peak": peak, "success": info["success"]}


def main() -> None:
    cartpole = gym.make("CartPole-v1")
    cartpole.action_space.seed(0)
    # Each env is bracketed by two CartPole runs, so a change in machine load hits both sides of a ratio.
    rates, refs = {}, {}
    for env_id in environments.ENV_IDS:
        before = steps_per_s(cartpole, random_action)
        rates[env_id] = steps_per_s(gym.make(env_id), oracle)
        refs[env_id] = (before + steps_per_s(cartpole, random_action)) / 2

    lines = [
        f"# Benchmarks\n",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"gymnasium {gym.__version__}. Each figure is measured in the same run as its reference.\n",
        "## Env steps/s (oracle actions) against CartPole-v1 (random actions)\n",
        "| env | steps/s | CartPole-v1 steps/s (bracketing runs) | ratio to CartPole-v1 |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {k} | {v:,.0f} | {refs[k]:,.0f} | {v / refs[k]:.2f} |" for k, v in rates.items()]

    small, big = passkey_flat_memory(1_000), passkey_flat_memory(1_000_000)
    lines += [
        "\n## Passkey-v0 under the oracle: flat memory over a 1,000,000-token stream\n",
        "| context tokens | steps | wall s | us/step | RSS start MiB | RSS peak MiB | success |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in (small, big):
        lines.append(
            f"| {p['tokens']:,} | {p['steps']:,} | {p['s']:.2f} | {p['us_per_step']:.1f} | "
            f"{p['rss_start']:.1f} | {p['rss_peak']:.1f} | {p['success']} |"
        )
    lines.append(
        f"\nRSS growth during the 1M-token episode: {big['rss_peak'] - big['rss_start']:.2f} MiB; "
        f"time per step at 1M relative to 1K: {big['us_per_step'] / small['us_per_step']:.2f}x."
    )
    slow = [k for k, v in rates.items() if v / refs[k] < 0.2]
    lines.append(f"\nGoal: every env >= 0.2x CartPole-v1: {'met' if not slow else 'NOT met by ' + ', '.join(slow)}.")
    print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
