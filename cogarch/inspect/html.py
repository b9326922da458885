"""HTML tables of runs, episodes, cycle records and memory snapshots (notebook ``_repr_html_`` and the report).

Each function takes the object and returns an HTML fragment (str); every value is escaped. Concepts are shown
as "subject relation object" words, as the index layer decoded them.
"""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

STYLE = ("<style>.cogarch table{border-collapse:collapse;font:12px monospace;margin:4px 0}"
         ".cogarch td,.cogarch th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
         ".cogarch th{background:#f0f0f0}.cogarch .win{background:#fff2b3}</style>")


def words(triple: Sequence[str] | None) -> str:
    """A decoded (s, p, o) triple as one string; '(empty)' for None."""
    return "(empty)" if triple is None else " ".join(str(w) for w in triple)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], row_class: Sequence[str] | None = None) -> str:
    """An HTML table; cells are escaped (a cell that is already a ``Markup`` str is not)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        cells = "".join(f"<td>{c if isinstance(c, Markup) else escape(_fmt(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


class Markup(str):
    """A string that :func:`table` inserts without escaping (already HTML)."""


def _fmt(v: Any) -> str:
    """A cell as text: floats to 3 decimals, a list of word triples as "s p o; s p o", other lists compactly."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(t, (list, tuple)) and all(isinstance(w, str) for w in t) for t in v if t is not None):
            return "; ".join(words(t) for t in v)
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _wrap(body: str) -> str:
    return f'{STYLE}<div class="cogarch">{body}</div>'


def cycle_table(record) -> str:
    """The candidates of one cycle (source, score, winner?, decoded concept of a winner) and the slots."""
    parts = [f"<b>step {record.step}, cycle {record.cycle}</b>: action {record.action}"
             + (f", surprise {record.surprise:.3f}" if record.surprise is not None else "")
             + (", event boundary" if record.boundary else "")]
    if record.candidates is None:
        parts.append("<p>(no workspace: this agent reports no candidates)</p>")
        return "".join(parts)
    winners = record.winners or []
    concept = {w: c for w, c in zip(winners, record.winner_concepts or [])}
    weight = {w: x for w, x in zip(winners, record.winner_weights or [])}
    rows, cls = [], []
    for i, c in enumerate(record.candidates):
        rank = winners.index(i) + 1 if i in winners else None
        rows.append([i, c.get("source"), c.get("score"), rank, weight.get(i), words(concept[i]) if i in concept else ""])
        cls.append("win" if rank else "")
    parts.append(table(["candidate", "source", "score", "winner rank", "weight", "decoded concept"], rows, cls))
    if record.slot_concepts is not None:
        parts.append(table(["slot", "content (decoded, before this cycle's write)"],
                           [[k, words(c)] for k, c in enumerate(record.slot_concepts)]))
    return "".join(parts)


def cycle_html(record) -> str:
    """``CycleRecord._repr_html_``."""
    return _wrap(cycle_table(record))


def episode_table(episode, max_rows: int = 200) -> str:
    """One row per cycle: step, cycle, action, oracle, reward, winners with sources and decoded concepts, slots."""
    rows, cls = [], []
    for rec, oracle, reward in list(zip(episode.records, episode.oracle_actions, episode.rewards))[:max_rows]:
        won = "; ".join(f"{s}: {words(c)}" for s, c in zip(rec.winner_sources or [], rec.winner_concepts or []))
        if rec.winner_sources and not rec.winner_concepts:
            won = ", ".join(rec.winner_sources)
        slots = " | ".join(words(c) for c in rec.slot_concepts if c is not None) if rec.slot_concepts else ""
        rows.append([rec.step, rec.cycle, rec.action, oracle, reward, rec.surprise, won, slots])
        cls.append("win" if oracle not in (None, 0) else "")
    more = len(episode.records) - max_rows
    note = f"<p>... {more} more cycles</p>" if more > 0 else ""
    return table(["step", "cycle", "action", "oracle", "reward", "surprise", "winners (source: decoded concept)",
                  "working-memory slots (decoded)"], rows, cls) + note


def episode_html(episode) -> str:
    """``Episode._repr_html_``: its totals and meta, then the cycle table (answering steps highlighted)."""
    head = (f"<b>episode {episode.index}</b> (seed {episode.seed}): {episode.steps} steps, reward {episode.reward}, "
            f"success {episode.success}, answers {episode.answers}")
    meta = table(["meta", "value"], [[k, v] for k, v in episode.meta.items() if k not in ("positions", "words", "walk")])
    return _wrap(f"<p>{escape(head)}</p>{meta}{episode_table(episode)}")


def summary_table(run) -> str:
    """The run's summary.json as a two-column table."""
    return table(["summary", "value"], [[k, v] for k, v in run.summary.items()])


def episodes_table(run) -> str:
    """One row per episode: index, seed, steps, reward, success, answers, cycles traced."""
    return table(["episode", "seed", "steps", "reward", "success", "answers", "cycles traced"],
                 [[e.index, e.seed, e.steps, e.reward, e.success, e.answers, len(e.records)] for e in run.episodes])


def run_html(run, max_episodes: int = 50) -> str:
    """``Run._repr_html_``: the summary, then the episodes (the first ``max_episodes``)."""
    shown = run.episodes[:max_episodes]
    more = len(run.episodes) - len(shown)

    class _View:  # the same run, cut to the episodes shown
        summary, episodes = run.summary, shown

    return _wrap(f"<p><b>run</b> {escape(str(run.path))}</p>{summary_table(run)}{episodes_table(_View)}"
                 + (f"<p>... {more} more episodes</p>" if more > 0 else ""))


def snapshot_html(snapshot) -> str:
    """``MemorySnapshot._repr_html_``: its meta (decoded slots when present) and each tensor's name, shape,
    dtype and norm."""
    import torch

    meta = {k: v for k, v in snapshot.meta.items() if k not in ("vocab", "slot_concepts")}
    parts = [table(["meta", "value"], [[k, v] for k, v in meta.items()])]
    slots = snapshot.meta.get("slot_concepts")
    if slots is not None:
        parts.append(table(["working-memory slot", "content (decoded)"], [[k, words(c)] for k, c in enumerate(slots)]))
    rows = []
    for name, t in snapshot.tensors.items():
        norm = float(torch.linalg.vector_norm(t.float())) if t.numel() and t.dtype != torch.bool else None
        rows.append([name, tuple(t.shape), str(t.dtype).replace("torch.", ""), norm])
    parts.append(table(["tensor", "shape", "dtype", "norm"], rows))
    return _wrap("".join(parts))
