"""Vectorized episodes: N envs stepped together, the agent's cognitive cycles batched over them.

``run_episodes_vectorized`` plays the same episodes as :func:`cogarch.runner.run_episodes` (episode ``i``
resets with seed ``seed + i``) on ``num_envs`` env copies at once. An agent that batches episodes at
different steps (``supports_batch``: the workspace and transformer agents) acts on all N envs with one call per
step, its state one row per env; a row is reset (``reset_rows``) when its env starts a new episode. An agent
that does not batch (the random, oracle and LLM baselines) gains nothing from N envs: it runs through
:func:`cogarch.runner.run_episodes`, one env, episode after episode (the same results, written as each ends).

The run folder holds the same files as a single-env run, written in episode order as episodes finish (an
episode that ends before an earlier one waits in memory until that one is written), so ``episodes.jsonl``
and ``trace.jsonl`` are line for line those of ``num_envs=1`` with the same seeds, up to floating-point
rounding between batch sizes (which could flip an argmax between near-equal logits).

The envs are a plain list rather than a ``gymnasium.vector.SyncVectorEnv``: every episode must start from
its own seed (``seed + i``) whenever its slot frees up, and slots sit idle at the end of a run; a vector env
steps every sub-env at every call and autoresets with seeds of its own. The per-env Python work is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cogarch.runner import RunFiles, Summary, Tally, check_max_steps, episode_result, run_episodes, save_snapshot


def run_episodes_vectorized(
    make_env: Callable[[], Any],
    agent,
    episodes: int,
    seed: int,
    num_envs: int,
    out_dir: str | Path | None = None,
    trace: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    snapshots: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` episodes on ``num_envs`` envs made by ``make_env``; returns the summary dict.
    ``snapshots`` and ``resume`` work as in :func:`cogarch.runner.run_episodes`."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is out of range; allowed: integer >= 1")
    check_max_steps(max_steps)
    if not getattr(agent, "supports_batch", False):
        return run_episodes(make_env(), agent, episodes, seed, out_dir, trace=trace, progress=progress,
                            max_steps=max_steps, snapshots=snapshots, resume=resume)
    if hasattr(agent, "trace_cycles"):  # learned agents skip building cycle records that nobody writes
        agent.trace_cycles = trace
    files = RunFiles(Path(out_dir) if out_dir is not None else None, trace, resume)
    n = max(1, min(num_envs, episodes - len(files.done)))  # no more envs than episodes left to play
    envs = [make_env() for _ in range(n)]

    episode = [None] * n  # the episode index each env plays (None: idle)
    obs, info, run = [None] * n, [None] * n, [None] * n  # run: that episode's tallies and trace lines
    state = agent.initial_state(seed=seed, batch_size=n)
    finished: dict[int, tuple[dict, list]] = {}  # episode -> (result, trace lines), waiting to be written
    summary = Summary(earlier=files.done[:episodes])
    next_episode, start = summary.n, time.perf_counter()
    bar = tqdm(total=episodes, initial=summary.n, desc=f"episodes x{n} envs", unit="ep", disable=not progress,
               dynamic_ncols=True)

    def begin(i: int) -> bool:
        """Start the next episode in env i; False when every episode has been started."""
        nonlocal next_episode
        if next_episode >= episodes:
            episode[i] = None
            return False
        ep, next_episode = next_episode, next_episode + 1
        episode[i] = ep
        obs[i], info[i] = envs[i].reset(seed=seed + ep)
        run[i] = {"meta": info[i], "reward": 0.0, "steps": 0, "tally": Tally(), "trace": []}
        return True

    def write_ready() -> None:
        """Write the finished episodes that follow the last written one, in episode order."""
        while summary.n in finished:
            result, lines = finished.pop(summary.n)
            for rec, extra in lines if files.trace is not None else ():
                files.trace.write(rec, episode=result["episode"], **extra)
            files.finished(result, summary, time.perf_counter() - start)

    try:
        state = agent.reset_rows(state, torch.tensor([begin(i) for i in range(n)]))
        while any(e is not None for e in episode):
            live = [i for i in range(n) if episode[i] is not None]
            # one batched step; idle rows act on their last observation and their outputs are dropped
            actions, state, records = agent.act_batch(obs, state, info)
            restart = torch.zeros(n, dtype=torch.bool)
            for i in live:
                before = info[i]
                obs[i], reward, terminated, truncated, info[i] = envs[i].step(actions[i])
                r = run[i]
                r["reward"] += float(reward)
                r["tally"].add(before, actions[i], reward)
                if trace:
                    extra = {"oracle_action": before.get("oracle_action"), "reward": float(reward)}
                    r["trace"] += [(rec, extra) for rec in records[i]]
                r["steps"] += 1
                if terminated or truncated or (max_steps is not None and r["steps"] >= max_steps):
                    ep = episode[i]
                    if snapshots and files.out is not None:
                        row = state._replace(workspace=state.workspace.rows(slice(i, i + 1)), step=state.step[i])
                        save_snapshot(files.out, row, agent, ep, seed + ep, r["steps"])
                    result = episode_result(ep, seed + ep, r["steps"], r["reward"], info[i], r["tally"], truncated,
                                            r["meta"])
                    finished[ep] = (result, r["trace"])
                    bar.update(1)
                    restart[i] = begin(i)
            state = agent.reset_rows(state, restart)
            write_ready()
            if summary.success_rate is not None:
                bar.set_postfix(success=f"{summary.success_rate:.3f}", refresh=False)
    finally:
        bar.close()
        files.close()
    return summary.as_dict(time.perf_counter() - start)
