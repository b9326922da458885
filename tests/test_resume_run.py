"""Crash safety of `cogarch run`: a run killed with SIGKILL keeps every finished episode, and `resume=true`
continues it to the files and table of an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cogarch import runner
from cogarch.runner import RunFiles, Summary, finished_episodes, summarize


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
    assert res.returncode != 0 and "was made with agent._target_='agents.baselines." in res.stderr


def test_finished_episodes_cuts_partial_lines_and_later_trace(tmp_path):
    (tmp_path / "episodes.jsonl").write_text('{"episode": 0}\n{"episode": 1}\n{"episo')
    (tmp_path / "trace.jsonl").write_text('{"episode": 0, "step": 0}\n{"episode": 1, "step": 0}\n'
                                          '{"episode": 2, "step": 0}\n{"episode": 2, "st')
    assert finished_episodes(tmp_path) == [{"episode": 0}, {"episode": 1}]
    assert (tmp_path / "episodes.jsonl").read_text() == '{"episode": 0}\n{"episode": 1}\n'
    assert read(tmp_path / "trace.jsonl") == [{"episode": 0, "step": 0}, {"episode": 1, "step": 0}]


def _episode(i, success, reward, answered, correct, tags=None):
    e = {"episode": i, "seed": i, "steps": 3 + i % 4, "reward": reward, "success": success,
         "answer_steps": answered, "correct_steps": correct, "answers": [], "truncated": False, "meta": {}}
    if tags:
        e["tag_steps"] = tags
    return e


EPISODES = [_episode(0, True, 1.0, 1, 1, {"edges_twice": [2, 1]}), _episode(1, None, 0.25, 0, 0),
            _episode(2, False, -0.5, 2, 1, {"edges_twice": [1, 0], "long": [3, 3]}), _episode(3, True, 0.1, 1, 1)]


def test_running_summary_equals_the_summary_recomputed_from_the_episodes():
    """The run keeps running totals (adding an episode does not re-read the earlier ones); they must give the
    aggregate of the whole list, episode by episode, successes of None left out of the success rate."""
    running = Summary()
    for n, e in enumerate(EPISODES, 1):
        running.add(e)
        done = EPISODES[:n]
        scored = [x["success"] for x in done if x["success"] is not None]
        expect = {"episodes": n, "success_rate": sum(scored) / len(scored), "mean_reward": sum(x["reward"] for x in done) / n,
                  "env_steps": sum(x["steps"] for x in done), "wall_s": 2.0}
        answered = sum(x["answer_steps"] for x in done)
        expect["answer_accuracy"] = sum(x["correct_steps"] for x in done) / answered
        expect["steps_per_s"] = expect["env_steps"] / 2.0
        got = running.as_dict(2.0)
        assert {k: got[k] for k in expect} == expect
    assert summarize(EPISODES, 2.0) == running.as_dict(2.0)
    assert running.as_dict(2.0)["answer_steps_edges_twice"] == 3 and running.as_dict(2.0)["answer_accuracy_edges_twice"] == 1 / 3
    assert running.as_dict(2.0)["answer_accuracy_long"] == 1.0
    assert Summary().as_dict(0.0) == {"episodes": 0, "success_rate": None, "answer_accuracy": None, "mean_reward": None,
                                      "env_steps": 0, "steps_per_s": None, "wall_s": 0.0}


def test_a_resumed_summary_counts_the_earlier_episodes_in_its_results_and_not_in_its_speed():
    whole, resumed = Summary(EPISODES), Summary(earlier=EPISODES[:2])
    for e in EPISODES[2:]:
        resumed.add(e)
    got, expect = resumed.as_dict(2.0), whole.as_dict(2.0)
    assert {k: v for k, v in got.items() if k not in ("steps_per_s", "resumed_episodes")} == {
        k: v for k, v in expect.items() if k != "steps_per_s"}
    assert got["steps_per_s"] == sum(e["steps"] for e in EPISODES[2:]) / 2.0 and got["resumed_episodes"] == 2
    assert Summary(earlier=EPISODES).as_dict(0.5)["steps_per_s"] is None  # a finished run resumed plays nothing


def test_summary_file_is_rewritten_at_most_every_interval_and_when_the_run_ends(tmp_path, monkeypatch):
    """episodes.jsonl gets every episode at once; summary.json (a whole-file rewrite) the first episode, then at
    most once per SUMMARY_EVERY_S, and the last state on close."""
    clock = [100.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])

    def summary_episodes():
        return json.loads((tmp_path / "summary.json").read_text())["episodes"]

    files, summary = RunFiles(tmp_path, trace=False), Summary()
    for e in EPISODES[:3]:
        files.finished(e, summary, wall_s=1.0)
        clock[0] += 0.4 * runner.SUMMARY_EVERY_S
    assert len((tmp_path / "episodes.jsonl").read_text().splitlines()) == 3
    assert summary_episodes() == 1  # 0.8 intervals after the first write: not rewritten yet
    files.finished(EPISODES[3], summary, wall_s=1.5)  # 1.2 intervals after it
    assert summary_episodes() == 4
    files.close()
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summarize(EPISODES, 1.5)))

    (tmp_path / "summary.json").unlink()
    files, summary = RunFiles(tmp_path, trace=False), Summary()
    for e in EPISODES:  # the clock stands still: only the first episode's summary is written at once
        files.finished(e, summary, wall_s=1.0)
    assert summary_episodes() == 1
    files.close()
    assert summary_episodes() == 4
