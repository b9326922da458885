"""Inspect a run: what the agent held, what won the workspace each cycle, and why it answered as it did.

    from cogarch.inspect import load_run
    run = load_run("runs/2026-11-26_11-14-02_story_qa_pretrained")
    run                       # in a notebook: the summary and the episodes as an HTML table
    run.episodes[0]           # the episode's cycles: winners, decoded concepts, working-memory slots
    df = run.to_dataframe()   # pandas, one row per cognitive cycle (columns: see Run.to_dataframe)
    run.snapshot(0)           # the agent's memory state at the end of episode 0 (if the run wrote snapshots)

A run folder is what ``cogarch run`` writes: ``episodes.jsonl``, ``trace.jsonl`` (read with
:func:`cogarch.trace.read_trace`: a trace cut off mid-line loads up to its last complete record with a
warning), ``summary.json``, ``config.yaml`` and, with ``snapshots: true``, ``snapshots/episode_XXXXXX.safetensors``.

The plots are in :mod:`cogarch.inspect.plots`, the counterfactual importance of cycles (Thought Anchors) in
:mod:`cogarch.inspect.anchors` and the static HTML report (``cogarch view``) in :mod:`cogarch.inspect.report`.
Nothing here imports ``environments`` or ``agents``: an agent and an env are passed in where needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cogarch.inspect.html import cycle_html, episode_html, run_html, snapshot_html
from cogarch.trace import CycleRecord, MemorySnapshot, read_jsonl, read_trace

__all__ = ["Run", "Episode", "load_run", "snapshot_of", "COLUMNS", "cycle_html", "episode_html", "run_html",
           "snapshot_html"]

# The columns of Run.to_dataframe(), in order, with what each holds (the README repeats this table).
COLUMNS = {
    "episode": "episode index in the run (its env seed is the run's seed + episode)",
    "step": "env step within the episode",
    "cycle": "cognitive cycle within the step (0 .. cycles_per_step - 1; up to answer_cycles - 1 at a question)",
    "action": "the action taken at this step (env id; 0 = <none> while reading)",
    "oracle_action": "the correct action at this step (env id; 0 while reading)",
    "answering": "True where the oracle asks for an answer (oracle_action not 0): the answering phase",
    "correct": "answering and reward > 0 (None while reading)",
    "reward": "the env's reward for this step's action",
    "surprise": "the consciousness prior's prediction error of this cycle (None for baselines)",
    "boundary": "an episodic event closed in this cycle (None without episodic memory)",
    "n_candidates": "how many candidates could compete (a score that is not masked)",
    "winners": "indices of the winning candidates, best first",
    "winner_sources": "source module of each winner (sensory, working, long_term, episodic, ...)",
    "winner_weights": "the bottleneck's weight of each winner",
    "winner_concepts": "each winner decoded into (subject, relation, object) words by the index layer",
    "slot_concepts": "each working-memory slot decoded into words as it competed (before this cycle's write); None = empty",
    "top_logit_action": "argmax of the action logits over the agent's vocabulary (agent id)",
}


@dataclass
class Episode:
    """One finished episode of a run: its line of ``episodes.jsonl`` and its cycles from ``trace.jsonl``.

    ``records`` are :class:`cogarch.trace.CycleRecord` in order; ``oracle_actions`` and ``rewards`` are the
    per-cycle context the run loop wrote beside each record (same length as ``records``).
    """

    index: int
    seed: int | None
    steps: int
    reward: float
    success: bool | None
    answers: list
    meta: dict[str, Any]
    records: list[CycleRecord] = field(default_factory=list)
    oracle_actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    snapshot_path: Path | None = None

    @property
    def snapshot(self) -> MemorySnapshot | None:
        """The agent's state at the end of the episode (None if the run wrote no snapshot for it)."""
        return MemorySnapshot.load(self.snapshot_path) if self.snapshot_path is not None else None

    def _repr_html_(self) -> str:
        return episode_html(self)


class Run:
    """A run folder loaded for inspection (see :func:`load_run`).

    Attributes: ``path``; ``summary`` (summary.json, {} if absent); ``config`` (config.yaml as a dict, {} if
    absent); ``episodes`` (list of :class:`Episode`; the cycles of an episode whose line in episodes.jsonl
    is missing (an interrupted run) are still loaded, with unknown totals).
    """

    def __init__(self, path: Path, episodes: list[Episode], summary: dict, config: dict):
        self.path, self.episodes, self.summary, self.config = path, episodes, summary, config

    @property
    def records(self) -> list[CycleRecord]:
        """Every cycle record of the run, episode by episode."""
        return [r for e in self.episodes for r in e.records]

    def episode(self, index: int) -> Episode:
        """The episode with this index; KeyError naming the indices present otherwise."""
        for e in self.episodes:
            if e.index == index:
                return e
        raise KeyError(f"{self.path}: no episode {index}; episodes present: "
                       f"{[e.index for e in self.episodes][:20]}")

    def snapshot(self, index: int) -> MemorySnapshot:
        """The memory snapshot written at the end of episode ``index`` (FileNotFoundError naming it if none)."""
        ep = self.episode(index)
        if ep.snapshot_path is None:
            raise FileNotFoundError(f"{self.path / 'snapshots'}: no snapshot of episode {index} "
                                    "(run with snapshots=true and an agent with a workspace state)")
        return MemorySnapshot.load(ep.snapshot_path)

    def to_dataframe(self):
        """A pandas DataFrame with one row per cognitive cycle and the columns of :data:`COLUMNS`.

        Inputs: none. Output: ``pandas.DataFrame`` (columns in the order of ``COLUMNS``; list-valued cells
        hold Python lists; fields a baseline agent does not report are None).
        """
        import pandas as pd

        rows = []
        for e in self.episodes:
            for rec, oracle, reward in zip(e.records, e.oracle_actions, e.rewards):
                answering = oracle is not None and oracle != 0
                logits = rec.action_logits
                rows.append({
                    "episode": e.index,
                    "step": rec.step,
                    "cycle": rec.cycle,
                    "action": rec.action,
                    "oracle_action": oracle,
                    "answering": answering,
                    "correct": (reward is not None and reward > 0) if answering else None,
                    "reward": reward,
                    "surprise": rec.surprise,
                    "boundary": rec.boundary,
                    "n_candidates": (sum(c.get("score") is not None for c in rec.candidates)
                                     if rec.candidates is not None else None),
                    "winners": rec.winners,
                    "winner_sources": rec.winner_sources,
                    "winner_weights": rec.winner_weights,
                    "winner_concepts": rec.winner_concepts,
                    "slot_concepts": rec.slot_concepts,
                    "top_logit_action": (max(range(len(logits)), key=logits.__getitem__) if logits else None),
                })
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def _repr_html_(self) -> str:
        return run_html(self)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, episodes={len(self.episodes)}, cycles={len(self.records)})"


def load_run(path: str | Path) -> Run:
    """Load a run folder written by ``cogarch run``.

    Inputs: ``path``, the run folder. Output: a :class:`Run`.
    Raises FileNotFoundError naming the path when it does not exist, and ValueError naming the folder or file
    when it is not a run (neither ``episodes.jsonl`` nor ``trace.jsonl`` in it), when a line of episodes.jsonl or
    trace.jsonl is not a JSON object (a truncated last line is dropped with a warning instead), when a record
    lacks its integer fields (an episode's ``episode``; a cycle's ``step`` and ``cycle``) or when
    summary.json is not JSON.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run folder {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a run folder (a file, not a directory)")
    ep_file, tr_file = path / "episodes.jsonl", path / "trace.jsonl"
    if not ep_file.is_file() and not tr_file.is_file():
        raise ValueError(f"{path} is not a cogarch run folder: it has neither episodes.jsonl nor trace.jsonl "
                         "(give the folder `cogarch run` printed as its run directory)")
    episodes: dict[int, Episode] = {}
    if ep_file.is_file():
        for n, d in enumerate(read_jsonl(ep_file, "episodes"), start=1):
            if not isinstance(d.get("episode"), int):
                raise ValueError(f"{ep_file}: record {n} has episode={d.get('episode', '<missing>')!r}; each "
                                 "record needs an integer episode")
            episodes[d["episode"]] = Episode(d["episode"], d.get("seed"), d.get("steps", 0), d.get("reward", 0.0),
                                             d.get("success"), d.get("answers", []), d.get("meta", {}))
    if tr_file.is_file():
        for n, d in enumerate(read_trace(tr_file), start=1):
            i = d.get("episode", 0)
            if not isinstance(i, int):
                raise ValueError(f"{tr_file}: record {n}: episode is {i!r}, an integer is needed")
            try:
                record = CycleRecord.from_json(d)
            except ValueError as err:
                raise ValueError(f"{tr_file}: record {n}: {err}") from None
            if i not in episodes:  # cycles of an episode the run did not finish
                episodes[i] = Episode(i, None, 0, 0.0, None, [], {})
            e = episodes[i]
            e.records.append(record)
            e.oracle_actions.append(d.get("oracle_action"))
            e.rewards.append(d.get("reward"))
    snaps = path / "snapshots"
    for i, e in episodes.items():
        f = snaps / f"episode_{i:06d}.safetensors"
        if f.is_file():
            e.snapshot_path = f
    summary = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path / 'summary.json'} is not valid JSON ({err}); `cogarch run` rewrites it as "
                             "episodes finish, and episodes.jsonl holds the same results") from None
    config = {}
    if (path / "config.yaml").is_file():
        from omegaconf import OmegaConf

        try:
            config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False)
        except Exception:  # a config we cannot parse does not stop inspection of the trace
            config = {}
    return Run(path, [episodes[i] for i in sorted(episodes)], summary, config)


def snapshot_of(state: Any, agent: Any = None, **meta: Any) -> MemorySnapshot | None:
    """A :class:`MemorySnapshot` of an agent's workspace state, or None if the state has no workspace.

    Inputs: ``state`` (an agent state with a ``workspace`` field, e.g. agents.workspace.AgentState, or a
    WorkspaceState itself); ``agent`` (optional: with an ``index_layer`` the working-memory slots are decoded
    into words and stored in the snapshot's meta as ``slot_concepts``, with ``vocab`` too); ``meta`` (JSON-able
    context: episode, seed, ...). Output: the snapshot (not yet saved).
    """
    ws = getattr(state, "workspace", None)
    if ws is None and hasattr(state, "memories") and hasattr(state, "conscious"):
        ws = state
    if ws is None:
        return None
    index_layer = getattr(agent, "index_layer", None)
    working = ws.memories.get("working") if isinstance(ws.memories, dict) else None
    if index_layer is not None and working is not None and hasattr(working, "slots"):
        import torch

        with torch.no_grad():
            slots, usage = working.slots[0], working.usage[0]  # (K, d), (K,)
            ids, _ = index_layer.decode_triple(slots)
            words = index_layer.names(ids)
        meta["slot_concepts"] = [list(w) if float(u) > 0 else None for w, u in zip(words, usage.tolist())]
    if getattr(agent, "vocab", None) is not None:
        meta["vocab"] = list(agent.vocab)
    return MemorySnapshot.of(ws, **meta)
