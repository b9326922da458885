"""Counterfactual importance of cognitive cycles (after "Thought Anchors": which steps of a reasoning trace
does the answer depend on?).

Replay an episode (same env seed) once as it happened and once per cycle with that cycle's broadcast
suppressed (``agent.suppress = {(step, cycle)}``; ``Workspace.cycle(..., suppress=...)``: the competition
runs, nothing is broadcast, memories receive nothing and the conscious state stays the previous one), and
compare the agent's answer distributions. As in the paper, the counterfactual importance of a cycle is the KL
divergence of the answer distribution without it from the one with it, KL(p_base || p_suppressed): it sees a
cycle that moves the answer distribution even when the correct answer keeps almost all of its probability. The
table also reports the change in the probability of the correct answer, and ``measure="p_drop"`` ranks by that
instead.

The answer distribution at an answering step is the softmax of that step's action logits (the last cycle's)
over the symbols the agent may answer in this env (every env symbol but ``<none>`` and ``?``, as
``LearnedAgent.act`` restricts its argmax); the probability of the correct answer is its mass on
``info["accepted_actions"]``. For an episode with several answering steps, both are means over them.

Inputs are an agent with ``suppress`` (``agents.workspace.WorkspaceAgent``) and ``env_map`` (a
``LearnedAgent``) and a fact-stream env; this module imports neither.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["replay", "counterfactual_importance", "answer_kl", "anchor_hit", "chance_hit", "MEASURES"]


def replay(agent, env, seed: int, suppress: set[tuple[int, int]] = frozenset()) -> dict[str, Any]:
    """Play one episode with ``seed``, suppressing the broadcast of the (step, cycle) pairs in ``suppress``.

    Output: dict with ``p_correct`` (mean over answering steps of the probability of an accepted answer),
    ``p_steps`` that probability per answering step, ``log_probs`` the answer distribution per answering step
    (numpy float64 log-probabilities over the symbols the agent may answer), ``correct`` (the agent's answers
    all accepted), ``facts`` (words of each step's observation), ``phases`` (0 reading / 1 answering per step),
    ``cycles`` the (step, cycle) pairs played, ``supporting`` (the reading steps the env names as supporting
    facts, from the answering steps' ``info["supporting_facts"]``).
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
        p_steps, log_probs, facts, phases, cycles, supporting, all_ok = [], [], [], [], [], set(), True
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
                # the last cycle acts; float64, so that the KL of nearly equal distributions is not rounding
                logits = torch.as_tensor(records[-1].action_logits, dtype=torch.float64)[allowed]
                log_p = torch.log_softmax(logits, dim=-1)
                log_probs.append(log_p.numpy())
                p_steps.append(float(sum(log_p[int(a) - 2].exp() for a in accepted if a >= 2)))
                all_ok &= action in accepted
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    finally:
        agent.suppress = saved
        if saved_trace is not None:
            agent.trace_cycles = saved_trace
    return {"p_correct": float(np.mean(p_steps)) if p_steps else float("nan"), "p_steps": p_steps,
            "log_probs": log_probs, "correct": all_ok, "facts": facts, "phases": phases, "cycles": cycles,
            "supporting": sorted(supporting)}


MEASURES = ("kl", "p_drop")  # what counterfactual_importance ranks by


def answer_kl(base: list[np.ndarray], other: list[np.ndarray]) -> float:
    """KL(base || other) of two replays' answer distributions (log-probabilities, one array per answering step),
    averaged over the answering steps; nan when there is none."""
    if len(base) != len(other):
        raise ValueError(f"the replays answered {len(base)} and {len(other)} times; KL compares the same "
                         "answering steps")
    if not base:
        return float("nan")
    return float(np.mean([np.sum(np.exp(b) * (b - o)) for b, o in zip(base, other)]))


def counterfactual_importance(agent, env, seed: int, reading_only: bool = False, measure: str = "kl"):
    """The ranked table of cycles by counterfactual importance for one episode.

    Inputs: ``agent`` (WorkspaceAgent), ``env`` (fact-stream env), ``seed`` (the episode's env seed);
    ``reading_only`` leaves out the answering steps' cycles (the question itself); ``measure`` what ranks the
    cycles: ``"kl"`` (default, as Thought Anchors: the KL divergence of the answer distribution with the cycle
    suppressed from the unsuppressed one) or ``"p_drop"`` (how much the probability of the correct answer drops).
    Output: ``pandas.DataFrame`` sorted by ``importance`` (descending), one row per cycle, columns
    ``rank`` (1 = mattered most), ``step``, ``cycle``, ``phase`` (0 reading, 1 answering), ``fact`` (the step's
    observation in words), ``supporting`` (the env names the step a supporting fact), ``p_correct`` (the
    replay's probability of the correct answer with this cycle suppressed), ``p_drop`` (the unsuppressed
    probability minus that), ``kl`` (KL(unsuppressed || suppressed) of the answer distributions, nats) and
    ``importance`` (the ``measure`` column). ``df.attrs`` holds ``p_base``, ``base_correct``, ``supporting``
    (steps) and ``measure``.
    """
    import pandas as pd

    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r} is not one of {MEASURES}")
    base = replay(agent, env, seed)
    rows = []
    for step, cycle in base["cycles"]:
        phase = base["phases"][step]
        if reading_only and phase == 1:
            continue
        cf = replay(agent, env, seed, {(step, cycle)})
        row = {"step": step, "cycle": cycle, "phase": phase, "fact": " ".join(base["facts"][step]),
               "supporting": step in base["supporting"], "p_correct": cf["p_correct"],
               "p_drop": base["p_correct"] - cf["p_correct"], "kl": answer_kl(base["log_probs"], cf["log_probs"])}
        rows.append(row | {"importance": row[measure]})
    df = pd.DataFrame(rows, columns=["step", "cycle", "phase", "fact", "supporting", "p_correct", "p_drop", "kl",
                                     "importance"])
    df = _ranked(df, "importance").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df.attrs.update(p_base=base["p_correct"], base_correct=base["correct"], supporting=base["supporting"],
                    measure=measure)
    return df


def _ranked(table, column: str):
    """``table`` sorted by ``column``, largest first, ties by step."""
    return table.sort_values([column, "step"], ascending=[False, True], kind="stable")


def anchor_hit(table, m: int | None = None, by: str | None = None) -> bool:
    """Whether the top-``m`` cycles of a :func:`counterfactual_importance` table include every supporting fact.

    ``m`` defaults to the number of supporting facts (steps); a supporting step counts as included when any
    of its cycles is among the top m. ``by`` ranks by another of the table's measure columns (``"kl"`` or
    ``"p_drop"``, ties by step) instead of the table's order. False when the episode names no supporting facts.
    """
    supporting = set(table.attrs.get("supporting", []))
    if not supporting:
        return False
    m = len(supporting) if m is None else m
    if by is not None:
        if by not in MEASURES:
            raise ValueError(f"by={by!r} is not one of {MEASURES}")
        table = _ranked(table, by)
    return supporting <= set(table.head(m)["step"])


def chance_hit(rows: int, supporting: int, m: int) -> float:
    """The probability that a random ranking of ``rows`` cycles puts all ``supporting`` given ones in its top
    ``m``: C(rows - supporting, m - supporting) / C(rows, m) (0 when m < supporting), the baseline for
    :func:`anchor_hit` with one row per supporting step."""
    if not 0 <= supporting <= rows or m < 0:
        raise ValueError(f"need 0 <= supporting <= rows and m >= 0, got rows={rows}, supporting={supporting}, m={m}")
    m = min(m, rows)
    return math.comb(rows - supporting, m - supporting) / math.comb(rows, m) if m >= supporting else 0.0
