"""What the trained agents share: a torch model over the agent's vocabulary, the env <-> agent id map, the
act loop for one env, and weights saved as safetensors.

A learned agent implements two methods on top of :class:`LearnedAgent`:

- ``step_logits(state, facts (B, 3), phase (B,), trace=True, text=None) -> (logits (B, V), state, records)``: one
  env step, online (``trace=False``: no cycle records; ``text``: the B observations' texts, for agents that read them);
- ``episode_logits(batch: StepBatch) -> (logits (B, T, V), aux_loss scalar)``: a whole padded batch of
  episodes, teacher-forced, for training (the same numbers as calling ``step_logits`` step by step).

``act`` answers ``<none>`` (id 0) while reading, as every cogarch env expects (reading actions are not
scored), and while answering takes the argmax over the symbols the env has.

Axes: B batch, T steps, V the agent's vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agents.data import StepBatch, VocabMap
from cogarch.trace import CycleRecord, read_safetensors, write_safetensors

WEIGHTS = "model.safetensors"


class LearnedAgent:
    """Base of the trained agents. Subclasses set ``self.model`` (an ``nn.Module``) in ``__init__``.

    Args:
        vocab: the agent's concept names (its output symbols); by default the env's ``vocab``.
        agent_vocab: a vocabulary to use instead of the env's (e.g. the union over a curriculum); the env's
            symbols must all be in it.
        seed: torch seed for the initial weights.

    Subclasses also take ``checkpoint`` (a run's ``checkpoint/`` folder or its ``model.safetensors``) and call
    :meth:`load` with it.
    """

    def __init__(self, vocab: Sequence[str] | None, agent_vocab: Sequence[str] | None = None, seed: int = 0):
        if agent_vocab is None and vocab is None:
            raise ValueError("a learned agent needs a vocabulary: pass vocab (the env's) or agent_vocab")
        self.vocab = tuple(agent_vocab if agent_vocab is not None else vocab)
        self.env_map = VocabMap(self.vocab, vocab if vocab is not None else self.vocab)
        self.seed = int(seed)
        self.model: nn.Module

    # ------------------------------------------------------------------ to implement
    def step_logits(self, state: Any, facts: Tensor, phase: Tensor, trace: bool = True,
                    text: Sequence[str] | None = None) -> tuple[Tensor, Any, list[CycleRecord]]:
        raise NotImplementedError

    def episode_logits(self, batch: StepBatch) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def initial_state(self, seed: int | None = None, batch_size: int = 1) -> Any:
        raise NotImplementedError

    def end_episode(self, state: Any) -> Any:
        return None

    # ------------------------------------------------------------------ acting in one env
    def bind_env(self, env_vocab: Sequence[str]) -> None:
        """Act in an env with this vocabulary from now on (its symbols must be known to the agent)."""
        self.env_map = VocabMap(self.vocab, env_vocab)

    @torch.no_grad()  # not inference_mode: its tensors could not be reused by a later training step
    def act(self, obs: dict, state: Any, info: dict[str, Any]) -> tuple[int, Any, list[CycleRecord]]:
        actions, state, records = self.act_batch([obs], state, [info])
        return actions[0], state, records[0]

    # False: act / act_batch build no cycle records (the runners set it from their ``trace`` option; decoding
    # every cycle's winners and slots into words is a large part of a step's cost)
    trace_cycles = True

    # Agents whose state batches over episodes at different steps (``reset_rows``) set this; the vectorized
    # runner (cogarch.vector) then steps N envs with one batched call per step.
    supports_batch = False

    @torch.no_grad()
    def act_batch(self, obs: Sequence[dict], state: Any, infos: Sequence[dict[str, Any]]
                  ) -> tuple[list[int], Any, list[list[CycleRecord]]]:
        """``act`` for B envs at once (row b of ``state`` plays env b): B actions, the next state, and the
        cycle records of each row. Reading steps answer ``<none>``; answers are the argmax over the env's
        symbols (never ``<none>`` or ``?``)."""
        if self.model.training:  # eval() walks every submodule: not once per step
            self.model.eval()
        facts = torch.as_tensor(np.stack([self.env_map.facts(o["fact"]) for o in obs]))  # (B, 3)
        phase = torch.tensor([int(o["phase"]) for o in obs])  # (B,)
        text = [o.get("text") for o in obs]
        text = None if any(t is None for t in text) else [str(t) for t in text]
        logits, state, records = self.step_logits(state, facts, phase, trace=self.trace_cycles, text=text)
        allowed = torch.as_tensor(self.env_map.to_agent[2:])  # never <none> (0) or ? (1) as an answer
        best = allowed[logits[:, allowed].argmax(-1)].tolist()  # (B,) agent ids
        actions = [self.env_map.action_to_env(a) if ph else 0 for a, ph in zip(best, phase.tolist())]
        if getattr(state, "last_action", None) is not None:  # an efference copy holds the action actually taken
            taken = torch.tensor(best, dtype=torch.long, device=state.last_action.device)
            state = state._replace(last_action=torch.where(phase.to(taken.device) == 1, taken, 0))
        B = len(actions)  # records come cycle by cycle, each cycle row by row (none without trace_cycles)
        rows = [[dataclasses.replace(rec, action=actions[b]) for rec in records[b::B]] for b in range(B)]
        return actions, state, rows

    def reset_rows(self, state: Any, rows: Tensor) -> Any:
        """``state`` with the rows where ``rows`` (B,) is True set to a new episode's initial state."""
        raise NotImplementedError(f"{type(self).__name__} does not batch episodes at different steps")

    # ------------------------------------------------------------------ weights
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` (weights, the vocabulary in its metadata) into ``folder``."""
        meta = {"vocab": json.dumps(self.vocab), "class": type(self).__name__, **(extra or {})}
        return write_safetensors(Path(folder) / WEIGHTS, self.model.state_dict(),
                                 {k: str(v) for k, v in meta.items()})

    def load(self, path: str | Path) -> "LearnedAgent":
        """Load weights saved by :meth:`save` (a folder or the file). Never unpickles. Errors name the file,
        and for a model of another shape the tensors that do not fit."""
        path = Path(path)
        file = path / WEIGHTS if path.is_dir() else path
        tensors, meta = read_safetensors(file, "checkpoint")
        saved_vocab = tuple(json.loads(meta.get("vocab", "[]")))
        if saved_vocab and saved_vocab != self.vocab:
            raise ValueError(
                f"checkpoint {file} was trained with a {len(saved_vocab)}-symbol vocabulary that differs from this "
                f"agent's ({len(self.vocab)} symbols); build the agent with agent_vocab from the checkpoint's config"
            )
        own = self.model.state_dict()
        bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
               for k, v in tensors.items() if k in own and own[k].shape != v.shape]
        missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if bad or missing or unexpected:
            raise ValueError(f"checkpoint {file} does not fit this agent: mismatched shapes {bad}; "
                             f"missing {missing[:8]}; unexpected {unexpected[:8]}")
        self.model.load_state_dict(tensors)
        return self


def answer_loss(logits: Tensor, batch: StepBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy of the oracle action at the answering steps, and answer accuracy.

    Returns (mean loss, number of correct answers, number of answering steps); an answer is correct when the
    argmax is any accepted action (unordered answers accept each remaining symbol)."""
    scored = batch.answering  # (B, T)
    n = scored.sum()
    if int(n) == 0:
        zero = logits.sum() * 0
        return zero, zero.detach(), n
    flat, target = logits[scored], batch.target[scored]  # (S, V), (S,)
    loss = nn.functional.cross_entropy(flat, target)
    correct = batch.accepted[scored].gather(1, flat.argmax(-1, keepdim=True)).sum()
    return loss, correct, n


@contextmanager
def seeded(seed: int):
    """Seed torch's default generator inside the block (initial weights), restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
