"""Traces: one CycleRecord per cognitive cycle (JSON Lines) and MemorySnapshots of whole states
(safetensors). Nothing here unpickles: records are JSON, tensors are safetensors.

A record says what competed in the workspace and what won, in words where the index layer can decode:
candidates with their source module and score, the winners, the decoded concepts of the winners and of
each working-memory slot, write and read weights, surprise and event boundaries, the action logits.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily so that baseline runs (records only) start fast
    import torch

SNAPSHOT_FORMAT = "cogarch-snapshot/1"


@dataclass(frozen=True)
class CycleRecord:
    """What one cognitive cycle did, for one episode (one row of a batch).

    ``step``: env step within the episode; ``cycle``: cycle within the step; ``action``: the action taken
    (None on a thinking cycle). The rest is filled by agents with a workspace (None for baselines):
    ``candidates`` [{"source", "score"}] in candidate order; ``winners`` candidate indices, best first;
    ``winner_sources``; ``winner_weights``; ``winner_concepts`` decoded (s, p, o) words per winner;
    ``slot_concepts`` decoded words per working-memory slot as it competed this cycle, i.e. before this
    cycle's write (None for an empty slot); ``write_weights``
    (k x K) working-memory write weights; ``read_weights`` {module: weights}; ``surprise``; ``boundary``
    (an episodic event closed); ``action_logits``; ``extra`` anything else a module reports.
    """

    step: int
    cycle: int
    action: int | None
    candidates: list[dict[str, Any]] | None = None
    winners: list[int] | None = None
    winner_sources: list[str] | None = None
    winner_weights: list[float] | None = None
    winner_concepts: list[list[str]] | None = None
    slot_concepts: list[list[str] | None] | None = None
    write_weights: list[list[float]] | None = None
    read_weights: dict[str, list[float]] | None = None
    surprise: float | None = None
    boundary: bool | None = None
    action_logits: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (fresh containers, see :func:`to_jsonable`); fields left None are dropped to keep
        baseline traces small. (Not ``dataclasses.asdict``: its deep copy, then the JSON copy, cost as much as
        the rest of writing a trace line.)"""
        return to_jsonable({f.name: v for f in fields(self)
                            if (v := getattr(self, f.name)) is not None and (f.name != "extra" or v)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CycleRecord":
        """The record of a dict written by :meth:`to_json` (other keys, such as a run's episode and reward, are
        ignored; a missing ``action`` is None, as to_json leaves None out); ValueError when ``step`` or ``cycle``
        is missing or not an integer."""
        names = {f.name for f in fields(cls)}
        for key in ("step", "cycle"):
            value = data.get(key, ...)
            if isinstance(value, bool) or not isinstance(value, int):
                got = "missing" if value is ... else f"{value!r}"
                raise ValueError(f"not a cycle record: {key} is {got}, an integer is needed")
        return cls(**{"action": None} | {k: v for k, v in data.items() if k in names})

    def _repr_html_(self) -> str:  # a notebook shows the candidates, winners and slots as tables
        from cogarch.inspect.html import cycle_html

        return cycle_html(self)


_PLAIN = (str, int, bool, type(None))  # JSON values as they are (exact types: numpy's subclasses go below)


def to_jsonable(value: Any) -> Any:
    """A plain-JSON copy of ``value``: numpy scalars and arrays become Python values, sets sorted lists, and
    NaN/inf strings (JSON cannot hold them), so a poisoned cycle is visible in the trace, not fatal."""
    kind = type(value)
    if kind is float:  # the common cases first: a trace line is mostly floats (logits, weights, scores)
        return value if math.isfinite(value) else str(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class TraceWriter:
    """Writes records as JSON lines. With ``flush_each=True`` (default) every record is flushed, so a
    killed run keeps every finished cycle; the run loop passes False and calls :meth:`flush` once per
    episode instead. ``append=False`` starts the file afresh."""

    def __init__(self, path: str | Path, append: bool = True, flush_each: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w")
        self._flush_each = flush_each

    def write(self, record: CycleRecord | dict[str, Any], **context: Any) -> None:
        data = record.to_json() if isinstance(record, CycleRecord) else to_jsonable(dict(record))
        self._file.write(json.dumps({**to_jsonable(context), **data}) + "\n")
        if self._flush_each:
            self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a trace file as a dict (``CycleRecord.from_json`` turns one into a record).

    A last line cut off mid-write (a killed run) is dropped with a warning; a malformed line anywhere
    else (not UTF-8, not JSON, or JSON that is not an object) raises ``ValueError`` naming the file and the line.
    """
    return read_jsonl(path, "trace")


def read_jsonl(path: str | Path, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, one per non-blank line, read as :func:`read_trace` reads a trace
    (``what`` names the kind of file in the errors)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if i == len(lines) and not data.endswith(b"\n"):  # the last line, without its newline
                warnings.warn(f"{path}: line {i} is truncated (an interrupted write); loaded the {len(records)} "
                              "complete records before it")
                break
            why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else f"not valid JSON ({err.msg})"
            raise ValueError(f"{path}: line {i} is {why}; a {what} file has one JSON object per line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i} is a JSON {type(record).__name__}, not an object; a {what} file "
                             "has one JSON object per line")
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------- snapshots
def flatten_state(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten nested NamedTuples / dicts / tuples of tensors into {"a.b.0": tensor}."""
    import torch

    out: dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        out[prefix] = state
    elif hasattr(state, "_fields"):  # NamedTuple
        for name in state._fields:
            out.update(flatten_state(getattr(state, name), f"{prefix}.{name}" if prefix else name))
    elif isinstance(state, dict):
        for name, value in state.items():
            out.update(flatten_state(value, f"{prefix}.{name}" if prefix else str(name)))
    elif isinstance(state, (tuple, list)):
        for i, value in enumerate(state):
            out.update(flatten_state(value, f"{prefix}.{i}" if prefix else str(i)))
    elif state is None:
        pass
    else:
        raise TypeError(f"cannot snapshot a {type(state).__name__} at {prefix or '<root>'}: only tensors and containers of them")
    return out


@dataclass
class MemorySnapshot:
    """The whole agent state at one moment, as flat named tensors plus JSON metadata.

    ``tensors`` maps dotted paths ("memories.working.slots") to tensors; ``meta`` holds JSON-friendly
    context (episode, step, vocab, ...). Saved as one safetensors file; loading never unpickles.
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, state: Any, **meta: Any) -> "MemorySnapshot":
        return cls({k: v.detach().cpu().contiguous() for k, v in flatten_state(state).items()}, meta)

    def save(self, path: str | Path) -> Path:
        return write_safetensors(path, self.tensors, {"format": SNAPSHOT_FORMAT, "meta": json.dumps(to_jsonable(self.meta))})

    @classmethod
    def load(cls, path: str | Path) -> "MemorySnapshot":
        tensors, metadata = read_safetensors(path, "snapshot")
        if metadata.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"{path} is not a cogarch snapshot (format {metadata.get('format')!r}, expected {SNAPSHOT_FORMAT!r})")
        return cls(tensors, json.loads(metadata.get("meta", "{}")))

    def equals(self, other: "MemorySnapshot") -> bool:
        import torch

        return (self.meta == other.meta and self.tensors.keys() == other.tensors.keys()
                and all(torch.equal(self.tensors[k], other.tensors[k]) for k in self.tensors))

    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def _repr_html_(self) -> str:  # a notebook shows the meta, decoded slots and every tensor's shape
        from cogarch.inspect.html import snapshot_html

        return snapshot_html(self)


METADATA_KEY = "cogarch"  # write_safetensors stores its metadata map as sorted JSON under this one key


def write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    """Write tensors (and string metadata) as safetensors, atomically: a crash mid-write never leaves a half
    file under the real name. The file is made world-readable (safetensors creates it owner-only)."""
    import os

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # clone: a module's state_dict may hold one tensor under several names, which safetensors refuses
    # The metadata goes in as one key holding sorted JSON: safetensors writes a multi-key metadata map in a
    # per-process hash order, and the same content must give the same bytes (read_safetensors unpacks it).
    packed = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata=packed)
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return path


def read_safetensors(path: str | Path, what: str, tensors: bool = True) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file; never unpickles. ``tensors=False`` reads the metadata only.
    A missing file raises FileNotFoundError and a corrupt or truncated one ValueError, both naming the file
    and ``what`` it should have been."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if set(metadata) == {METADATA_KEY}:  # written by write_safetensors (older files: the plain map)
            metadata = json.loads(metadata[METADATA_KEY])
        return (load_file(str(path)) if tensors else {}), metadata
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors {what} (corrupt or truncated?): {err}") from None
