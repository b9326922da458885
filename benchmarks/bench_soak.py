"""Soak and stability: resident memory over long runs, and neural memory trained for 2,000 episodes.

Three parts, one process, in this order (torch is imported only after the env soak, so the env figures are
measured against the small numpy-only baseline and not hidden under torch's few hundred MiB):

1. Env soak: 1,000,000 env steps under the oracle (``info["oracle_action"]``), cycling through the six
   registered envs with their default kwargs (``gym.make``): one episode of each in turn, resets included.
2. Agent soak: 100,000 cognitive cycles of the workspace of ``benchmarks/bench_core.py``
   (``workspace("outer_product")``: dim 128, working slots, outer-product long-term and EM-LLM episodic
   memory, the k4 bottleneck) at batch 1 under ``torch.inference_mode()``, the state as a value (the
   default), one continuous stream (memories are never cleared), sensory inputs cycling through 64 random
   items.
   For both soaks resident memory (``VmRSS`` of /proc/self/status) is read after a warm-up (the first 10%
   of the steps/cycles) and at the end; the goal is < 5% growth from the warm-up reading to the end.
3. Stability: a workspace agent with ``cogarch/long_term@agent.long_term=neural`` (Titans neural memory with
   its defaults: gradient clipping ``max_norm=1.0`` and the NaN guard) trained by ``agents.train.train`` for
   63 updates of 32 episodes (2,016 episodes) on a StoryQA mix of tasks 1, 2 and 3 (one task per update).
   Every write of the neural memory is watched: the guard's refusals (the growth of ``nan_count``: per stream,
   the chunk updates it kept back as non-finite) are counted and every written state is checked for
   non-finite values; the training loss is checked at every update (train stops
   with FloatingPointError on a non-finite one) and the final weights for non-finite values.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_soak.py
    SOAK_ENV_STEPS, SOAK_CYCLES, SOAK_UPDATES shrink it for a quick look (the defaults are the goals').
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import environments

ENV_STEPS = int(os.environ.get("SOAK_ENV_STEPS", 1_000_000))
CYCLES = int(os.environ.get("SOAK_CYCLES", 100_000))
UPDATES = int(os.environ.get("SOAK_UPDATES", 63))
BATCH = 32
WARMUP = 0.1  # fraction of a soak run before the baseline reading
GOAL = 5.0  # % growth allowed after warm-up


def rss_mib() -> float:
    """Resident set size (VmRSS) of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # the value is in kB
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def env_soak(steps: int) -> dict:
    envs = [gym.make(env_id) for env_id in environments.ENV_IDS]
    warm_at = int(steps * WARMUP)
    which, episodes, solved, n = 0, 0, 0, 0
    obs, info = envs[0].reset(seed=0)
    start = time.perf_counter()
    warm = None
    while n < steps:
        obs, reward, term, trunc, info = envs[which].step(info["oracle_action"])
        n += 1
        if n == warm_at:
            warm = rss_mib()
        if term or trunc:
            episodes += 1
            solved += bool(info.get("success"))
            which = (which + 1) % len(envs)
            obs, info = envs[which].reset(seed=episodes)
    return {"what": f"{steps:,} env steps (oracle, the 6 envs in turn)",
            "warm": warm if warm is not None else rss_mib(),
            "end": rss_mib(), "s": time.perf_counter() - start,
            "note": f"{episodes:,} episodes, oracle success {solved}/{episodes}"}


def agent_soak(cycles: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_core import DIM, workspace

    torch.set_num_threads(1)
    ws = workspace("outer_product")
    warm_at = int(cycles * WARMUP)
    warm = None
    finite = True
    with torch.inference_mode():
        state = ws.initial_state(1)
        inputs = torch.randn(64, 1, 1, DIM, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        for n in range(1, cycles + 1):
            state, out = ws.cycle(state, inputs[n % 64])
            if n == warm_at:
                warm = rss_mib()
            if n % 1000 == 0:
                finite &= bool(torch.isfinite(out.logits).all())
    return {"what": f"{cycles:,} workspace cycles (bench_core outer_product, batch 1, inference_mode)",
            "warm": warm if warm is not None else rss_mib(), "end": rss_mib(), "s": time.perf_counter() - start,
            "note": f"logits finite at every 1,000th cycle: {finite}"}


def neural_stability(updates: int) -> dict:
    import torch
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from agents.train import train
    from cogarch.memory.neural import NeuralMemory
    from environments.story_qa import StoryQAEnv

    envs = [StoryQAEnv(task=t) for t in (1, 2, 3)]
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="run", overrides=["agent=workspace", "cogarch/long_term@agent.long_term=neural"])
    agent = instantiate(cfg.agent, vocab=envs[0].vocab)
    memory = next(m for m in agent.workspace.modules() if isinstance(m, NeuralMemory))
    watch = {"writes": 0, "refused": 0, "nonfinite_states": 0}
    write = memory.update

    def watched_update(state, x, mask=None):  # the same write, counted and checked
        new, info = write(state, x, mask)
        watch["writes"] += 1
        watch["refused"] += int((new.nan_count - state.nan_count).sum())  # chunk updates the guard refused
        watch["nonfinite_states"] += not all(bool(torch.isfinite(t).all()) for t in (*new.weights, *new.momentum))
        return new, info

    memory.update = watched_update
    start, error = time.perf_counter(), None
    with tempfile.TemporaryDirectory() as out:
        try:
            result = train(agent, envs, out, updates=updates, batch_size=BATCH, seed=0,
                           checkpoint_every=updates, log_every=1, progress=False)
            last = result["last"]
        except FloatingPointError as err:  # a non-finite loss stops train before the optimizer step
            error, last = str(err), {}
    params_finite = all(bool(torch.isfinite(p).all()) for p in agent.model.parameters())
    return {"updates": updates, "episodes": updates * BATCH, "s": time.perf_counter() - start, "error": error,
            "last_loss": last.get("loss", math.nan), "accuracy": last.get("answer_accuracy", math.nan),
            "params_finite": params_finite, **watch, "max_norm": memory.max_norm}


def main() -> bool:
    rows = [env_soak(ENV_STEPS), agent_soak(CYCLES)]
    lines = [
        "## Soak: resident memory (VmRSS) after warm-up (the first 10%) and at the end\n",
        f"goal: < {GOAL:g}% growth after warm-up.\n",
        "| run | wall s | RSS after warm-up MiB | RSS at end MiB | growth | goal met | |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    ok = True
    for r in rows:
        growth = 100 * (r["end"] - r["warm"]) / r["warm"]
        ok &= growth < GOAL
        lines.append(f"| {r['what']} | {r['s']:.1f} | {r['warm']:.1f} | {r['end']:.1f} | {growth:+.2f}% | "
                     f"{'yes' if growth < GOAL else 'NO'} | {r['note']} |")
    s = neural_stability(UPDATES)
    clean = s["error"] is None and s["params_finite"] and s["nonfinite_states"] == 0
    ok &= clean
    lines += [
        "",
        f"## Stability: neural memory (Titans, max_norm={s['max_norm']}, NaN guard) trained "
        f"{s['episodes']:,} episodes\n",
        "| updates x batch | episodes | wall s | non-finite loss | non-finite memory states | guard refusals "
        "(chunk updates kept back) | batched memory writes | weights finite | last loss | last answer accuracy |",
        "|---|---:|---:|---|---:|---:|---:|---|---:|---:|",
        f"| {s['updates']} x {BATCH} | {s['episodes']:,} | {s['s']:.1f} | {s['error'] or 'none'} | "
        f"{s['nonfinite_states']} | {s['refused']} | {s['writes']:,} | {s['params_finite']} | {s['last_loss']:.4f} | "
        f"{s['accuracy']:.3f} |",
        "",
        f"Goals: RSS growth < {GOAL:g}% and no NaN in 2,000 episodes: {'met' if ok else 'NOT met'}.",
    ]
    print("\n".join(lines) + "\n")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
