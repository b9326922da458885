"""The run loop: reset -> act -> step -> log, for any gymnasium env and any agent.

Results are written as the run goes, so an interrupted run keeps every finished episode:

- ``episodes.jsonl``: one JSON line per finished episode (seed, steps, reward, success, env metadata);
- ``trace.jsonl``: one JSON line per cognitive cycle (episode, the agent's CycleRecord, oracle action,
  reward) when ``trace=True``;
- ``summary.json``: the aggregate, rewritten after every episode.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cogarch.trace import TraceWriter, to_jsonable

# Per-step keys of a cogarch env's info; everything else that reset returns describes the episode.
_STEP_KEYS = {"oracle_action", "step", "phase", "supporting_facts", "accepted_actions", "answer_index"}


def summarize(episodes: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Aggregate per-episode results into the summary the table prints."""
    n = len(episodes)
    steps = sum(e["steps"] for e in episodes)
    successes = [e["success"] for e in episodes if e["success"] is not None]
    answered = sum(e.get("answer_steps", 0) for e in episodes)
    return {
        "episodes": n,
        "success_rate": (sum(successes) / len(successes)) if successes else None,
        "answer_accuracy": sum(e.get("correct_steps", 0) for e in episodes) / answered if answered else None,
        "mean_reward": (sum(e["reward"] for e in episodes) / n) if n else None,
        "env_steps": steps,
        "steps_per_s": steps / wall_s if wall_s > 0 else None,
        "wall_s": wall_s,
    }


def run_episodes(
    env,
    agent,
    episodes: int,
    seed: int,
    out_dir: str | Path | None = None,
    trace: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes; episode ``i`` resets the env with seed ``seed + i``.

    Returns the summary dict (see :func:`summarize`). ``max_steps`` truncates runaway episodes of
    third-party envs without a time limit.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    out = Path(out_dir) if out_dir is not None else None
    ep_file = tr_file = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ep_file = open(out / "episodes.jsonl", "w")
        tr_file = TraceWriter(out / "trace.jsonl", append=False, flush_each=False) if trace else None
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(range(episodes), desc="episodes", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for i in bar:
            ep_seed = seed + i
            obs, info = env.reset(seed=ep_seed)
            meta = {k: v for k, v in info.items() if k not in _STEP_KEYS}
            state = agent.initial_state(seed=ep_seed)
            total, steps, answered, correct = 0.0, 0, 0, 0
            actions: list[Any] = []
            done = False
            while not done:
                oracle = info.get("oracle_action")
                phase = info.get("phase")
                action, state, records = agent.act(obs, state, info)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                if phase == 1:
                    answered += 1
                    correct += int(reward > 0)
                    actions.append(action)
                if tr_file is not None:
                    for rec in records:
                        tr_file.write(rec, episode=i, oracle_action=oracle, reward=float(reward))
                steps += 1
                done = terminated or truncated or (max_steps is not None and steps >= max_steps)
            agent.end_episode(state)
            result = {
                "episode": i,
                "seed": ep_seed,
                "steps": steps,
                "reward": total,
                "success": bool(info["success"]) if "success" in info else None,
                "answer_steps": answered,
                "correct_steps": correct,
                "answers": actions,
                "truncated": bool(truncated),
                "meta": meta,
            }
            results.append(result)
            if ep_file is not None:
                ep_file.write(json.dumps(to_jsonable(result)) + "\n")
                ep_file.flush()
                if tr_file is not None:
                    tr_file.flush()
                summary = summarize(results, time.perf_counter() - start)
                (out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
            rate = sum(bool(r["success"]) for r in results) / len(results)
            bar.set_postfix(success=f"{rate:.3f}", refresh=False)  # redrawn at tqdm's own pace
    finally:
        bar.close()
        for f in (ep_file, tr_file):
            if f is not None:
                f.close()
    return summarize(results, time.perf_counter() - start)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of summaries; each row also carries ``env`` and ``agent`` names."""
    cols = ["env", "agent", "episodes", "success_rate", "mean_reward", "steps_per_s"]
    heads = ["env", "agent", "episodes", "success", "mean reward", "env steps/s"]

    def cell(row, col):
        v = row.get(col)
        if v is None:
            return "n/a"
        if col == "steps_per_s":
            return f"{v:,.0f}"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    body = [[cell(r, c) for c in cols] for r in rows]
    widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(heads)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(heads), sep, *(line(b) for b in body)])
