"""`cogarch run` end to end, as a user types it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ENV_NAMES = ["graph_search", "graph_trace", "story_qa", "sort_of_clevr", "passkey", "scene_graph_qa"]


def cogarch(*args, check=True):
    cmd = [sys.executable, "-m", "cogarch.cli", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("env", ENV_NAMES)
def test_oracle_reports_full_success_through_the_cli(env, tmp_path):
    res = cogarch("run", f"env={env}", "agent=oracle", "episodes=200", "seed=3", "progress=false",
                  f"hydra.run.dir={tmp_path}")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["success_rate"] == 1.0 and summary["episodes"] == 200
    assert "| 1.000" in res.stdout and "env steps/s" in res.stdout
    episodes = read_jsonl(tmp_path / "episodes.jsonl")
    assert [e["episode"] for e in episodes] == list(range(200))
    assert [e["seed"] for e in episodes] == list(range(3, 203))
    assert (tmp_path / "config.yaml").read_text().count("_target_: environments.") == 1


def test_run_writes_trace_and_repeats_exactly(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        cogarch("run", "env=story_qa", "agent=random", "episodes=20", "progress=false", f"hydra.run.dir={d}")
    assert (a / "episodes.jsonl").read_text() == (b / "episodes.jsonl").read_text()
    assert (a / "trace.jsonl").read_text() == (b / "trace.jsonl").read_text()
    trace = read_jsonl(a / "trace.jsonl")
    steps = sum(e["steps"] for e in read_jsonl(a / "episodes.jsonl"))
    assert len(trace) == steps and {"episode", "step", "cycle", "action", "oracle_action", "reward"} <= set(trace[0])


def test_env_kwargs_are_overridable(tmp_path):
    cogarch("run", "env=graph_search", "env.num_vertices=50", "agent=oracle", "episodes=5", "progress=false",
            f"hydra.run.dir={tmp_path}")
    assert "num_vertices: 50" in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])
def test_third_party_gym_env_with_random_agent(env_id, tmp_path):
    res = cogarch("run", "env=gym", f"env.id={env_id}", "agent=random", "episodes=3", "progress=false",
                  f"hydra.run.dir={tmp_path}")
    assert f"gym:{env_id}" in res.stdout
    assert len(read_jsonl(tmp_path / "episodes.jsonl")) == 3


@pytest.mark.parametrize("group,name", [("env", "no_such_env"), ("agent", "no_such_agent")])
def test_unknown_names_exit_nonzero_listing_valid_ones(group, name, tmp_path):
    res = cogarch("run", f"{group}={name}", f"hydra.run.dir={tmp_path}", check=False)
    assert res.returncode != 0
    valid = ENV_NAMES if group == "env" else ["oracle", "random"]
    for v in valid:
        assert v in res.stderr + res.stdout


def test_out_of_range_kwarg_and_bad_episodes_fail_clearly(tmp_path):
    res = cogarch("run", "env=graph_search", "env.num_vertices=1", f"hydra.run.dir={tmp_path}", check=False)
    assert res.returncode != 0 and "num_vertices" in res.stderr + res.stdout
    res = cogarch("run", "episodes=0", f"hydra.run.dir={tmp_path}", check=False)
    assert res.returncode != 0 and "episodes" in res.stderr + res.stdout


def test_a_folder_holding_a_run_is_not_written_over_without_resume(tmp_path):
    cogarch("run", "agent=random", "episodes=3", "progress=false", f"hydra.run.dir={tmp_path}")
    files = lambda: {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}  # noqa: E731
    before = files()
    assert tmp_path / ".hydra" / "overrides.yaml" in before
    res = cogarch("run", "agent=random", "episodes=2", "progress=false", f"hydra.run.dir={tmp_path}", check=False)
    assert res.returncode != 0 and f"{tmp_path} already holds a run" in res.stderr and "resume=true" in res.stderr
    assert files() == before  # hydra's own record of the first run (.hydra/) included


def test_a_refused_command_leaves_no_empty_run_folder(tmp_path):
    """hydra makes the run folder before the command's checks run; a refusal takes it away again (a folder with
    results in it stays, as the test above shows)."""
    for args in (("run", "episodes=-1"), ("run", "env.task=99"), ("train", "train.max_minutes=0")):
        res = cogarch(*args, f"hydra.run.dir={tmp_path / args[0]}", check=False)
        assert res.returncode != 0 and not (tmp_path / args[0]).exists(), res.stderr


def test_dim_that_is_not_a_positive_integer_is_refused(tmp_path):
    for dim in ("7.5", "0"):
        res = cogarch("run", "agent=workspace", f"dim={dim}", f"hydra.run.dir={tmp_path}", check=False)
        assert res.returncode != 0 and f"dim={dim} is out of range; allowed: integer >= 1" in res.stderr


def test_a_trained_agent_refuses_another_dim_on_the_command_line(tmp_path):
    res = cogarch("run", "agent=pretrained", "dim=32", "episodes=1", f"hydra.run.dir={tmp_path / 'a'}", check=False)
    assert res.returncode != 0 and "dim=32 does not apply to the trained agent of" in res.stderr
    assert "trained at dim=64; allowed: leave dim out, or dim=64" in res.stderr
    cogarch("run", "agent=pretrained", "dim=64", "episodes=1", "progress=false", f"hydra.run.dir={tmp_path / 'b'}")


def test_switches_that_are_not_true_or_false_are_refused(tmp_path):
    """``trace=maybe`` used to count as on; a switch is true or false."""
    for args, key in ((("run", "trace=maybe"), "trace='maybe'"), (("run", "resume=1"), "resume=1"),
                      (("train", "train.resume=no"), "train.resume='no'")):
        res = cogarch(*args, f"hydra.run.dir={tmp_path / args[0]}", check=False)
        assert res.returncode != 0 and f"{key} is not allowed; allowed: true or false" in res.stderr + res.stdout
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


def test_progress_false_turns_off_the_language_model_loading_bar():
    """transformers' "Loading weights" bar follows progress=false, whether transformers is imported before or after."""
    check = "from transformers.utils import logging; print(logging.is_progress_bar_enabled())"
    for before in ("", "import transformers; "):
        code = f"{before}from cogarch.cli import _library_progress; _library_progress(False); {check}"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert res.stdout.strip() == "False"
    res = subprocess.run([sys.executable, "-c", f"from cogarch.cli import _library_progress; _library_progress(True); "
                          f"{check}"], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "True"


def test_unknown_command_prints_usage():
    res = cogarch("fly", check=False)
    assert res.returncode == 2 and "usage: cogarch" in res.stderr
    assert "unknown command 'fly'; allowed: run, train, eval, experiment, view" in res.stderr


def test_multirun_sweeps_each_condition(tmp_path):
    cogarch("run", "-m", "env=story_qa,passkey", "agent=oracle", "episodes=3", "progress=false",
            f"hydra.sweep.dir={tmp_path}")
    summaries = sorted(json.loads(p.read_text())["env"] for p in tmp_path.glob("*/summary.json"))
    assert summaries == ["passkey", "story_qa"]
