"""Counterfactual importance of cognitive cycles (after "Thought Anchors": which steps of a reasoning trace
does the answer depend on?).

Replay an episode (same env seed) once as it happened and once per cycle with that cycle's broadcast
suppressed (``agent.suppress = {(step, cycle)}``; ``Workspace.cycle(..., suppress=...)``: the competition
runs, nothing is broadcast, memories receive nothing and the conscious state stays the previous one), and
measure the probability the agent gives the correct answer. The importance of a cycle is how much that
probability drops without it.

The probability of the correct answer at an answering step is the softmax of that step's action logits
(the last cycle's) over the symbols the agent may answer in this env (every env symbol but ``<none>`` and
``?``, as ``LearnedAgent.act`` restricts its argmax), summed over ``info["accepted_actions"]``; for an
episode with several answering steps it is the mean over them.

Inputs are an agent with ``suppress`` (``agents.workspace.WorkspaceAgent``) and ``env_map`` (a
``LearnedAgent``) and a fact-stream env; this module imports neither.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["replay", "counterfactual_importance", "anchor_hit", "chance_hit"]


def replay(agent, env, seed: int, suppress: set[tuple[int, int]] = frozenset()) -> dict[str, Any]:
    """Play one episode with ``seed``, suppressing the broadcast of the (step, cycle) pairs in ``suppress``.

    Output: dict with ``p_correct`` (mean over answering steps of the probability of an accepted answer),
    ``p_steps`` that probability per answering step, ``correct`` (the agent's answers all accepted), ``facts``
    (words of each step's observation), ``phases`` (0 reading / 1 answering per step), ``cycles`` the (step,
    cycle) pairs played, ``supporting`` (the reading steps the env names as supporting facts, from the
    answering steps' ``info["supporting_facts"]``).
    """
    import torch

    if not hasattr(agent, "suppress") or not hasattr(agent, "env_map"):
        raise TypeError(f"{type(agent).__name__} cannot be replayed counterfactually: it needs `suppress` and "
                        "`env_map` (a WorkspaceAgent)")
    allowed = torch.as_tensor(agent.env_map.to_agent[2:])  # agent ids of the env symbols an answer may be
    vocab = env.unwrapped.vocab
    saved, saved_trace = set(agent.suppress), getattr(agent, "trace_cycles", None)
    agent.suppress = set(suppress)
    if saved_trace is not None:
        agent.trace_cycles = True  # the answer's logits are read from the cycle records
    try:
        obs, info = env.reset(seed=seed)
        state = agent.initial_state(seed=seed)
        p_steps, facts, phases, cycles, supporting, all_ok = [], [], [], [], set(), True
        done = False
        while not done:
            phase = int(obs["phase"])
            facts.append(tuple(vocab[int(i)] for i in obs["fact"]))
            phases.append(phase)
            accepted = info.get("accepted_actions", {info.get("oracle_action")})
            action, state, records = agent.act(obs, state, info)
            cycles += [(r.step, r.cycle) for r in records]
            if phase == 1:
                supporting.update(int(s) for s in info.get("supporting_facts", ()))
                logits = torch.as_tensor(records[-1].action_logits)[allowed]  # the last cycle acts
                probs = torch.softmax(logits, dim=-1)
                p_steps.append(float(sum(probs[int(a) - 2] for a in accepted if a >= 2)))
                all_ok &= action in accepted
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    finally:
        agent.suppress = saved
        if saved_trace is not None:
            agent.trace_cycles = saved_trace
    return {"p_correct": float(np.mean(p_steps)) if p_steps else float("nan"), "p_steps": p_steps,
            "correct": all_ok, "facts": facts, "phases": phases, "cycles": cycles, "supporting": sorted(supporting)}


def counterfactual_importance(agent, env, seed: int, reading_only: bool = False):
    """The ranked table of cycles by counterfactual importance for one episode.

    Inputs: ``agent`` (WorkspaceAgent), ``env`` (fact-stream env), ``seed`` (the episode's env seed);
    ``reading_only`` leaves out the answering steps' cycles (the question itself).
    Output: ``pandas.DataFrame`` sorted by ``importance`` (descending), one row per cycle, columns
    ``rank`` (1 = mattered most), ``step``, ``cycle``, ``phase`` (0 reading, 1 answering), ``fact`` (the step's
    observation in words), ``supporting`` (the env names the step a supporting fact), ``p_correct`` (the
    replay's probability of the correct answer with this cycle suppressed), ``importance`` (the unsuppressed
    probability minus that). ``df.attrs`` holds ``p_base``, ``base_correct`` and ``supporting`` (steps).
    """
    import pandas as pd

    base = replay(agent, env, seed)
    rows = []
    for step, cycle in base["cycles"]:
        phase = base["phases"][step]
        if reading_only and phase == 1:
            continue
        cf = replay(agent, env, seed, {(step, cycle)})
        rows.append({"step": step, "cycle": cycle, "phase": phase, "fact": " ".join(base["facts"][step]),
                     "supporting": step in base["supporting"], "p_correct": cf["p_correct"],
                     "importance": base["p_correct"] - cf["p_correct"]})
    df = pd.DataFrame(rows, columns=["step", "cycle", "phase", "fact", "supporting", "p_correct", "importance"])
    df = df.sort_values(["importance", "step"], ascending=[False, True], kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df.attrs.update(p_base=base["p_correct"], base_correct=base["correct"], supporting=base["supporting"])
    return df


def anchor_hit(table, m: int | None = None) -> bool:
    """Whether the top-``m`` cycles of a :func:`counterfactual_importance` table include every supporting fact.

    ``m`` defaults to the number of supporting facts (steps); a supporting step counts as included when any
    of its cycles is among the top m. False when the episode names no supporting facts.
    """
    supporting = set(table.attrs.get("supporting", []))
    if not supporting:
        return False
    m = len(supporting) if m is None else m
    return supporting <= set(table.head(m)["step"])


def chance_hit(rows: int, supporting: int, m: int) -> float:
    """The probability that a random ranking of ``rows`` cycles puts all ``supporting`` given ones in its top
    ``m``: C(rows - supporting, m - supporting) / C(rows, m) (0 when m < supporting), the baseline for
    :func:`anchor_hit` with one row per supporting step."""
    if not 0 <= supporting <= rows or m < 0:
        raise ValueError(f"need 0 <= supporting <= rows and m >= 0, got rows={rows}, supporting={supporting}, m={m}")
    m = min(m, rows)
    return math.comb(rows - supporting, m - supporting) / math.comb(rows, m) if m >= supporting else 0.0
