"""The LLM-only baseline: a small causal language model reads the whole text stream and answers.

It has no workspace, no memory modules and no training: the context window is its only memory. It bounds
what formal linguistic competence alone achieves on the fact-stream tasks ("Dissociating language and
thought in large language models"), next to the random (chance) and oracle (ceiling) baselines.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

from gymnasium import spaces

from cogarch.agent import CycleRecord
from cogarch.language import LanguageModule, qa_prompt, symbol_words


class LLMState(NamedTuple):
    """The episode so far, as text: an explicit value (``act`` returns a new one)."""

    lines: tuple[str, ...]  # reading sentences, and each finished question with its answers, in order
    question: str | None  # the question being answered (None while reading)
    answers: tuple[str, ...]  # the answers given to it so far (multi-step answers)
    step: int


class LLMAgent:
    """Reads the env's ``text`` stream and answers by constrained generation over the vocabulary.

    Inputs: fact-stream observations ``{fact, text, phase}`` and ``info`` (``answer_index`` tells a new
    question from a further step of the same one; without it, a changed question text does).
    Outputs: while reading (phase 0), action 0 (``<none>``); while answering (phase 1), the answer-able
    symbol (every vocabulary symbol but ``<none>`` and ``?``) whose words have the highest probability as
    the answer's continuation of the prompt (:func:`cogarch.language.qa_prompt`: the context lines, earlier
    questions with their answers, the question, and the answers already given to it). All symbols are
    scored in one batched pass over the prompt's KV cache, so only vocabulary symbols can come out.
    State: :class:`LLMState`, the text so far; the model is loaded on the first answer, not at construction.

    On an env without ``text`` observations or vocabulary it warns at construction and plays the first
    action of a ``Discrete`` space (else random actions): a language model has nothing to read there.

    Args:
        action_space, observation_space, seed, vocab: given by the runner (``vocab``: the symbol names).
        model: a :class:`LanguageModule`, or the model name / local path / hub id for one (None: the shipped
            SmolLM2-135M-Instruct).
        cache_dir, allow_download, dtype: for loading the model (see ``cogarch.language.load_language_model``).
        max_context_tokens: the prompt keeps the most recent context lines that fit in this many tokens.
        max_context_lines: at most this many lines are kept in the state (bounds long streams).
    """

    def __init__(self, action_space: spaces.Space, observation_space: spaces.Space | None = None, seed: int = 0,
                 vocab: Sequence[str] | None = None, model: LanguageModule | str | None = None,
                 cache_dir: str | None = None, allow_download: bool = False, dtype: str = "float32",
                 max_context_tokens: int = 1536, max_context_lines: int = 512):
        if max_context_tokens < 16 or max_context_lines < 1:
            raise ValueError(f"need max_context_tokens >= 16 and max_context_lines >= 1, got "
                             f"{max_context_tokens}, {max_context_lines}")
        self.action_space = action_space
        self.vocab = tuple(vocab) if vocab is not None else None
        self.max_context_tokens, self.max_context_lines = int(max_context_tokens), int(max_context_lines)
        self._model, self._load = (model, None) if isinstance(model, LanguageModule) else \
            (None, dict(model=model, cache_dir=cache_dir, allow_download=allow_download, dtype=dtype))
        self._idle = int(action_space.start) if isinstance(action_space, spaces.Discrete) else None
        has_text = isinstance(observation_space, spaces.Dict) and "text" in observation_space.spaces
        self.reads_text = self.vocab is not None and (observation_space is None or has_text)
        if not self.reads_text:
            what = f"action {self._idle}" if self._idle is not None else "random actions"
            warnings.warn("LLMAgent reads the 'text' observation of a fact-stream env with a vocabulary; this "
                          f"env has none, so it plays {what} throughout", stacklevel=2)
        # what may be answered: every symbol but the reading action and the query mark
        self.answer_ids = [i for i, v in enumerate(self.vocab or ()) if v not in ("<none>", "?")]
        self.answer_words = [symbol_words(self.vocab[i]) for i in self.answer_ids]

    @property
    def language(self) -> LanguageModule:
        """The language module, loaded on first use."""
        if self._model is None:
            self._model = LanguageModule(**self._load)
        return self._model

    def initial_state(self, seed: int | None = None) -> LLMState:
        return LLMState(lines=(), question=None, answers=(), step=0)

    def _close_question(self, state: LLMState) -> tuple[str, ...]:
        """The lines with the finished question and its answers appended."""
        if state.question is None:
            return state.lines
        qa = f"Question: {state.question}\nAnswer: {', '.join(state.answers)}"
        return (*state.lines, qa)[-self.max_context_lines:]

    def _context(self, lines: tuple[str, ...], budget: int) -> list[str]:
        """The most recent lines whose tokens fit in ``budget``."""
        kept: list[str] = []
        for line in reversed(lines):
            budget -= len(self.language.tokens(line)) + 1
            if budget < 0:
                break
            kept.append(line)
        return kept[::-1]

    def prompt(self, state: LLMState, question: str, previous: Sequence[str] = ()) -> str:
        """The prompt for ``question`` given the state's lines (the most recent that fit the budget)."""
        budget = min(self.max_context_tokens, self.language.max_tokens - 64)  # room for the answer tokens
        budget -= len(self.language.tokens(qa_prompt([], question, previous)))
        return qa_prompt(self._context(state.lines, budget), question, previous)

    def act(self, obs: Any, state: LLMState, info: dict[str, Any]) -> tuple[int, LLMState, list[CycleRecord]]:
        if not self.reads_text or not isinstance(obs, dict) or "text" not in obs:
            action = self._idle if self._idle is not None else self.action_space.sample()
            record = CycleRecord(state.step, 0, action if isinstance(action, int) else None)
            return action, state._replace(step=state.step + 1), [record]
        text, phase = str(obs["text"]), int(obs.get("phase", 0))
        if phase == 0:
            lines = (*self._close_question(state), text)[-self.max_context_lines:]
            new = LLMState(lines, None, (), state.step + 1)
            return 0, new, [CycleRecord(step=state.step, cycle=0, action=0)]
        index = info.get("answer_index")
        same = state.question is not None and (index > 0 if index is not None else text == state.question)
        if not same:
            state = LLMState(self._close_question(state), text, (), state.step)
        prompt = self.prompt(state, text, state.answers)
        logprobs = self.language.choice_logprobs(prompt, self.answer_words)  # (N,)
        top = logprobs.topk(min(3, len(self.answer_ids)))
        best = int(top.indices[0])
        action = self.answer_ids[best]
        new = state._replace(answers=(*state.answers, self.answer_words[best]), step=state.step + 1)
        extra = {"answer": self.vocab[action],
                 "top": [[self.vocab[self.answer_ids[int(i)]], round(float(v), 4)] for v, i in zip(*top)]}
        return action, new, [CycleRecord(step=state.step, cycle=0, action=action, extra=extra)]

    def end_episode(self, state: LLMState) -> None:
        return None
