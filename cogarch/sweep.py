"""Hydra sweeps (``cogarch run|train|eval -m ...``): one summary table across the jobs, and torch threads per job.

Part of the command line, like :mod:`cogarch.cli`: the one other module that reads hydra configs. Registered in
``configs/{run,train,eval}.yaml`` as a hydra callback::

    hydra:
      callbacks:
        sweep:
          _target_: cogarch.sweep.SweepSummary

After a sweep (any launcher: the basic one, ``joblib``, ``submitit_local``, ``submitit_slurm``) it reads the
result of every job the sweep ran from the job folders under ``hydra.sweep.dir`` and writes
``<sweep dir>/summary.csv`` and ``<sweep dir>/summary.md`` (and prints the table): one row per job, the job's
swept overrides as columns, then its metrics. A job's result is what its command writes into its folder:

- ``cogarch run``: ``summary.json`` (one row);
- ``cogarch eval`` / ``cogarch experiment``: ``results.csv`` / ``eval/results.csv`` (one row per agent and value);
- ``cogarch train``: ``eval/summary.json``, the held-out evaluation after training (``eval_episodes > 0``).

Jobs run side by side (joblib's processes on this machine, submitit's jobs on it or on a cluster) would each start
one torch thread per core and fight over the cores, so before each job of a parallel launcher the callback sets
its torch threads (see :func:`threads_per_job`); ``hydra.callbacks.sweep.torch_threads=N`` fixes the number.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback

from cogarch.runner import aligned_table, format_cell

log = logging.getLogger(__name__)

# The metrics of a row, in table order; a result's other keys (env, agent, value, parameters) come before them.
METRICS = ("episodes", "success_rate", "answer_accuracy", "mean_reward", "steps_per_s", "wall_s")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, as under SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(launcher: dict[str, Any], cpus: int, num_jobs: int | None = None) -> int | None:
    """Torch threads for one job of a sweep run by ``launcher`` (the ``hydra.launcher`` config) on ``cpus`` cores.

    - joblib: the cores shared among the processes running at once: ``n_jobs`` (``-1``, the plugin's default, is
      one per core; ``-2`` all but one, as joblib counts), or ``num_jobs``, the sweep's size, when that is fewer;
    - submitit (local or SLURM): ``cpus_per_task``, the cores SLURM gives each job; 1 when it is unset (SLURM's
      default allocation);
    - any other launcher (hydra's basic one runs jobs one after another): None, torch's own default.
    """
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs")
        n_jobs = -1 if n_jobs is None else int(n_jobs)
        if n_jobs == 0:
            raise ValueError("hydra.launcher.n_jobs=0 is out of range; allowed: >= 1, or -1 (one per core), "
                             "-2 (all cores but one), ...")
        procs = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
        if num_jobs:
            procs = min(procs, num_jobs)
        return max(1, cpus // procs)
    if "hydra_submitit_launcher" in target:
        return int(launcher.get("cpus_per_task") or 1)
    return None


def set_torch_threads(n: int) -> None:
    """Use ``n`` threads for torch (and the BLAS of whatever this process imports later)."""
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:  # imported already (a joblib worker reused for a second job): set it directly
        sys.modules["torch"].set_num_threads(n)


def count_jobs(task_overrides: Sequence[str]) -> int:
    """The number of jobs hydra's basic sweeper makes of these overrides (the product of the swept lists)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    n = 1
    for o in OverridesParser.create().parse_overrides(list(task_overrides)):
        if o.is_sweep_override():
            n *= sum(1 for _ in o.sweep_string_iterator())
    return n


def parse_override(text: str) -> tuple[str, str]:
    """``"agent=oracle"`` -> ``("agent", "oracle")``; keys as hydra writes them (``+a.b``, ``hydra/launcher``)."""
    key, sep, value = text.partition("=")
    if not sep:  # a deletion, ~key
        return text, ""
    return key, value


def sweep_keys(task_overrides: Sequence[str], jobs: Sequence[Sequence[str]]) -> list[str]:
    """The override keys that tell the jobs apart: those swept on the command line (``a=1,2``, ``range(..)``,
    ``choice(..)``) and those whose value differs between jobs (a sweeper's own params). With no such key (a
    sweep of one job), every override of the jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = {o.get_key_element() for o in OverridesParser.create().parse_overrides(list(task_overrides))
             if o.is_sweep_override()}
    ordered = list(dict.fromkeys(parse_override(o)[0] for job in jobs for o in job))
    values = {k: {dict(parse_override(o) for o in job).get(k) for job in jobs} for k in ordered}
    keys = [k for k in ordered if k in swept or len(values[k]) > 1]
    return keys or ordered


def job_results(job_dir: Path) -> list[dict[str, Any]]:
    """The rows a job wrote into its folder (see the module docstring); [] when it wrote none."""
    for name in ("summary.json", "eval/summary.json"):
        path = job_dir / name
        if path.is_file():
            return [json.loads(path.read_text())]
    for name in ("results.csv", "eval/results.csv"):
        path = job_dir / name
        if path.is_file():
            with path.open(newline="") as f:
                return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return []


def _number(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def summary_rows(jobs: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per job result: ``job`` (its number), its values of ``keys``, then the result. A job that wrote no
    result gets one row of its overrides with the metrics empty. ``jobs``: dicts of num, dir, overrides."""
    rows = []
    for job in jobs:
        overrides = dict(parse_override(o) for o in job["overrides"])
        head = {"job": job["num"], **{k: overrides.get(k) for k in keys}}
        results = job_results(Path(job["dir"]))
        if not results:
            log.warning("sweep job %s (%s) wrote no summary.json or results.csv; its row is empty",
                        job["num"], job["dir"])
            results = [{m: None for m in METRICS}]
        for result in results:
            rest = {k: v for k, v in result.items() if k not in head and k not in METRICS and k != "env_steps"}
            rows.append({**head, **rest, **{m: result.get(m) for m in METRICS}})
    return rows


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order, the metrics last."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [c for c in cols if c not in METRICS] + [m for m in METRICS if m in cols]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of rows (:func:`columns`)."""
    cols = columns(rows)
    return aligned_table(cols, [[format_cell(c, r.get(c)) for c in cols] for r in rows])


def write_summary(rows: Sequence[dict[str, Any]], sweep_dir: Path, title: str) -> dict[str, Path]:
    """``summary.csv`` and ``summary.md`` in ``sweep_dir``; returns their paths."""
    cols = columns(rows)
    paths = {"csv": sweep_dir / "summary.csv", "md": sweep_dir / "summary.md"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    paths["md"].write_text(f"# {title}\n\n{markdown_table(rows)}\n")
    return paths


class SweepSummary(Callback):
    """The hydra callback: torch threads before each job of a parallel sweep; the summary table after a sweep.

    ``torch_threads``: threads per job in a sweep; None chooses them from the launcher (:func:`threads_per_job`).
    """

    def __init__(self, torch_threads: int | None = None) -> None:
        if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                          or torch_threads < 1):
            raise ValueError(f"hydra.callbacks.sweep.torch_threads={torch_threads!r} is out of range; "
                             "allowed: null (from the launcher) or an integer >= 1")
        self.torch_threads = torch_threads
        self._before: dict[str, int] = {}
        self._num_jobs: int | None = None

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        if str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):  # other sweepers choose jobs
            self._num_jobs = count_jobs(config.hydra.overrides.task)  # (kept in the copy each job process gets)
        # Job folders already there (a sweep dir used before) are left out of the table unless a job rewrites them.
        self._before = {str(p): p.stat().st_mtime_ns for p in _override_files(config)}

    def on_job_start(self, config, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        n = self.torch_threads or threads_per_job(dict(config.hydra.launcher), cpu_count(), self._num_jobs)
        if n is not None:
            set_torch_threads(n)
            log.info("sweep job %s: %d torch thread(s)", config.hydra.job.num, n)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = []
        for path in _override_files(config):
            if self._before.get(str(path)) == path.stat().st_mtime_ns:
                continue  # from an earlier sweep into the same folder
            hydra_yaml = path.parent / "hydra.yaml"
            num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num") if hydra_yaml.is_file() else None
            job_dir = path.parents[len(Path(str(config.hydra.output_subdir)).parts)]
            jobs.append({"num": num, "dir": job_dir,
                         "overrides": [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))]})
        if not jobs:
            log.warning("no job folders with %s/overrides.yaml under %s (hydra.output_subdir=null?); "
                        "no sweep summary written", config.hydra.output_subdir, sweep_dir)
            return
        jobs.sort(key=lambda j: (j["num"] is None, j["num"] if j["num"] is not None else 0, str(j["dir"])))
        task = list(config.hydra.overrides.task)
        rows = summary_rows(jobs, sweep_keys(task, [j["overrides"] for j in jobs]))
        command = {"experiments": "experiment"}.get(config.hydra.job.config_name, config.hydra.job.config_name)
        title = f"cogarch {command} -m {' '.join(task)}: {len(jobs)} jobs"
        paths = write_summary(rows, sweep_dir, title)
        print(f"\n{title}\n{markdown_table(rows)}\nsweep summary: {paths['md']} and {paths['csv']}", flush=True)


def _override_files(config) -> list[Path]:
    """The ``overrides.yaml`` hydra writes into each job's folder (``hydra.output_subdir``, default ``.hydra``)."""
    sweep_dir, subdir = Path(str(config.hydra.sweep.dir)), config.hydra.output_subdir
    if subdir is None or not sweep_dir.is_dir():
        return []
    return [p for p in sweep_dir.glob(f"**/{subdir}/overrides.yaml") if ".submitit" not in p.parts]
