"""The transformer baseline: a causal transformer over the episode's whole fact stream, one token per env step,
trained by imitation of the env oracle (``agents.data``).

Source: Saparov et al., "Transformers Struggle to Learn to Search" — the baseline whose fixed depth caps the
search (reachable sets at most double per layer); the workspace agent's cycles are compared against it.

A token is the step's fact, ``W [E[s]; E[p]; E[o]]`` (one shared concept embedding E; the learned map W of the
concatenation keeps the roles apart, where a sum would be a bag of words), plus a phase embedding (0 reading,
1 answering) and the sinusoidal position of the step within the window, scaled to the embeddings' size (0.02). Pre-LayerNorm blocks of causal multi-head self-attention and a 4x GELU
MLP, a final LayerNorm, and logits over the V concepts through the concept embedding (tied weights).

The window: the model sees only the last ``max_context`` steps (positions 0..W-1 within that window), so each
step costs constant memory and a fact further back than ``max_context`` steps is out of reach.
"""

# B batch, T steps (tokens), W window (<= max_context), N windows, r roles (3: s, p, o), V concepts,
# h heads, e head dim, d model dim

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, NamedTuple

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.data import StepBatch
from agents.learned import LearnedAgent, seeded
from cogarch.trace import CycleRecord

# Windows per forward pass when an episode is longer than max_context (bounds memory: chunk * B * W tokens).
WINDOW_CHUNK = 64


def sinusoid(length: int, dim: int) -> Tensor:
    """(length, dim) sinusoidal positions (Vaswani et al.); an odd dim drops the last cosine."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x)); causal multi-head self-attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, T, d)
        q, k, v = einops.rearrange(self.qkv(self.ln1(x)), "b t (three h e) -> three b h t e", three=3, h=self.heads)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, e)
        x = x + self.proj(einops.rearrange(att, "b h t e -> b t (h e)"))
        return x + self.mlp(self.ln2(x))


POSITION_SCALE = 0.02  # the sinusoid (entries +-1) at the scale of the N(0, 0.02) embeddings, not 50x above them


class TransformerModel(nn.Module):
    """Causal transformer over fact tokens.

    Source: Saparov et al., "Transformers Struggle to Learn to Search" (the baseline).

    Inputs: ``facts`` (B, T, 3) long concept ids (s, p, o); ``phase`` (B, T) long (0 reading, 1 answering);
        T <= ``max_context``; position t of the input is position t of the window.
    Outputs: logits (B, T, V) over the concepts, the weights tied to the concept embedding.
    State: none (the agent keeps the window).

    Args:
        vocab_size: V, the number of concepts. dim: d (a multiple of ``heads``). layers: blocks. heads: attention
        heads. max_context: the longest window (length of the position table).
    """

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, max_context: int = 512):
        super().__init__()
        if dim < heads or dim % heads:
            raise ValueError(f"dim={dim} must be a positive multiple of heads={heads}")
        if max_context < 1 or layers < 1 or vocab_size < 1:
            raise ValueError(f"need vocab_size, layers, max_context >= 1, got {vocab_size}, {layers}, {max_context}")
        self.vocab_size, self.dim, self.layers, self.heads, self.max_context = vocab_size, dim, layers, heads, max_context
        self.concept = nn.Embedding(vocab_size, dim)
        self.fact_in = nn.Linear(3 * dim, dim, bias=False)
        self.phase = nn.Embedding(2, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        # not saved: a function of (max_context, dim), rebuilt on load
        self.register_buffer("position", POSITION_SCALE * sinusoid(max_context, dim), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * layers)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            else:
                std = 0.02 / math.sqrt(2 * self.layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, facts: Tensor, phase: Tensor) -> Tensor:
        T = facts.shape[1]
        if T > self.max_context:
            raise ValueError(f"{T} steps exceed max_context={self.max_context}; slide a window (TransformerAgent)")
        x = self.fact_in(einops.rearrange(self.concept(facts), "b t r d -> b t (r d)"))  # (B, T, d)
        x = x + self.phase(phase) + self.position[:T]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.concept.weight.T  # (B, T, V)


def count_parameters(vocab_size: int, dim: int, layers: int, heads: int) -> int:
    """Parameters of a TransformerModel (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        model = TransformerModel(vocab_size, dim, layers, heads, max_context=1)
    return sum(p.numel() for p in model.parameters())


def dim_for_parameters(target: int, vocab_size: int, layers: int, heads: int) -> int:
    """The multiple of ``heads`` (>= heads) whose model has the parameter count closest to ``target``."""
    count = lambda k: count_parameters(vocab_size, heads * k, layers, heads)
    hi = 1
    while count(hi) < target:  # the count grows with dim: double, then bisect
        hi *= 2
    lo = max(1, hi // 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    k = min((lo, hi), key=lambda k: abs(count(k) - target))
    return heads * k


class TransformerState(NamedTuple):
    """The stream so far, at most the last ``max_context`` steps of each episode, left-aligned: row b's window is
    ``facts[b, :length[b]]`` (what lies past it is padding, which the causal attention of the real tokens never
    sees), so rows at different steps (episodes of a vectorized run) share one batch."""

    facts: Tensor  # (B, t, 3) long
    phase: Tensor  # (B, t) long
    step: Tensor  # (B,) long: env steps of the episode so far
    length: Tensor  # (B,) long: tokens in the row's window (<= max_context)


class TransformerAgent(LearnedAgent):
    """The transformer baseline of Saparov et al., "Transformers Struggle to Learn to Search": a causal transformer
    over the episode's fact stream (one token per env step), trained by imitation of ``info["oracle_action"]``.

    Inputs: per step, the fact (B, 3) in the agent's ids and the phase (B,).
    Outputs: logits (B, V) over the agent's vocabulary (``act`` answers ``<none>`` while reading).
    State: :class:`TransformerState`, the last ``max_context`` steps (older steps are dropped: constant memory per
        step, and the window is the farthest the model can look back) and the step count.

    ``episode_logits`` runs a padded batch teacher-forced and gives the same numbers as ``step_logits`` step by
    step: one pass when T <= max_context, else the first window in one pass and every later step in its own
    window (positions are within the window, so a slid window is a new sequence).

    Args:
        action_space, observation_space: given by the CLI; unused.
        vocab, agent_vocab, seed, checkpoint: see :class:`agents.learned.LearnedAgent`.
        dim, layers, heads, max_context: the model (see :class:`TransformerModel`).
        target_parameters: if set, ``dim`` is chosen (a multiple of ``heads``) to bring the parameter count
            closest to it, keeping ``layers`` and ``heads``; the chosen dim is ``self.dim``.
    """

    def __init__(self, action_space=None, observation_space=None, vocab: Sequence[str] | None = None, seed: int = 0,
                 agent_vocab: Sequence[str] | None = None, dim: int = 64, layers: int = 2, heads: int = 4,
                 max_context: int = 512, target_parameters: int | None = None, checkpoint: str | Path | None = None):
        if vocab is None and agent_vocab is None:
            raise ValueError("TransformerAgent needs a fact-stream env (one with a vocab, e.g. env=story_qa); "
                             "this env has none")
        for name, value in (("layers", layers), ("heads", heads), ("max_context", max_context),
                            ("target_parameters", 1 if target_parameters is None else target_parameters)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name}={value!r} is out of range; allowed: integer >= 1"
                                 + (" (or null)" if name == "target_parameters" else ""))
        if target_parameters is None and (isinstance(dim, bool) or not isinstance(dim, Integral) or dim < heads
                                          or dim % heads):
            raise ValueError(f"dim={dim!r} is out of range; allowed: a positive multiple of heads={heads}")
        super().__init__(vocab, agent_vocab=agent_vocab, seed=seed)
        V = len(self.vocab)
        if target_parameters is not None:
            dim = dim_for_parameters(int(target_parameters), V, layers, heads)
        self.dim, self.layers, self.heads, self.max_context = int(dim), int(layers), int(heads), int(max_context)
        with seeded(self.seed):
            self.model = TransformerModel(V, self.dim, self.layers, self.heads, self.max_context)
        if checkpoint is not None:
            self.load(checkpoint)

    @property
    def device(self) -> torch.device:
        return self.model.concept.weight.device

    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """As :meth:`LearnedAgent.save`, with the architecture in the metadata."""
        arch = {"dim": self.dim, "layers": self.layers, "heads": self.heads, "max_context": self.max_context}
        return super().save(folder, {**arch, **(extra or {})})

    def initial_state(self, seed: int | None = None, batch_size: int = 1) -> TransformerState:
        long = dict(dtype=torch.long, device=self.device)
        return TransformerState(torch.zeros(batch_size, 0, 3, **long), torch.zeros(batch_size, 0, **long),
                                torch.zeros(batch_size, **long), torch.zeros(batch_size, **long))

    supports_batch = True  # rows may be at different steps (cogarch.vector)

    def reset_rows(self, state: TransformerState, rows: Tensor) -> TransformerState:
        rows = rows.to(state.step.device)
        return state._replace(step=torch.where(rows, 0, state.step), length=torch.where(rows, 0, state.length))

    def step_logits(self, state: TransformerState, facts: Tensor, phase: Tensor, trace: bool = True,
                    text: Sequence[str] | None = None) -> tuple[Tensor, TransformerState, list[CycleRecord]]:
        facts, phase = facts.to(self.device, torch.long), phase.to(self.device, torch.long)
        W, B = self.max_context, facts.shape[0]
        buf_f, buf_p, length = state.facts, state.phase, state.length
        full = length >= W  # rows whose window is full drop their oldest step
        if bool(full.any()):
            buf_f = torch.where(full[:, None, None], buf_f.roll(-1, 1), buf_f)
            buf_p = torch.where(full[:, None], buf_p.roll(-1, 1), buf_p)
        length = torch.clamp(length + 1, max=W)
        T = int(length.max())
        if T > buf_f.shape[1]:  # grow the buffers (padding on the right)
            buf_f = F.pad(buf_f, (0, 0, 0, T - buf_f.shape[1]))
            buf_p = F.pad(buf_p, (0, T - buf_p.shape[1]))
        rows, at = torch.arange(B, device=facts.device), length - 1
        buf_f, buf_p = buf_f.index_put((rows, at), facts), buf_p.index_put((rows, at), phase)
        logits = self.model(buf_f[:, :T], buf_p[:, :T])[rows, at]  # (B, V): each row's newest step
        records = []
        if trace:
            out = logits.detach().float().cpu()
            records = [CycleRecord(step=int(s), cycle=0, action=None, action_logits=out[b].tolist())
                       for b, s in enumerate(state.step.tolist())]
        return logits, TransformerState(buf_f, buf_p, state.step + 1, length), records

    def episode_logits(self, batch: StepBatch) -> tuple[Tensor, Tensor]:
        facts, phase = batch.facts.to(self.device), batch.phase.to(self.device)
        B, T, W = *phase.shape, self.max_context
        if T <= W:
            logits = self.model(facts, phase)  # (B, T, V)
            return logits, logits.new_zeros(())
        # every window of W steps: the first gives steps 0..W-1, each later one only its last step
        f = einops.rearrange(facts.unfold(1, W, 1), "b n r w -> b n w r")  # (B, N, W, 3), N = T - W + 1
        p = phase.unfold(1, W, 1)  # (B, N, W)
        head = self.model(f[:, 0], p[:, 0])  # (B, W, V)
        tail = []
        for i in range(1, T - W + 1, WINDOW_CHUNK):
            fc, pc = f[:, i:i + WINDOW_CHUNK], p[:, i:i + WINDOW_CHUNK]
            n = fc.shape[1]
            out = self.model(einops.rearrange(fc, "b n w r -> (b n) w r"), einops.rearrange(pc, "b n w -> (b n) w"))
            tail.append(einops.rearrange(out[:, -1], "(b n) v -> b n v", b=B, n=n))
        logits = torch.cat([head, *tail], 1)  # (B, T, V)
        return logits, logits.new_zeros(())

    def end_episode(self, state: Any) -> None:
        return None
