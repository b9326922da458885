"""The run loop: reset -> act -> step -> log, for any gymnasium env and any agent.

Results are written as the run goes, so an interrupted run keeps every finished episode:

- ``episodes.jsonl``: one JSON line per finished episode (seed, steps, reward, success, env metadata);
- ``trace.jsonl``: one JSON line per cognitive cycle (episode, the agent's CycleRecord, oracle action,
  reward) when ``trace=True``;
- ``snapshots/episode_XXXXXX.safetensors``: the agent's workspace state at the end of each episode
  (a :class:`cogarch.trace.MemorySnapshot`) when ``snapshots=True`` and the agent's state has a workspace;
- ``summary.json``: the aggregate of the finished episodes, rewritten at most once a second while the run goes
  (``SUMMARY_EVERY_S``) and when it ends; ``resume`` recomputes it from ``episodes.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

from tqdm.auto import tqdm

from cogarch.trace import TraceWriter, to_jsonable

SUMMARY_EVERY_S = 1.0  # how often summary.json is rewritten while a run goes (RunFiles)
# Per-step keys of a cogarch env's info; everything else that reset returns describes the episode.
STEP_KEYS = {"oracle_action", "step", "phase", "supporting_facts", "accepted_actions", "answer_index", "tags"}


class Summary:
    """The aggregate of the episode results added so far (what the run's table and ``summary.json`` show), kept as
    running totals: adding an episode costs the same after a million episodes as after one.

    ``as_dict(wall_s)`` gives ``episodes``, ``success_rate`` (over the episodes whose env reports success; None if
    none does), ``answer_accuracy`` (correct answering steps / answering steps), ``mean_reward``, ``env_steps``,
    ``steps_per_s``, ``wall_s`` and, per question tag (e.g. GraphTrace's ``edges_twice``), ``answer_steps_<tag>``
    and ``answer_accuracy_<tag>``.

    ``earlier``: episodes an earlier process played (a resumed run's). They count in the results, not in the speed:
    ``steps_per_s`` is then the steps played since over ``wall_s``, this process's time (None if it played none),
    and ``resumed_episodes`` says how many there were."""

    def __init__(self, episodes: Iterable[dict[str, Any]] = (), earlier: Iterable[dict[str, Any]] = ()) -> None:
        self.n, self.steps, self.answered, self.correct, self.successes, self.scored = 0, 0, 0, 0, 0, 0
        self.reward: float = 0  # summed in episode order, as sum() would
        self.tags: dict[str, list[int]] = {}  # tag -> [answered, correct]
        for e in earlier:
            self.add(e)
        self.earlier_n, self.earlier_steps = self.n, self.steps
        for e in episodes:
            self.add(e)

    def add(self, e: dict[str, Any]) -> None:
        """Count one episode result (a line of episodes.jsonl, see :func:`episode_result`)."""
        self.n += 1
        self.steps += e["steps"]
        self.reward += e["reward"]
        if e["success"] is not None:
            self.scored += 1
            self.successes += bool(e["success"])
        self.answered += e.get("answer_steps", 0)
        self.correct += e.get("correct_steps", 0)
        for tag, (answered, correct) in e.get("tag_steps", {}).items():
            total = self.tags.setdefault(tag, [0, 0])
            total[0] += answered
            total[1] += correct

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.scored if self.scored else None

    def as_dict(self, wall_s: float) -> dict[str, Any]:
        out = {
            "episodes": self.n,
            "success_rate": self.success_rate,
            "answer_accuracy": self.correct / self.answered if self.answered else None,
            "mean_reward": self.reward / self.n if self.n else None,
            "env_steps": self.steps,
            "steps_per_s": (self.steps - self.earlier_steps) / wall_s if wall_s > 0 and self.steps > self.earlier_steps
            else None,
            "wall_s": wall_s,
        }
        if self.earlier_n:
            out["resumed_episodes"] = self.earlier_n
        for tag, (answered, correct) in sorted(self.tags.items()):
            out[f"answer_steps_{tag}"] = answered
            out[f"answer_accuracy_{tag}"] = correct / answered if answered else None
        return out


def summarize(episodes: Iterable[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Aggregate per-episode results into the summary the table prints (:class:`Summary`)."""
    return Summary(episodes).as_dict(wall_s)


class Tally:
    """One episode's scored answers: how many, how many were correct, the actions given, and the same counts
    per question tag. ``add`` takes the info that came with the observation acted on (before the step)."""

    def __init__(self) -> None:
        self.answered, self.correct = 0, 0
        self.answers: list[Any] = []
        self.tags: dict[str, list[int]] = {}  # tag -> [answered, correct]

    def add(self, info: dict[str, Any], action: Any, reward: float) -> None:
        if info.get("phase") != 1:
            return
        ok = int(reward > 0)
        self.answered += 1
        self.correct += ok
        self.answers.append(action)
        for tag in info.get("tags", ()):
            counts = self.tags.setdefault(tag, [0, 0])
            counts[0] += 1
            counts[1] += ok


def episode_result(episode: int, seed: int, steps: int, reward: float, last_info: dict[str, Any], tally: Tally,
                   truncated: bool, meta: dict[str, Any]) -> dict[str, Any]:
    """One line of ``episodes.jsonl``; ``meta`` is what reset's info said about the episode."""
    result = {
        "episode": episode,
        "seed": seed,
        "steps": steps,
        "reward": reward,
        "success": bool(last_info["success"]) if "success" in last_info else None,
        "answer_steps": tally.answered,
        "correct_steps": tally.correct,
        "answers": tally.answers,
        "truncated": bool(truncated),
        "meta": {k: v for k, v in meta.items() if k not in STEP_KEYS},
    }
    if tally.tags:
        result["tag_steps"] = tally.tags  # tag -> [answered, correct]
    return result


def run_episodes(
    env,
    agent,
    episodes: int,
    seed: int,
    out_dir: str | Path | None = None,
    trace: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    snapshots: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``episodes`` episodes; episode ``i`` resets the env with seed ``seed + i``.

    ``resume``: continue the run in ``out_dir`` after the last episode it finished (see
    :func:`finished_episodes`); every episode is independent of the others, so the results equal an
    uninterrupted run's.

    Returns the summary dict (see :func:`summarize`). ``max_steps`` truncates runaway episodes of
    third-party envs without a time limit. ``snapshots`` writes the agent's end-of-episode state (see the
    module docstring).
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    check_max_steps(max_steps)
    out = Path(out_dir) if out_dir is not None else None
    files = RunFiles(out, trace, resume)
    if hasattr(agent, "trace_cycles"):  # learned agents skip building cycle records that nobody writes
        agent.trace_cycles = trace
    summary = Summary(earlier=files.done[:episodes])
    start = time.perf_counter()
    bar = tqdm(range(summary.n, episodes), desc="episodes", unit="ep", disable=not progress,
               dynamic_ncols=True, initial=summary.n, total=episodes)
    try:
        for i in bar:
            ep_seed = seed + i
            obs, info = env.reset(seed=ep_seed)
            meta = info
            state = agent.initial_state(seed=ep_seed)
            total, steps, tally = 0.0, 0, Tally()
            done = False
            while not done:
                before = info
                oracle = info.get("oracle_action")
                action, state, records = agent.act(obs, state, info)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                tally.add(before, action, reward)
                for rec in records if files.trace is not None else ():
                    files.trace.write(rec, episode=i, oracle_action=oracle, reward=float(reward))
                steps += 1
                done = terminated or truncated or (max_steps is not None and steps >= max_steps)
            if snapshots and out is not None:
                save_snapshot(out, state, agent, i, ep_seed, steps)
            agent.end_episode(state)
            result = episode_result(i, ep_seed, steps, total, info, tally, truncated, meta)
            files.finished(result, summary, time.perf_counter() - start)
            if summary.success_rate is not None:  # redrawn at tqdm's own pace
                bar.set_postfix(success=f"{summary.success_rate:.3f}", refresh=False)
    finally:
        bar.close()
        files.close()
    return summary.as_dict(time.perf_counter() - start)


def check_max_steps(max_steps: Any) -> None:
    """Refuse a ``max_steps`` that is neither None (no limit) nor an integer >= 1 (0 or less would cut every
    episode after its first step)."""
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps={max_steps!r} is out of range; allowed: null (no limit) or an integer >= 1")


def finished_episodes(out: Path) -> list[dict[str, Any]]:
    """The episodes 0, 1, ... that an interrupted run in ``out`` finished, from its ``episodes.jsonl``.

    The files are cut back to them: a partly written last line of ``episodes.jsonl`` goes, and so do the
    lines of ``trace.jsonl`` of later (unfinished) episodes and a partly written last trace line. A run that
    resumes from here appends to what is left and ends with the files of an uninterrupted run."""
    path = out / "episodes.jsonl"
    if not path.is_file():
        return []
    done, keep = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                result = json.loads(line) if line.endswith(b"\n") else None
            except json.JSONDecodeError:
                result = None
            if not isinstance(result, dict) or result.get("episode") != len(done):
                break
            done.append(result)
            keep += len(line)
    with open(path, "r+b") as f:
        f.truncate(keep)
    trace = out / "trace.jsonl"
    if trace.is_file():  # keep the complete lines of the finished episodes
        tmp = trace.with_name(trace.name + ".resume")
        with open(trace, "rb") as src, open(tmp, "wb") as dst:
            for line in src:
                try:
                    ok = line.endswith(b"\n") and json.loads(line).get("episode", len(done)) < len(done)
                except (json.JSONDecodeError, AttributeError):
                    ok = False
                if ok:
                    dst.write(line)
        tmp.replace(trace)
    return done


def save_snapshot(out: Path, state: Any, agent: Any, episode: int, seed: int, steps: int) -> None:
    """snapshots/episode_XXXXXX.safetensors: the episode's final workspace state (nothing for agents without one)."""
    from cogarch.inspect import snapshot_of

    snap = snapshot_of(state, agent, episode=episode, seed=seed, steps=steps)
    if snap is not None:
        snap.save(out / "snapshots" / f"episode_{episode:06d}.safetensors")


class RunFiles:
    """The files of a run folder (module docstring), written as episodes finish; nothing when ``out`` is None.

    ``trace`` is the TraceWriter of trace.jsonl (None without traces or folder). :meth:`finished` appends an
    episode's result to episodes.jsonl and flushes both files; ``summary.json`` is rewritten from ``summary`` at
    most every ``SUMMARY_EVERY_S`` seconds (a file rewrite per episode costs more than a short episode) and by
    :meth:`close`, so a run killed outright has every finished episode in episodes.jsonl and a summary.json at
    most that much older."""

    def __init__(self, out: Path | None, trace: bool, resume: bool = False):
        self.out, self.episodes, self.trace = out, None, None
        self.done: list[dict[str, Any]] = []  # with ``resume``: the episodes an earlier run finished
        self._written_at: float | None = None  # when summary.json was last rewritten (None: not yet)
        self._pending: tuple[Summary, float] | None = None  # a summary not written yet, with its wall time
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if resume:
                self.done = finished_episodes(out)
            mode = "a" if self.done else "w"
            self.episodes = open(out / "episodes.jsonl", mode)
            self.trace = TraceWriter(out / "trace.jsonl", append=bool(self.done), flush_each=False) if trace else None

    def finished(self, result: dict[str, Any], summary: Summary, wall_s: float) -> None:
        """Count one finished episode's ``result`` in ``summary`` and write it."""
        summary.add(result)
        if self.episodes is None:
            return
        self.episodes.write(json.dumps(to_jsonable(result)) + "\n")
        self.episodes.flush()
        if self.trace is not None:
            self.trace.flush()
        self._pending = (summary, wall_s)
        now = time.monotonic()
        if self._written_at is None or now - self._written_at >= SUMMARY_EVERY_S:
            self._write_summary(now)

    def _write_summary(self, now: float) -> None:
        summary, wall_s = self._pending
        (self.out / "summary.json").write_text(json.dumps(to_jsonable(summary.as_dict(wall_s)), indent=2) + "\n")
        self._pending, self._written_at = None, now

    def close(self) -> None:
        """Close the files, writing the summary of the last finished episodes if it is not written yet."""
        if self._pending is not None:
            self._write_summary(time.monotonic())
        for f in (self.episodes, self.trace):
            if f is not None:
                f.close()


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of summaries; each row also carries ``env`` and ``agent`` names."""
    cols = ["env", "agent", "episodes", "success_rate", "mean_reward", "steps_per_s"]
    heads = ["env", "agent", "episodes", "success", "mean reward", "env steps/s"]
    return aligned_table(heads, [[format_cell(c, r.get(c)) for c in cols] for r in rows])


def format_cell(col: str, value: Any) -> str:
    """A table cell: n/a for None / NaN, env steps/s as a whole number, other floats with 3 decimals."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if col == "steps_per_s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def aligned_table(heads: list[str], body: list[list[str]]) -> str:
    """A markdown table with its columns padded to a common width (readable as plain text too)."""
    widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(heads)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(heads), sep, *(line(b) for b in body)])
