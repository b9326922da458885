"""Traces and snapshots load back equal; damaged files fail clearly or load what is complete."""

import json

import pytest
import torch

from cogarch.trace import CycleRecord, MemorySnapshot, TraceWriter, read_trace
from cogarch.workspace import WorkspaceState


def record(i):
    return CycleRecord(step=i, cycle=0, action=3, candidates=[{"source": "sensory", "score": 0.5}], winners=[0],
                       winner_sources=["sensory"], winner_weights=[1.0], winner_concepts=[["mary", "go", "kitchen"]],
                       slot_concepts=[None, ["a", "b", "c"]], surprise=float("nan"), boundary=False)


def test_records_round_trip(tmp_path):
    with TraceWriter(tmp_path / "t.jsonl") as w:
        for i in range(3):
            w.write(record(i), episode=7)
    rows = read_trace(tmp_path / "t.jsonl")
    assert [r["episode"] for r in rows] == [7, 7, 7]
    back = CycleRecord.from_json(rows[1])
    assert back.winner_concepts == [["mary", "go", "kitchen"]] and back.step == 1
    assert rows[0]["surprise"] == "nan"  # visible, not a crash


def test_truncated_trace_loads_complete_records_with_a_warning(tmp_path):
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for i in range(4):
            w.write(record(i))
    text = path.read_text()
    path.write_text(text[: len(text) - 20])  # cut the last record mid-line
    with pytest.warns(UserWarning, match="truncated"):
        rows = read_trace(path)
    assert [r["step"] for r in rows] == [0, 1, 2]


def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"step": 0}) + "\n{oops\n" + json.dumps({"step": 2}) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl: line 2"):
        read_trace(path)


def test_lines_that_are_not_records_name_file_and_line(tmp_path):
    """Bytes that are not UTF-8, JSON that is not an object, and an object without a record's integer fields are
    refused with the file and line (not a UnicodeDecodeError, AttributeError or TypeError from deep inside)."""
    path = tmp_path / "t.jsonl"
    good = json.dumps({"step": 0, "cycle": 0, "action": 1}).encode() + b"\n"
    for bad, why in ((b"\xff\xfe{}", "not UTF-8"), (b"[1, 2]", "a JSON list, not an object")):
        path.write_bytes(good + bad + b"\n" + good)
        with pytest.raises(ValueError, match=rf"t\.jsonl: line 2 is {why}"):
            read_trace(path)
    for data, msg in (({"step": "x", "cycle": 0, "action": 1}, "step is 'x', an integer is needed"),
                      ({"step": 0, "action": 1}, "cycle is missing, an integer is needed")):
        with pytest.raises(ValueError, match=f"not a cycle record: {msg}"):
            CycleRecord.from_json(data)
    assert CycleRecord.from_json({"step": 0, "cycle": 1, "episode": 3}).action is None  # to_json leaves None out
    assert CycleRecord.from_json({"step": 0, "cycle": 1, "action": [0.5, -1.0]}).action == [0.5, -1.0]  # a Box env


def state():
    g = torch.Generator().manual_seed(0)
    return WorkspaceState(torch.randn(2, 8, generator=g), torch.randn(2, 4, 8, generator=g), torch.ones(2, 4, dtype=torch.bool),
                          torch.randn(2, 1, 8, generator=g), {"working": (torch.randn(2, 3, 8, generator=g), torch.arange(6).view(2, 3))},
                          torch.tensor([5, 5]))


def test_snapshot_round_trips_exactly(tmp_path):
    snap = MemorySnapshot.of(state(), episode=3, vocab=["<none>", "?"])
    snap.save(tmp_path / "s.safetensors")
    back = MemorySnapshot.load(tmp_path / "s.safetensors")
    assert back.equals(snap) and "memories.working.1" in back.tensors and back.meta["episode"] == 3


def test_corrupt_or_foreign_snapshot_is_refused_by_name(tmp_path):
    path = tmp_path / "s.safetensors"
    MemorySnapshot.of(state()).save(path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="s.safetensors"):
        MemorySnapshot.load(path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a cogarch snapshot"):
        MemorySnapshot.load(tmp_path / "other.safetensors")
