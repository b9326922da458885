"""Sweeps (`cogarch run -m ...`) on hydra's joblib and submitit launchers, and the summary table across the jobs."""

import csv
import os
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cogarch.sweep import (SweepSummary, count_jobs, cpu_count, markdown_table, summary_rows, sweep_keys,
                           threads_per_job)

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def cogarch(*args):
    cmd = [sys.executable, "-m", "cogarch.cli", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_summary(sweep_dir: Path, stdout: str, conditions: list[dict[str, str]]):
    """summary.csv/.md: one row per job, in job order, with the job's overrides and its own summary.json."""
    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["job"] for r in rows] == [str(i) for i in range(len(conditions))]
    for row, condition in zip(rows, conditions):
        assert {k: row[k] for k in condition} == condition
        job = json.loads((sweep_dir / row["job"] / "summary.json").read_text())
        assert job["agent"] == row["agent"] and row["env"] == "story_qa"
        for key in ("episodes", "success_rate", "answer_accuracy", "mean_reward", "steps_per_s"):
            assert float(row[key]) == pytest.approx(job[key]), key
        assert int(row["episodes"]) == 5
        assert float(row["success_rate"]) == (1.0 if row["agent"] == "oracle" else job["success_rate"])
        if "seed" in condition:  # the row describes the folder it was read from
            first = json.loads((sweep_dir / row["job"] / "episodes.jsonl").read_text().splitlines()[0])
            assert first["seed"] == int(condition["seed"])
    md = (sweep_dir / "summary.md").read_text()
    table = md[md.index("| job"):].strip()
    assert len(table.splitlines()) == 2 + len(conditions)
    assert table in stdout  # printed at the end of the sweep
    return rows


def test_joblib_sweep_of_four_conditions_writes_one_summary_table(tmp_path):
    # A job folder left from an earlier sweep into the same folder stays out of the table.
    old = tmp_path / "7"
    (old / ".hydra").mkdir(parents=True)
    (old / ".hydra" / "overrides.yaml").write_text("- agent=llm\n")
    (old / "summary.json").write_text(json.dumps({"agent": "llm", "episodes": 1}))
    res = cogarch("run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "env=story_qa",
                  "agent=random,oracle", "seed=0,1", "episodes=5", "trace=false", "snapshots=false", "progress=false",
                  f"hydra.sweep.dir={tmp_path}")
    assert "Joblib.Parallel" in res.stderr + res.stdout  # the joblib launcher ran the jobs
    conditions = [{"agent": a, "seed": s} for a in ("random", "oracle") for s in ("0", "1")]
    rows = check_summary(tmp_path, res.stdout, conditions)
    assert list(rows[0])[:3] == ["job", "agent", "seed"]  # the swept overrides, then the results
    threads = max(1, cpu_count() // 2)
    for i in range(4):
        log = "".join(p.read_text() for p in (tmp_path / str(i)).glob("*.log"))
        assert f"sweep job {i}: {threads} torch thread(s)" in log


def test_submitit_local_sweep_of_two_writes_one_summary_table(tmp_path):
    res = cogarch("run", "-m", "hydra/launcher=submitit_local", "env=story_qa", "agent=random,oracle",
                  "episodes=5", "trace=false", "snapshots=false", "progress=false", f"hydra.sweep.dir={tmp_path}")
    check_summary(tmp_path, res.stdout, [{"agent": "random"}, {"agent": "oracle"}])
    # submitit ran each job in its own process and kept its logs and pickled result
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2
    for i in range(2):
        assert f"sweep job {i}: 1 torch thread(s)" in "".join(p.read_text() for p in (tmp_path / str(i)).glob("*.log"))


def test_submitit_slurm_launcher_takes_the_documented_keys():
    res = cogarch("run", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=30",
                  "hydra.launcher.cpus_per_task=4", "hydra.launcher.mem_gb=8", "hydra.launcher.account=lab",
                  "hydra.launcher.qos=normal", "hydra.launcher.array_parallelism=16", "+hydra.launcher.setup=[]",
                  "--cfg", "hydra", "-p", "hydra.launcher")
    for line in ("partition: cpu", "timeout_min: 30", "cpus_per_task: 4", "mem_gb: 8", "account: lab", "qos: normal",
                 "array_parallelism: 16", f"_target_: {SLURM}"):
        assert line in res.stdout, line


def test_threads_per_job_shares_the_cores_among_parallel_jobs():
    assert threads_per_job({"_target_": JOBLIB, "n_jobs": -1}, 16) == 1  # one process per core
    assert threads_per_job({"_target_": JOBLIB, "n_jobs": 4}, 16) == 4
    assert threads_per_job({"_target_": JOBLIB, "n_jobs": -2}, 16) == 1
    assert threads_per_job({"_target_": JOBLIB, "n_jobs": -1}, 16, num_jobs=2) == 8  # 2 jobs: 8 cores each
    assert threads_per_job({"_target_": JOBLIB, "n_jobs": 3}, 2) == 1
    assert threads_per_job({"_target_": LOCAL, "cpus_per_task": None}, 16) == 1
    assert threads_per_job({"_target_": SLURM, "cpus_per_task": 6}, 64) == 6
    assert threads_per_job({"_target_": BASIC}, 16) is None  # jobs one after another: torch's default
    with pytest.raises(ValueError, match="n_jobs=0"):
        threads_per_job({"_target_": JOBLIB, "n_jobs": 0}, 16)
    with pytest.raises(ValueError, match="torch_threads"):
        SweepSummary(torch_threads=0)


def test_count_jobs_and_sweep_keys():
    task = ["env=story_qa", "agent=random,oracle", "seed=range(3)", "episodes=5"]
    assert count_jobs(task) == 6
    jobs = [["env=story_qa", f"agent={a}", f"seed={s}", "episodes=5"] for a in ("random", "oracle") for s in range(3)]
    assert sweep_keys(task, jobs) == ["agent", "seed"]
    assert sweep_keys(["episodes=5"], [["episodes=5"]]) == ["episodes"]  # a sweep of one job: all its overrides
    # a key the command line does not sweep but whose values differ (another sweeper's params) is a column too
    assert sweep_keys([], [["lr=0.1"], ["lr=0.2"]]) == ["lr"]


def test_summary_rows_read_run_and_eval_results_and_mark_missing_ones(tmp_path):
    run, ev, empty = tmp_path / "0", tmp_path / "1", tmp_path / "2"
    for d in (run, ev, empty):
        d.mkdir()
    (run / "summary.json").write_text(json.dumps({"env": "story_qa", "agent": "oracle", "episodes": 3,
                                                  "success_rate": 1.0, "env_steps": 9, "steps_per_s": 10.0}))
    (ev / "results.csv").write_text("agent,value,episodes,success_rate\nrandom,,3,0.0\noracle,,3,1.0\n")
    jobs = [{"num": i, "dir": d, "overrides": [f"env={e}", "episodes=3"]} for i, (d, e) in
            enumerate([(run, "story_qa"), (ev, "passkey"), (empty, "graph_search")])]
    rows = summary_rows(jobs, ["env"])
    assert [(r["job"], r["env"], r.get("agent"), r["success_rate"]) for r in rows] == [
        (0, "story_qa", "oracle", 1.0), (1, "passkey", "random", 0.0), (1, "passkey", "oracle", 1.0),
        (2, "graph_search", None, None)]
    assert "env_steps" not in rows[0] and "episodes" not in rows[0]["env"]
    assert rows[1]["value"] is None and rows[1]["episodes"] == 3 and rows[3]["episodes"] is None
    table = markdown_table(rows)
    head, _, *body = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert head == ["job", "env", "agent", "value", "episodes", "success_rate", "answer_accuracy", "mean_reward",
                    "steps_per_s", "wall_s"]  # the swept overrides, the results' names, then the metrics
    assert len(body) == 4 and body[0][:3] == ["0", "story_qa", "oracle"] and body[0][-2:] == ["10", "n/a"]
    assert body[-1] == ["2", "graph_search", *["n/a"] * 8]


def test_set_torch_threads_before_and_after_torch_is_imported():
    code = ("import sys; from cogarch.sweep import set_torch_threads\n"
            "assert 'torch' not in sys.modules\n"
            "set_torch_threads(1); import torch; print(torch.get_num_threads())\n"
            "set_torch_threads(3); print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "3"]


# A stand-in for a SLURM cluster on this machine: `sbatch` runs the array tasks of the submitted script in the
# background with the environment SLURM gives them, `srun` runs its command with the output files its options
# name, `sacct` reports the states the tasks wrote. The launcher, submitit and the sbatch script are the real ones.
SBATCH = r'''
import os, re, subprocess, sys, time
from pathlib import Path
script = Path(sys.argv[-1]).read_text()
state = Path(os.environ["FAKE_SLURM_DIR"])
job = str(int(time.time() * 1000) % 10**9)
(state / f"{job}.sh").write_text(script)
last = int(re.search(r"#SBATCH --array=0-(\d+)", script).group(1)) if "--array=" in script else None
runner = ("import os, subprocess, sys\n"
          "for i in range(%d):\n"
          "    tid = f'{sys.argv[1]}_{i}' if %r else sys.argv[1]\n"
          "    path = os.path.join(os.environ['FAKE_SLURM_DIR'], tid)\n"
          "    open(path, 'w').write('RUNNING')\n"
          "    env = dict(os.environ, SLURM_JOB_ID=sys.argv[1] + str(i), SLURM_NTASKS='1', SLURM_PROCID='0',\n"
          "               SLURM_LOCALID='0', SLURM_NODEID='0', SLURM_JOB_NUM_NODES='1', SLURM_JOB_NODELIST='localhost')\n"
          "    if %r: env.update(SLURM_ARRAY_JOB_ID=sys.argv[1], SLURM_ARRAY_TASK_ID=str(i))\n"
          "    rc = subprocess.run(['bash', sys.argv[2]], env=env).returncode\n"
          "    open(path, 'w').write('COMPLETED' if rc == 0 else 'FAILED')\n"
          % ((last or 0) + 1, last is not None, last is not None))
subprocess.Popen([sys.executable, "-c", runner, job, str(state / f"{job}.sh")], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"Submitted batch job {job}")
'''
SRUN = r'''
import os, subprocess, sys
from pathlib import Path
args, files = sys.argv[1:], {}
while args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        files[flag] = args.pop(0)
def path(p):
    for k, v in {"%A": "SLURM_ARRAY_JOB_ID", "%a": "SLURM_ARRAY_TASK_ID", "%j": "SLURM_JOB_ID"}.items():
        p = p.replace(k, os.environ.get(v, ""))
    p = Path(p.replace("%t", "0"))
    p.parent.mkdir(parents=True, exist_ok=True)
    return p.open("a")
out = path(files["--output"])
err = path(files["--error"]) if "--error" in files else out
sys.exit(subprocess.run(args, stdout=out, stderr=err).returncode)
'''
SACCT = r'''
import os, sys
from pathlib import Path
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for p in Path(os.environ["FAKE_SLURM_DIR"]).iterdir():
    if p.suffix != ".sh" and p.name.split("_")[0] in ids:
        print(f"{p.name}|{p.read_text()}|localhost")
'''


def test_submitit_slurm_sweep_on_a_stand_in_cluster(tmp_path):
    bin_dir, state, sweep = tmp_path / "bin", tmp_path / "slurm", tmp_path / "sweep"
    bin_dir.mkdir()
    state.mkdir()
    for name, code in {"sbatch": SBATCH, "srun": SRUN, "sacct": SACCT, "scancel": "pass"}.items():
        (bin_dir / name).write_text(f"#!{sys.executable}\n{code}")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_DIR=str(state))
    cmd = [sys.executable, "-m", "cogarch.cli", "run", "-m", "hydra/launcher=submitit_slurm",
           "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=2",
           "hydra.launcher.mem_gb=4", "hydra.launcher.array_parallelism=1",
           "hydra.launcher.setup=['export SWEEP_SETUP=1']",
           "+hydra.launcher.additional_parameters={mail_type: END}", "env=story_qa", "agent=random,oracle",
           "episodes=5", "trace=false", "snapshots=false", "progress=false", f"hydra.sweep.dir={sweep}"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    check_summary(sweep, res.stdout, [{"agent": "random"}, {"agent": "oracle"}])
    (script,) = [p.read_text() for p in state.glob("*.sh")]  # one array job of two tasks
    for line in ("#SBATCH --partition=cpu", "#SBATCH --time=30", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=4GB",
                 "#SBATCH --array=0-1%1", "#SBATCH --mail-type=END", "export SWEEP_SETUP=1"):
        assert line in script, line
    assert sorted(p.read_text() for p in state.iterdir() if p.suffix != ".sh") == ["COMPLETED", "COMPLETED"]
    for i in range(2):
        assert f"sweep job {i}: 2 torch thread(s)" in "".join(p.read_text() for p in (sweep / str(i)).glob("*.log"))
