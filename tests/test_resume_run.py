"""Crash safety of `cogarch run`: a run killed with SIGKILL keeps every finished episode, and `resume=true`
continues it to the files and table of an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cogarch.runner import finished_episodes


def cmd(*args):
    return [sys.executable, "-m", "cogarch.cli", "run", *args]


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def table(stdout):
    """The result table's row without the env steps/s column (timing)."""
    row = next(line for line in stdout.splitlines() if line.startswith("| story_qa"))
    return row.rsplit("|", 2)[0]


@pytest.mark.parametrize("num_envs", [1, 3])
def test_a_killed_run_keeps_its_episodes_and_resumes_to_the_uninterrupted_result(tmp_path, num_envs):
    common = ["agent=pretrained", "episodes=150", "progress=false", "snapshots=false", f"num_envs={num_envs}"]
    full = subprocess.run(cmd(*common, f"hydra.run.dir={tmp_path / 'full'}"), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    crash = tmp_path / "crash"
    proc = subprocess.Popen(cmd(*common, f"hydra.run.dir={crash}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes = crash / "episodes.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not episodes.exists() or episodes.read_text().count("\n") < 10):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = episodes.read_text().splitlines()
    assert 10 <= len(lines) < 150, "the run was to be killed mid-way"
    kept = [json.loads(line) for line in lines[:-1]]  # all but possibly a half-written last line parse
    assert [e["episode"] for e in kept] == list(range(len(kept)))
    resumed = subprocess.run(cmd(*common, "resume=true", f"hydra.run.dir={crash}"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert read(crash / "episodes.jsonl") == read(tmp_path / "full" / "episodes.jsonl")
    assert read(crash / "trace.jsonl") == read(tmp_path / "full" / "trace.jsonl")
    assert table(resumed.stdout) == table(full.stdout)


def test_resume_refuses_a_run_made_with_another_configuration(tmp_path):
    assert subprocess.run(cmd("agent=random", "episodes=3", "progress=false", f"hydra.run.dir={tmp_path}"),
                          capture_output=True).returncode == 0
    res = subprocess.run(cmd("agent=oracle", "episodes=3", "progress=false", "resume=true", f"hydra.run.dir={tmp_path}"),
                         capture_output=True, text=True)
    assert res.returncode != 0 and "was made with agent=" in res.stderr


def test_finished_episodes_cuts_partial_lines_and_later_trace(tmp_path):
    (tmp_path / "episodes.jsonl").write_text('{"episode": 0}\n{"episode": 1}\n{"episo')
    (tmp_path / "trace.jsonl").write_text('{"episode": 0, "step": 0}\n{"episode": 1, "step": 0}\n'
                                          '{"episode": 2, "step": 0}\n{"episode": 2, "st')
    assert finished_episodes(tmp_path) == [{"episode": 0}, {"episode": 1}]
    assert (tmp_path / "episodes.jsonl").read_text() == '{"episode": 0}\n{"episode": 1}\n'
    assert read(tmp_path / "trace.jsonl") == [{"episode": 0, "step": 0}, {"episode": 1, "step": 0}]
