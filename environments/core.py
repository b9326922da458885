"""The fact-stream protocol that every cogarch environment speaks.

An episode streams facts (phase 0, "reading"), then asks (phase 1, "answering"). Each step shows one
subject-relation-object triple of symbol ids plus the same content as an English sentence. While
reading, the expected action is id 0 (``<none>``) and actions are not scored; while answering, each
step expects one answer symbol and pays reward 1 when it is accepted, else 0.

Subclasses only generate episodes (:meth:`FactStreamEnv._generate`) as an :class:`Episode`: the reading
facts and the questions. Everything else — spaces, seeding, validation, rewards, ``info`` — lives here so
that all environments behave the same way. This module imports numpy and gymnasium only.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import gymnasium as gym
from gymnasium import spaces
from gymnasium.error import ResetNeeded

NONE, QUERY = "<none>", "?"
# Every character a generated sentence may use; `spaces.Text` checks membership per character.
CHARSET = frozenset(string.ascii_letters + string.digits + " .,;:!?'-()<>_/")

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Fact:
    """One reading step: a triple of symbol ids and its sentence."""

    ids: Triple
    text: str


@dataclass(frozen=True)
class Question:
    """One question; it takes ``len(answer)`` answering steps, one symbol per step.

    ``answer`` is the canonical answer (what the oracle emits). ``accept[i]``, when given, is the set of
    actions scored correct at answer step ``i`` (e.g. every useful next vertex); by default only
    ``answer[i]``. With ``unordered=True`` the answer is a set: each step accepts any member not yet
    given. ``supporting`` holds the reading-step indices of the facts that answer the question. ``tags`` name
    subsets of the answer steps that a run also scores apart (``info["tags"]``; e.g. GraphTrace's
    ``edges_twice``): the run summary then holds ``answer_accuracy_<tag>`` and ``answer_steps_<tag>``.
    """

    ids: Triple
    text: str
    answer: tuple[int, ...]
    accept: tuple[frozenset[int], ...] | None = None
    unordered: bool = False
    supporting: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.answer:
            raise ValueError("a question needs at least one answer symbol")
        if self.accept is not None and len(self.accept) != len(self.answer):
            raise ValueError("accept must hold one set per answer step")


@dataclass
class Episode:
    """What ``_generate`` returns. ``reading`` may be any sequence (a lazy one for long streams).

    ``questions`` may grow while the episode runs (interactive modes append in ``_on_answer``).
    ``info`` is merged into the ``info`` dict returned by ``reset``.
    """

    reading: Sequence[Fact]
    questions: list[Question]
    info: dict[str, Any] = field(default_factory=dict)


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None,
                integer: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` and the range unless ``low <= value <= high`` (NaN never is);
    ``integer=True`` also refuses values with a fractional part (``5.0`` passes, ``5.5`` does not)."""
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    allowed = f"allowed: {'integers ' if integer else ''}{lo} <= {name} <= {hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}; {allowed}")
    # Written as "not inside" so that NaN, which compares False with everything, is refused.
    if (low is not None and not value >= low) or (high is not None and not value <= high):
        raise ValueError(f"{name}={value!r} is out of range; {allowed}")
    if integer and not isinstance(value, (int, np.integer)) and not float(value).is_integer():
        raise ValueError(f"{name}={value!r} is not a whole number; {allowed}")


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


class FactStreamEnv(gym.Env):
    """Base class of the fact-stream environments (see the module docstring and DESIGN.md).

    Observation: ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``.
    Action: ``Discrete(V)``; ``vocab[a]`` names action ``a``; id 0 is ``<none>``.
    Info at reset and every step: ``oracle_action`` (the correct action now; 0 after the end), ``step``
    and ``phase``; when the episode ends, ``success`` (every answer step correct unless a subclass
    defines it otherwise). In the answering phase ``supporting_facts``, ``accepted_actions``, ``answer_index``
    and ``tags`` (the question's, see :class:`Question`) too.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, vocab: Sequence[str], max_text_length: int, render_mode: str | None = None):
        vocab = tuple(vocab)
        if vocab[:2] != (NONE, QUERY):
            raise ValueError(f"vocab must start with {NONE!r}, {QUERY!r}; got {vocab[:2]}")
        if len(set(vocab)) != len(vocab):
            dup = sorted({v for v in vocab if vocab.count(v) > 1})
            raise ValueError(f"vocab symbols must be unique; repeated: {dup}")
        check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        self.vocab = vocab
        self.index = {name: i for i, name in enumerate(vocab)}
        self.render_mode = render_mode
        V = len(vocab)
        self.action_space = spaces.Discrete(V)
        self.observation_space = spaces.Dict(
            {
                "fact": spaces.MultiDiscrete([V, V, V]),
                "text": spaces.Text(max_length=max_text_length, min_length=0, charset="".join(sorted(CHARSET))),
                "phase": spaces.Discrete(2),
            }
        )
        self._max_text_length = max_text_length
        self._episode: Episode | None = None
        self._done = True

    # ------------------------------------------------------------------ subclass hook
    def _generate(self) -> Episode:
        """Build one episode from ``self.np_random``. Subclasses must implement this."""
        raise NotImplementedError

    def _on_answer(self, action: int, correct: bool) -> None:
        """Called after each scored answer step; interactive envs may append questions here."""

    def _success(self) -> bool:
        """Whether the finished episode counts as solved; default: every answer step correct."""
        return self._n_correct == self._n_answered

    # ------------------------------------------------------------------ helpers for subclasses
    def ids(self, *names: str) -> Triple:
        """Symbol ids of ``names`` (three of them for a fact)."""
        return tuple(self.index[n] for n in names)  # type: ignore[return-value]

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._episode = self._generate()
        self._t = 0  # reading steps consumed, then answer steps
        self._q = 0  # current question
        self._a = 0  # answer step within the current question
        self._given: list[int] = []  # correct symbols given for the current unordered question
        self._n_correct = 0
        self._n_answered = 0
        self._done = False
        self._n_reading = len(self._episode.reading)
        if self._n_reading == 0 and not self._episode.questions:
            raise RuntimeError(f"{type(self).__name__} generated an empty episode")
        obs, info = self._observe()
        info.update(self._episode.info)
        return obs, info

    def step(self, action):
        if self._episode is None or self._done:
            raise ResetNeeded("call reset() before step() (and after an episode ends)")
        # Fast path for plain ints (the common case); anything else goes through the space's own check.
        n = self.action_space.n
        valid = (0 <= action < n) if type(action) is int else self.action_space.contains(action)
        if not valid:
            raise ValueError(
                f"action {action!r} is not in the action space Discrete({self.action_space.n}); "
                f"allowed: integers 0..{self.action_space.n - 1}"
            )
        action = int(action)
        reward = 0.0
        if self._t < self._n_reading:
            self._t += 1  # reading: the action is not scored
        else:
            correct = action in self._accepted()
            q = self._episode.questions[self._q]
            if correct:
                reward = 1.0
                self._n_correct += 1
                if q.unordered:
                    self._given.append(action)
            self._n_answered += 1
            self._a += 1
            self._on_answer(action, correct)
            if self._a >= len(q.answer):
                self._q, self._a, self._given = self._q + 1, 0, []
        terminated = self._t >= self._n_reading and self._q >= len(self._episode.questions)
        self._done = terminated
        obs, info = self._observe()
        if terminated:
            info["success"] = bool(self._success())
        return obs, reward, terminated, False, info

    def render(self):
        if self.render_mode == "ansi" and self._episode is not None:
            obs, _ = self._observe()
            return f"[{'RA'[obs['phase']]}] {obs['text']}  {tuple(self.vocab[i] for i in obs['fact'])}"
        return None

    # ------------------------------------------------------------------ internals
    def _accepted(self) -> frozenset[int]:
        q = self._episode.questions[self._q]
        if q.unordered:
            return frozenset(q.answer) - frozenset(self._given)
        if q.accept is not None:
            return q.accept[self._a]
        return frozenset((q.answer[self._a],))

    def _oracle(self) -> int:
        q = self._episode.questions[self._q]
        if q.unordered:
            return next(a for a in q.answer if a not in self._given)
        return q.answer[self._a]

    def _observe(self) -> tuple[dict, dict]:
        ep = self._episode
        if self._t < self._n_reading:
            fact = ep.reading[self._t]
            ids, text, phase, oracle = fact.ids, fact.text, 0, 0
            info: dict[str, Any] = {"step": self._t}
        elif self._q < len(ep.questions):
            q = ep.questions[self._q]
            ids, text, phase, oracle = q.ids, q.text, 1, self._oracle()
            info = {
                "step": self._n_reading + self._n_answered,
                "supporting_facts": q.supporting,
                "accepted_actions": self._accepted(),
                "answer_index": self._a,
                "tags": q.tags,
            }
        else:  # after the end: a blank observation
            ids, text, phase, oracle = (0, 0, 0), "", 1, 0
            info = {"step": self._n_reading + self._n_answered}
        if len(text) > self._max_text_length:
            raise RuntimeError(f"text of {len(text)} chars exceeds max_text_length={self._max_text_length}")
        obs = {"fact": np.array(ids, dtype=np.int64), "text": text, "phase": phase}
        info["oracle_action"] = oracle
        info["phase"] = phase
        return obs, info
