"""The consciousness-prior bottleneck: attention picks a few candidates, which become the conscious state.

Source: Bengio, "The Consciousness Prior" (2017). A few elements, selected by attention from a broad pool
of candidates, form a low-dimensional conscious state that is broadcast and conditions further processing;
an auxiliary objective asks the current conscious state to predict the next one.

Axes: B batch, N candidates, k winners, d model dim, c conscious width.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BottleneckOutput(NamedTuple):
    winners: Tensor  # (B, k) long: candidate indices that won, best first
    winner_mask: Tensor  # (B, k) bool: False where fewer than k candidates were valid
    weights: Tensor  # (B, k) attention weights over the winners (sum to 1 over valid winners)
    scores: Tensor  # (B, N) attention logits over all candidates (-inf where masked)
    summary: Tensor  # (B, d) the conscious state: the winners' values pooled by their weights


class Bottleneck(nn.Module):
    """Selects ``k`` of ``N`` candidates by attention from the current conscious state.

    Inputs: ``conscious`` (B, d), the previous conscious summary (the attention query);
    ``candidates`` (B, N, d); ``mask`` (B, N) bool of valid candidates; optional ``key_bias`` (B, N, d)
    added to the keys only (e.g. a source embedding, so the scorer can prefer a module).
    Outputs: :class:`BottleneckOutput`. With ``k=None`` (or ``k >= N``) every valid candidate wins and
    the summary is exactly full softmax attention; with small ``k`` the softmax runs over the winners only,
    so gradients still reach the winners' scores.
    State: none of its own; the conscious summary is part of the workspace state.

    Arguments: ``dim`` (>= 1) the model width; ``k`` (>= 1, or None for all) the number of winners;
    ``conscious_dim`` (1..dim, default dim) the width of the values pooled into the conscious state, the
    low-dimensional code that is projected back to ``dim``; ``temperature`` (> 0) divides the scores;
    ``recurrent`` (default False): the conscious state is a gated recurrent update of the previous one by the
    pooled winners, ``c_t = GRU(pooled_t, c_{t-1})``, as the paper's ``c_t = C(h_t, c_{t-1}, z_t)`` (the new
    state depends on the last one, not only through the query), instead of the pooled winners alone. A
    thought can then carry what earlier cycles selected (e.g. which hop of a chain it is on).
    """

    def __init__(self, dim: int, k: int | None = 4, conscious_dim: int | None = None, temperature: float = 1.0,
                 recurrent: bool = False):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1")
        if k is not None and k < 1:
            raise ValueError(f"k={k} must be >= 1 (or None for all candidates)")
        conscious_dim = dim if conscious_dim is None else conscious_dim
        if not 1 <= conscious_dim <= dim:
            raise ValueError(f"conscious_dim={conscious_dim} is out of range; allowed: 1 <= conscious_dim <= dim={dim}")
        if not 0 < temperature < float("inf"):  # (NaN fails this test too)
            raise ValueError(f"temperature={temperature} is out of range; allowed: finite and > 0")
        self.dim, self.k, self.conscious_dim, self.temperature = dim, k, conscious_dim, temperature
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, conscious_dim, bias=False)
        self.out = nn.Linear(conscious_dim, dim, bias=False)
        # The auxiliary predictor of the consciousness prior: next conscious state from the current one.
        self.predictor = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        if not isinstance(recurrent, bool):
            raise ValueError(f"recurrent={recurrent!r} is not allowed; allowed: true or false")
        self.recurrent = recurrent
        self.update = nn.GRUCell(dim, dim) if self.recurrent else None  # c_t = GRU(pooled_t, c_{t-1})

    def forward(self, conscious: Tensor, candidates: Tensor, mask: Tensor | None = None,
                key_bias: Tensor | None = None) -> BottleneckOutput:
        return self.select(conscious, candidates, mask, key_bias)[0]

    def select(self, conscious: Tensor, candidates: Tensor, mask: Tensor | None = None,
               key_bias: Tensor | None = None) -> tuple[BottleneckOutput, Tensor]:
        """:meth:`forward`'s output and the winners themselves, ``candidates`` gathered at ``winners``
        (B, k, d) (the workspace broadcasts them; gathered once for both)."""
        B, N, d = candidates.shape
        # score_n = q . W_k (c_n + bias_n) / s = (W_k^T q / s) . (c_n + bias_n): projecting the one query
        # instead of the N candidates costs d^2 per row instead of N d^2 (the same scores up to rounding).
        query = F.linear(conscious, self.query.weight, self.query.bias) @ self.key.weight \
            * (1.0 / (math.sqrt(self.dim) * self.temperature))  # (B, d)
        # (1, d) @ (d, N) per row: the CPU BLAS runs this about twice as fast as (N, d) @ (d, 1)
        scores = torch.bmm(query.unsqueeze(1), candidates.transpose(1, 2)).squeeze(1)  # (B, N)
        if key_bias is not None and key_bias.shape[0] == 1:  # a shared bias: scored once, not expanded to (B, N, d)
            scores = scores + query @ key_bias[0].T
        elif key_bias is not None:
            scores = scores + torch.bmm(query.unsqueeze(1), key_bias.transpose(1, 2)).squeeze(1)
        if mask is not None:
            scores = torch.where(mask, scores, float("-inf"))
        k = N if self.k is None else min(self.k, N)
        top, winners = torch.topk(scores, k, dim=-1, sorted=True)  # (B, k)
        winner_mask = torch.isfinite(top)
        # Softmax over the winners only; a row with no valid candidate gets all-zero weights.
        weights = torch.softmax(torch.where(winner_mask, top, -1e30), dim=-1) * winner_mask
        chosen = torch.gather(candidates, 1, winners.unsqueeze(-1).expand(-1, -1, d))  # (B, k, d)
        # The value map is linear, so pooling the winners first and projecting once is the same code.
        pooled = torch.bmm(weights.unsqueeze(1), chosen).squeeze(1)  # (B, d)
        code = F.linear(pooled, self.value.weight)  # (B, c): the low-dim conscious code
        summary = F.linear(code, self.out.weight)  # (B, d)
        if self.update is not None:
            summary = self.update(summary, conscious)
        return BottleneckOutput(winners, winner_mask, weights, scores, summary), chosen

    def aux_loss(self, previous: Tensor, current: Tensor) -> Tensor:
        """Consciousness-prior objective: predict the next conscious state from the current one.

        ``previous`` and ``current`` are (B, d) summaries of consecutive cycles; the target is detached,
        so the loss shapes the predictor and the representation that feeds it. Returns (B,) per-row MSE.
        """
        first, _, second = self.predictor  # Linear, GELU, Linear; called as functions (no module overhead)
        prediction = F.linear(F.gelu(F.linear(previous, first.weight, first.bias)), second.weight, second.bias)
        return (prediction - current.detach()).square().mean(-1)  # = F.mse_loss(..., reduction="none").mean(-1)

    def surprise(self, previous: Tensor, current: Tensor) -> Tensor:
        """(B,) how unexpected ``current`` was given ``previous``: the aux prediction error, no gradient."""
        with torch.no_grad():
            return self.aux_loss(previous, current)
