"""Episodes as training data: oracle rollouts of a fact-stream env, padded into batches of steps.

Both trainable agents (``agents.workspace.WorkspaceAgent``, ``agents.transformer.TransformerAgent``) learn by
imitation of ``info["oracle_action"]``: an episode is played with the oracle's actions and every step's
observation, phase, oracle action and accepted answers are kept. The agents read the same per-step facts,
so a batch of :class:`StepBatch` feeds either of them.

Vocabularies: an agent owns a vocabulary (its concept names). An env's ids are translated into the agent's
by name (:class:`VocabMap`), so an agent trained on GraphSearch with 100 vertices (``v0..v99``) also reads
and answers a 20-vertex graph, whose vocabulary is a subset.

Axes: B episodes, T steps (padded), V the agent's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from cogarch.runner import STEP_KEYS

__all__ = ["EpisodeData", "StepBatch", "VocabMap", "collect_episode", "make_batch", "union_vocab"]


def union_vocab(vocabs: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The names of several env vocabularies, each once, in order of first appearance (the longest first)."""
    out: dict[str, None] = {}
    for vocab in sorted((tuple(v) for v in vocabs), key=len, reverse=True):
        out.update(dict.fromkeys(vocab))
    return tuple(out)


class VocabMap:
    """Env ids <-> agent ids by name. ``to_agent`` is an int64 array (V_env,); ``env_actions`` (V_env,) are the
    agent ids an answer may take in this env (the agent's argmax is restricted to them).

    Raises ValueError naming the env symbols that the agent has never seen."""

    def __init__(self, agent_vocab: Sequence[str], env_vocab: Sequence[str]):
        index = {name: i for i, name in enumerate(agent_vocab)}
        missing = [name for name in env_vocab if name not in index]
        if missing:
            raise ValueError(
                f"the env's vocabulary has {len(missing)} symbol(s) the agent does not know, e.g. {missing[:5]}; "
                f"train the agent on an env whose vocabulary covers them (the agent knows {len(index)} symbols)"
            )
        self.to_agent = np.array([index[name] for name in env_vocab], dtype=np.int64)

    def facts(self, fact: np.ndarray) -> np.ndarray:
        return self.to_agent[np.asarray(fact, dtype=np.int64)]

    def action_to_env(self, agent_action: int) -> int:
        return int(np.flatnonzero(self.to_agent == agent_action)[0])


@dataclass
class EpisodeData:
    """One oracle rollout in the agent's ids."""

    facts: np.ndarray  # (T, 3) int64
    phase: np.ndarray  # (T,) int64: 0 reading, 1 answering
    target: np.ndarray  # (T,) int64: the oracle action (0 while reading)
    accepted: list[tuple[int, ...]]  # (T,) per step: every answer the env scores as correct (empty while reading)
    meta: dict[str, Any]  # reset's info without the per-step keys
    text: list[str] | None = None  # (T,) the text of each step's observation (None: the env has none)


def collect_episode(env, seed: int, vocab: VocabMap) -> EpisodeData:
    """Play one episode of ``env`` with its oracle's actions (reset with ``seed``) and record every step."""
    obs, info = env.reset(seed=seed)
    meta = {k: v for k, v in info.items() if k not in STEP_KEYS}
    facts, phase, target, accepted, text = [], [], [], [], []
    done = False
    while not done:
        if "oracle_action" not in info:
            raise ValueError("imitation needs info['oracle_action'] at every step; this env does not report it")
        oracle = int(info["oracle_action"])
        facts.append(vocab.facts(obs["fact"]))
        text.append(obs.get("text"))
        phase.append(int(obs["phase"]))
        target.append(int(vocab.to_agent[oracle]))
        accepted.append(tuple(int(vocab.to_agent[a]) for a in info.get("accepted_actions", (oracle,)))
                        if int(obs["phase"]) == 1 else ())
        obs, _, terminated, truncated, info = env.step(oracle)
        done = terminated or truncated
    return EpisodeData(np.stack(facts), np.array(phase, dtype=np.int64), np.array(target, dtype=np.int64),
                       accepted, meta, None if any(t is None for t in text) else [str(t) for t in text])


class StepBatch(NamedTuple):
    """A padded batch of episodes (batch-first). ``mask`` marks real steps; padding repeats id 0."""

    facts: Tensor  # (B, T, 3) long
    phase: Tensor  # (B, T) long
    target: Tensor  # (B, T) long
    mask: Tensor  # (B, T) bool
    accepted: Tensor  # (B, T, V) bool: the actions scored as correct at answering steps
    text: list[list[str]] | None = None  # (B, T) each step's text, "" on padding (None: the episodes have none)

    @property
    def answering(self) -> Tensor:
        """(B, T) bool: the scored steps."""
        return self.mask & (self.phase == 1)


def make_batch(episodes: Sequence[EpisodeData], vocab_size: int, device=None) -> StepBatch:
    """Pad episodes to the longest one."""
    B, T = len(episodes), max(len(e.phase) for e in episodes)
    facts = np.zeros((B, T, 3), dtype=np.int64)
    phase = np.zeros((B, T), dtype=np.int64)
    target = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=bool)
    accepted = np.zeros((B, T, vocab_size), dtype=bool)
    for b, e in enumerate(episodes):
        n = len(e.phase)
        facts[b, :n], phase[b, :n], target[b, :n], mask[b, :n] = e.facts, e.phase, e.target, True
        for t, acc in enumerate(e.accepted):
            if acc:
                accepted[b, t, list(acc)] = True
    as_t = lambda a: torch.as_tensor(a, device=device)
    text = None
    if all(e.text is not None for e in episodes):
        text = [list(e.text) + [""] * (T - len(e.text)) for e in episodes]
    return StepBatch(as_t(facts), as_t(phase), as_t(target), as_t(mask), as_t(accepted), text)
