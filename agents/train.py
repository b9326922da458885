"""Imitation training of a learned agent from the env oracle, with checkpoints that resume.

The loop (one function, :func:`train`): each update generates ``batch_size`` fresh episodes (oracle rollouts,
:func:`agents.data.collect_episode`) from one or more envs (a curriculum mix: update ``u`` takes env
``u % len(envs)``, so a batch holds episodes of one setting and pads little), runs the agent teacher-forced over them (``episode_logits``) and minimises the cross-entropy of
the oracle's answers plus ``aux_weight`` times the agent's auxiliary loss (the consciousness prior's
next-conscious-state prediction for the workspace agent; zero for the transformer).

Seeds: the episodes of update ``u`` have seeds ``TRAIN_SEED_BASE * (seed + 1) + u * batch_size + i``, far
from the small seeds that ``cogarch run`` and ``cogarch eval`` use (0, 1, ...), so evaluation episodes are
held out, and a resumed run sees exactly the episodes the uninterrupted run would have.

Files in ``out_dir`` (written as training goes):
    config.yaml                 the resolved config (written by the CLI)
    checkpoint/model.safetensors, checkpoint/optimizer.safetensors, checkpoint/state.json
    train.csv                   one row per logged update: update, episodes, loss, aux, answer accuracy, ...
"""

from __future__ import annotations

import csv
import json
import shutil
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.data import VocabMap, collect_episode, make_batch
from agents.learned import LearnedAgent, answer_loss
from cogarch.trace import read_safetensors, write_safetensors

TRAIN_SEED_BASE = 1_000_000
CSV_FIELDS = ("update", "episodes", "loss", "aux_loss", "answer_accuracy", "episode_accuracy", "lr", "wall_s")
FLOAT_FIELDS = frozenset(CSV_FIELDS) - {"update", "episodes"}


def episode_seed(seed: int, update: int, batch_size: int, i: int) -> int:
    return TRAIN_SEED_BASE * (seed + 1) + update * batch_size + i


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    sd = opt.state_dict()
    tensors = {f"{idx}.{name}": v for idx, st in sd["state"].items() for name, v in st.items()
               if isinstance(v, torch.Tensor)}
    scalars = {f"{idx}.{name}": v for idx, st in sd["state"].items() for name, v in st.items()
               if not isinstance(v, torch.Tensor)}
    write_safetensors(path, tensors, {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)})


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors, meta = read_safetensors(path, "optimizer checkpoint")
    try:
        groups, scalars = json.loads(meta["param_groups"]), json.loads(meta["scalars"])
    except (KeyError, ValueError) as err:
        raise ValueError(f"optimizer checkpoint {path} lacks its param groups or scalars: {err}") from err
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *scalars.items()]:
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(agent: LearnedAgent, opt: torch.optim.Optimizer, folder: Path, progress: dict) -> None:
    """Weights, optimizer moments and progress, written as a whole: into ``<folder>.tmp`` (state.json last),
    which then takes the place of ``folder``. A crash at any moment leaves one complete checkpoint, the old
    or the new one (:func:`recover_checkpoint` finds it)."""
    new, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    agent.save(new, extra={"update": progress["update"]})
    _save_optimizer(opt, new / "optimizer.safetensors")
    (new / "state.json").write_text(json.dumps(progress, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.replace(old)
    new.replace(folder)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(folder: Path) -> None:
    """After a crash inside :func:`save_checkpoint`: put the complete checkpoint back at ``folder`` (the new
    one if it was fully written, else the old one)."""
    if (folder / "state.json").is_file():
        return
    for candidate in (folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")):
        if (candidate / "state.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            candidate.replace(folder)
            return


LR_SCHEDULES = ("constant", "cosine", "stable_decay")


def _schedule_scale(schedule: str, update: int, updates: int, decay_fraction: float, elapsed: float,
                    max_minutes: float | None) -> float:
    """The factor on the base learning rate at update index ``update`` (see ``train``'s ``lr_schedule``)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * update / updates))
    progress = update / updates
    if max_minutes is not None:
        progress = max(progress, elapsed / (60.0 * max_minutes))
    return min(1.0, max(0.0, 1.0 - progress) / decay_fraction)


def train(
    agent: LearnedAgent,
    envs: Sequence[Any],
    out_dir: str | Path,
    updates: int = 1000,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    aux_weight: float = 0.1,
    grad_clip: float = 1.0,
    seed: int = 0,
    checkpoint_every: int = 100,
    log_every: int = 10,
    max_minutes: float | None = None,
    resume: bool = True,
    progress: bool = True,
    lr_schedule: str = "constant",
    decay_fraction: float = 0.2,
) -> dict[str, Any]:
    """Train ``agent`` on episodes of ``envs`` (every env's vocabulary must be within the agent's).

    ``lr_schedule``: ``"constant"`` (``lr`` throughout) or ``"cosine"`` (from ``lr`` at the first update down
    to 0 at update ``updates``, by the update index, so a resumed run follows the same schedule) or
    ``"stable_decay"`` (``lr`` until the last ``decay_fraction`` of the budget, then linearly down to 0 at its
    end; the budget is ``updates`` or ``max_minutes``, whichever ends first: the progress of an update is the
    larger of ``update / updates`` and the wall time so far over ``max_minutes``, the checkpoint's wall time
    included, so a resumed run picks the schedule up where it stopped). Agents that learn in a jump after a
    plateau keep the jump (a cosine decay can end it before it comes) and still end on a decayed rate.

    Stops after ``updates`` updates or ``max_minutes`` of wall time (then it checkpoints where it is, and a
    later call with ``resume=True`` continues; a resumed run whose budget was already spent trains nothing).
    Returns the last logged row, the paths written and ``already_done`` (True when there was nothing left to
    train)."""
    if updates < 1 or batch_size < 1:
        raise ValueError(f"updates={updates} and batch_size={batch_size} must both be >= 1")
    if not lr > 0:
        raise ValueError(f"lr={lr} must be > 0")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={lr_schedule!r} is not one of {LR_SCHEDULES}")
    if not 0 < decay_fraction <= 1:
        raise ValueError(f"decay_fraction={decay_fraction} is out of range; allowed: 0 < decay_fraction <= 1")
    if max_minutes is not None and not 0 < max_minutes < math.inf:
        raise ValueError(f"max_minutes={max_minutes} is out of range; allowed: a number > 0, or None (no time limit)")
    if not envs:
        raise ValueError("train needs at least one env")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    maps = [VocabMap(agent.vocab, env.unwrapped.vocab) for env in envs]
    opt = torch.optim.AdamW(agent.model.parameters(), lr=lr, weight_decay=weight_decay)
    start_update, wall_before = 0, 0.0
    if resume:
        recover_checkpoint(ckpt)
    if resume and (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        agent.load(ckpt)
        _load_optimizer(opt, ckpt / "optimizer.safetensors")
        start_update, wall_before = int(state["update"]), float(state["wall_s"])
    log_path = out / "train.csv"
    new_log = not log_path.is_file() or start_update == 0
    row: dict[str, Any] = {}
    if not new_log:  # rows logged after the checkpoint (before a crash) are trained again: keep one copy
        rows = [r for r in csv.DictReader(log_path.open(newline="")) if int(r["update"]) <= start_update]
        with open(log_path, "w", newline="") as f:
            keep = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            keep.writeheader()
            keep.writerows(rows)
        if rows:  # what a resumed run that trains no further reports as its last row
            row = {k: float(v) if k in FLOAT_FIELDS else int(float(v)) for k, v in rows[-1].items()}
    # A run resumed after its budget (updates or minutes) was spent has nothing left to train
    spent = start_update >= updates or (max_minutes is not None and wall_before > 60 * max_minutes)
    log_file = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.DictWriter(log_file, fieldnames=CSV_FIELDS)
    if new_log:
        writer.writeheader()
    agent.model.train()
    begin = time.perf_counter()
    sums = np.zeros(6)  # since the last log row: loss, aux, correct answers, answers, right episodes, updates
    done = start_update
    last_update = start_update if spent else updates
    bar = tqdm(range(start_update, last_update), desc="train", unit="upd", disable=not progress, dynamic_ncols=True,
               initial=start_update, total=updates)
    try:
        for update in bar:
            seeds = [episode_seed(seed, update, batch_size, i) for i in range(batch_size)]
            e = update % len(envs)  # one env of the mix per update: episodes of one size pad little
            episodes = [collect_episode(envs[e], s, maps[e]) for s in seeds]
            batch = make_batch(episodes, len(agent.vocab))
            logits, aux = agent.episode_logits(batch)
            loss, correct, n = answer_loss(logits, batch)
            if not math.isfinite(loss.item()):  # before the step: a checkpoint never holds what made it
                raise FloatingPointError(f"training loss became {loss.item()} at update {update + 1}")
            total = loss + aux_weight * aux
            if lr_schedule != "constant":
                for group in opt.param_groups:
                    group["lr"] = lr * _schedule_scale(lr_schedule, update, updates, decay_fraction,
                                                       wall_before + time.perf_counter() - begin, max_minutes)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(agent.model.parameters(), grad_clip)
            opt.step()
            with torch.no_grad():  # an episode is right when every one of its answers is
                hit = batch.accepted.gather(2, logits.argmax(-1, keepdim=True)).squeeze(-1) | ~batch.answering
                sums += [loss.item(), aux.item(), float(correct), float(n), float(hit.all(1).sum()), 1]
            done = update + 1
            elapsed = wall_before + time.perf_counter() - begin
            if done % log_every == 0 or done == updates:
                k = sums[5]
                row = {"update": done, "episodes": done * batch_size, "loss": float(sums[0] / k),
                       "aux_loss": float(sums[1] / k), "answer_accuracy": float(sums[2] / max(sums[3], 1)),
                       "episode_accuracy": float(sums[4] / (k * batch_size)), "lr": opt.param_groups[0]["lr"],
                       "wall_s": round(elapsed, 2)}
                writer.writerow(row)
                log_file.flush()
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['answer_accuracy']:.3f}", refresh=False)
                sums[:] = 0
            out_of_time = max_minutes is not None and elapsed > 60 * max_minutes
            if done % checkpoint_every == 0 or done == updates or out_of_time:
                save_checkpoint(agent, opt, ckpt, {"update": done, "wall_s": elapsed, "seed": seed,
                                                   "batch_size": batch_size})
            if out_of_time:
                break
    finally:
        bar.close()
        log_file.close()
    agent.model.eval()
    return {"last": row, "updates_done": done, "checkpoint": str(ckpt), "log": str(log_path),
            "already_done": spent}
