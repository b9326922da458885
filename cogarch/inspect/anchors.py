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

Resampling (``intervention="resample"``, the paper's first method): instead of silencing a step, replay it
with a fact of a different meaning in its place and compare the answers. Thought Anchors resamples a sentence
from the model and keeps the resamples whose meaning differs; a fact stream has no model of its own, so the
resamples of a reading step's fact are drawn from the env's own support (:func:`fact_pool`: the distinct facts
its streams show while reading, over episodes far from the evaluated seeds): by default the facts that differ
from it in exactly one role (subject, relation or object), ``resample="any"`` every other fact. The replacement
is what the agent perceives at that step (every cycle of the step); the env's story, its question and its
correct answer stay the original's. A step's answer distribution under resampling is the mean over its
resamples (as the paper's answer distribution over rollouts), and its importance is KL(p_base || that mean).
Deletion cannot see evidence that another fact covers (bAbI names one sufficient set of supporting facts, not
the necessary ones: John got the football, went to the kitchen and dropped it there; without the drop he still
holds it in the kitchen, so suppressing the drop leaves the answer); a resample of it ("Sandra dropped the
football", in another room) still moves the answer.

Inputs are an agent with ``suppress`` (``agents.workspace.WorkspaceAgent``) and ``env_map`` (a
``LearnedAgent``) and a fact-stream env; this module imports neither.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["replay", "replay_resampled", "counterfactual_importance", "answer_kl", "anchor_hit", "chance_hit",
           "fact_pool", "resamples", "MEASURES", "INTERVENTIONS", "RESAMPLES"]

Fact = tuple[int, int, int]  # env ids (subject, relation, object)


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
    with _replaying(agent, suppress):
        obs, info = env.reset(seed=seed)
        state = agent.initial_state(seed=seed)
        p_steps, log_probs, facts, fact_ids, phases, cycles, supporting, all_ok = [], [], [], [], [], [], set(), True
        done = False
        while not done:
            phase = int(obs["phase"])
            fact_ids.append(tuple(int(i) for i in obs["fact"]))
            facts.append(tuple(vocab[i] for i in fact_ids[-1]))
            phases.append(phase)
            accepted = _accepted(info)
            action, state, records = agent.act(obs, state, info)
            cycles += [(r.step, r.cycle) for r in records]
            if phase == 1:
                supporting.update(int(s) for s in info.get("supporting_facts", ()))
                log_p, p = _answer(records, allowed, accepted)
                log_probs.append(log_p)
                p_steps.append(p)
                all_ok &= action in accepted
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    return {"p_correct": float(np.mean(p_steps)) if p_steps else float("nan"), "p_steps": p_steps,
            "log_probs": log_probs, "correct": all_ok, "facts": facts, "fact_ids": fact_ids, "phases": phases,
            "cycles": cycles, "supporting": sorted(supporting)}


@contextmanager
def _replaying(agent, suppress: set[tuple[int, int]] | None = None):
    """Inside, the agent builds its cycle records (the answer's logits are read from them) and, with ``suppress``,
    suppresses those (step, cycle) broadcasts; its own settings are back after."""
    saved_trace, saved_suppress = getattr(agent, "trace_cycles", None), getattr(agent, "suppress", None)
    if saved_trace is not None:
        agent.trace_cycles = True
    if suppress is not None:
        agent.suppress = set(suppress)
    try:
        yield
    finally:
        if saved_trace is not None:
            agent.trace_cycles = saved_trace
        if suppress is not None:
            agent.suppress = saved_suppress


def _accepted(info: dict) -> set:
    """The env actions accepted as the answer at an answering step."""
    return info.get("accepted_actions", {info.get("oracle_action")})


def _answer(records, allowed, accepted) -> tuple[np.ndarray, float]:
    """The answer distribution of an answering step (log-probabilities over the symbols ``allowed``, from the
    last cycle's action logits, which act) and its mass on the ``accepted`` env actions."""
    import torch

    # float64, so that the KL of nearly equal distributions is not rounding
    logits = torch.as_tensor(records[-1].action_logits, dtype=torch.float64)[allowed]
    log_p = torch.log_softmax(logits, dim=-1)
    return log_p.numpy(), float(sum(log_p[int(a) - 2].exp() for a in accepted if a >= 2))


def replay_resampled(agent, env, seed: int, replace: Sequence[dict[int, Sequence[int]]]) -> list[dict[str, Any]]:
    """Play the episode of ``seed`` once per entry of ``replace``, all in one batch (``agent.act_batch``), the
    agent perceiving at each step ``t`` of an entry the fact ``entry[t]`` (env ids) instead of the env's.

    The env's stream is not changed (its question and correct answer are the original episode's); the
    replacement is what the agent reads, in every cycle of the step. Output: one dict per entry with
    ``p_correct``, ``p_steps`` and ``log_probs`` as :func:`replay`'s. Refuses an agent that also reads the
    observation's text (its text would still say the original fact) and an env whose episodes end at
    different steps for different answers.
    """
    import torch

    if not hasattr(agent, "act_batch") or not hasattr(agent, "env_map"):
        raise TypeError(f"{type(agent).__name__} cannot be replayed with resampled facts: it needs `act_batch` "
                        "and `env_map` (a LearnedAgent)")
    if getattr(agent, "language", None) is not None:
        raise ValueError("resampling replaces the fact ids a step shows; this agent also reads obs['text'] "
                         "through its language module, which would still say the original fact")
    rows = len(replace)
    if rows == 0:
        return []
    allowed = torch.as_tensor(agent.env_map.to_agent[2:])
    space = env.observation_space["fact"]
    for entry in replace:
        for t, fact in entry.items():
            if not space.contains(np.asarray(fact, dtype=np.int64)):
                raise ValueError(f"replacement {tuple(fact)} at step {t} is not a fact of this env's vocabulary "
                                 f"(ids in 0..{int(space.nvec[0]) - 1})")
    envs = [copy.deepcopy(env) for _ in range(rows)]
    try:
        with _replaying(agent):
            pairs = [e.reset(seed=seed) for e in envs]
            state = agent.initial_state(seed=seed, batch_size=rows)
            out = [{"p_steps": [], "log_probs": []} for _ in range(rows)]
            t, done = 0, False
            while not done:
                obs = [dict(o, fact=np.asarray(entry[t], dtype=np.int64)) if t in entry else o
                       for (o, _), entry in zip(pairs, replace)]
                infos = [i for _, i in pairs]
                actions, state, records = agent.act_batch(obs, state, infos)
                if int(pairs[0][0]["phase"]) == 1:
                    for r, info in enumerate(infos):
                        log_p, p = _answer(records[r], allowed, _accepted(info))
                        out[r]["log_probs"].append(log_p)
                        out[r]["p_steps"].append(p)
                steps = [e.step(a) for e, a in zip(envs, actions)]
                ends = {bool(s[2] or s[3]) for s in steps}
                if len(ends) > 1:
                    raise ValueError(f"the resampled replays of seed {seed} ended at different steps (step {t}); "
                                     "resampling needs a stream whose length does not depend on the answers")
                done, pairs, t = ends.pop(), [(s[0], s[4]) for s in steps], t + 1
    finally:
        for e in envs:
            e.close()
    for o in out:
        o["p_correct"] = float(np.mean(o["p_steps"])) if o["p_steps"] else float("nan")
    return out


def fact_pool(env, episodes: int = 200, seed: int = 1_000_000) -> list[Fact]:
    """The distinct facts (env ids) the env's streams show while reading (phase 0), over ``episodes`` episodes
    from seed ``seed`` on (answered by ``info["oracle_action"]``): the support resamples are drawn from. The
    default seeds lie far from the evaluated ones (0, 1, ...). Sorted. It plays those episodes on ``env`` itself:
    an episode in progress there is lost."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes} is out of range; allowed: >= 1")
    pool = set()
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        done = False
        while not done:
            if int(obs["phase"]) == 0:
                pool.add(tuple(int(x) for x in obs["fact"]))
            obs, _, terminated, truncated, info = env.step(int(info.get("oracle_action", 0)))
            done = terminated or truncated
    return sorted(pool)


RESAMPLES = ("one_role", "any")  # which facts of the pool resample a step's fact


def resamples(fact: Sequence[int], pool: Sequence[Sequence[int]], how: str = "one_role") -> list[Fact]:
    """The facts of ``pool`` that resample ``fact``: those that differ from it in exactly one role (``"one_role"``:
    another subject, relation or object, the other two kept), or every other one (``"any"``). Never ``fact``."""
    if how not in RESAMPLES:
        raise ValueError(f"resample={how!r} is not one of {RESAMPLES}")
    fact = tuple(int(x) for x in fact)
    out = []
    for other in pool:
        other = tuple(int(x) for x in other)
        differ = sum(a != b for a, b in zip(fact, other))
        if differ == 1 or (how == "any" and differ > 1):
            out.append(other)
    return out


MEASURES = ("kl", "p_drop")  # what counterfactual_importance ranks by
INTERVENTIONS = ("suppress", "resample")  # what counterfactual_importance does to a cycle (or step)


def answer_kl(base: list[np.ndarray], other: list[np.ndarray]) -> float:
    """KL(base || other) of two replays' answer distributions (log-probabilities, one array per answering step),
    averaged over the answering steps; nan when there is none."""
    if len(base) != len(other):
        raise ValueError(f"the replays answered {len(base)} and {len(other)} times; KL compares the same "
                         "answering steps")
    if not base:
        return float("nan")
    return float(np.mean([np.sum(np.exp(b) * (b - o)) for b, o in zip(base, other)]))


def counterfactual_importance(agent, env, seed: int, reading_only: bool = False, measure: str = "kl",
                              intervention: str = "suppress", resample: str = "one_role",
                              pool: Sequence[Sequence[int]] | None = None):
    """The ranked table of cycles (or reading steps) by counterfactual importance for one episode.

    Inputs: ``agent`` (WorkspaceAgent), ``env`` (fact-stream env), ``seed`` (the episode's env seed);
    ``reading_only`` leaves out the answering steps' cycles (the question itself); ``measure`` what ranks the
    rows: ``"kl"`` (default, as Thought Anchors: the KL divergence of the answer distribution under the
    intervention from the unchanged one) or ``"p_drop"`` (how much the probability of the correct answer drops).
    ``intervention``: ``"suppress"`` (default) replays once per cycle with its broadcast suppressed, one row per
    cycle; ``"resample"`` replays each reading step once per resample of its fact (``resample``: ``"one_role"``
    or ``"any"``, see :func:`resamples`; drawn from ``pool``, default :func:`fact_pool` of ``env``), one row per
    reading step, its figures the mean over its resamples (the answering steps are not resampled).
    Output: ``pandas.DataFrame`` sorted by ``importance`` (descending; a step without resamples, nan, last), one
    row per cycle or step, columns ``rank`` (1 = mattered most), ``step``, ``cycle`` (-1 for a resampled step:
    all its cycles read the replacement), ``phase`` (0 reading, 1 answering), ``fact`` (the step's observation in
    words), ``supporting`` (the env names the step a supporting fact), ``replays`` (counterfactual replays behind
    the row: 1 when suppressing, the number of resamples when resampling), ``p_correct`` (the probability of
    the correct answer under the intervention), ``p_drop`` (the unchanged probability minus that), ``kl``
    (KL(unchanged || intervened) of the answer distributions, nats) and ``importance`` (the ``measure``
    column). ``df.attrs`` holds ``p_base``, ``base_correct``, ``supporting`` (steps), ``measure`` and
    ``intervention``.

    The replays reset ``env`` itself (seed ``seed``; :func:`fact_pool` too, with its own seeds): an episode in
    progress there is lost.
    """
    import pandas as pd

    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r} is not one of {MEASURES}")
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention={intervention!r} is not one of {INTERVENTIONS}")
    if resample not in RESAMPLES:
        raise ValueError(f"resample={resample!r} is not one of {RESAMPLES}")
    base = replay(agent, env, seed)
    rows = []

    def row(step: int, cycle: int, replays: int, p_correct: float, kl: float) -> dict:
        return {"step": step, "cycle": cycle, "phase": base["phases"][step], "fact": " ".join(base["facts"][step]),
                "supporting": step in base["supporting"], "replays": replays, "p_correct": p_correct,
                "p_drop": base["p_correct"] - p_correct, "kl": kl}

    if intervention == "suppress":
        for step, cycle in base["cycles"]:
            if reading_only and base["phases"][step] == 1:
                continue
            cf = replay(agent, env, seed, {(step, cycle)})
            rows.append(row(step, cycle, 1, cf["p_correct"], answer_kl(base["log_probs"], cf["log_probs"])))
    else:
        pool = fact_pool(env) if pool is None else pool
        reading = [t for t, phase in enumerate(base["phases"]) if phase == 0]
        alternatives = {t: resamples(base["fact_ids"][t], pool, resample) for t in reading}
        entries = [(t, {t: fact}) for t in reading for fact in alternatives[t]]
        replays = replay_resampled(agent, env, seed, [entry for _, entry in entries])  # one batch for all steps
        by_step = {t: [] for t in reading}
        for (step, _), cf in zip(entries, replays):
            by_step[step].append(cf)
        for t, mine in by_step.items():
            if not mine:
                rows.append(row(t, -1, 0, float("nan"), float("nan")))
                continue
            # the answer distribution over the resamples: the mean of their distributions, per answering step
            mixed = [np.log(np.mean([np.exp(cf["log_probs"][k]) for cf in mine], axis=0))
                     for k in range(len(base["log_probs"]))]
            rows.append(row(t, -1, len(mine), float(np.mean([cf["p_correct"] for cf in mine])),
                            answer_kl(base["log_probs"], mixed)))
    rows = [r | {"importance": r[measure]} for r in rows]
    df = pd.DataFrame(rows, columns=["step", "cycle", "phase", "fact", "supporting", "replays", "p_correct",
                                     "p_drop", "kl", "importance"])
    df = _ranked(df, "importance").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df.attrs.update(p_base=base["p_correct"], base_correct=base["correct"], supporting=base["supporting"],
                    measure=measure, intervention=intervention)
    return df


def _ranked(table, column: str):
    """``table`` sorted by ``column``, largest first, ties by step."""
    return table.sort_values([column, "step"], ascending=[False, True], kind="stable", na_position="last")


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
