"""Neural long-term memory that learns at test time (Titans; Miras).

The memory is a small MLP ``M`` whose weights are per-stream fast state. Every token ``x_t`` is written by
one step of gradient descent on the associative loss ``l(M; x_t) = ||M(k_t) - v_t||^2``,
with momentum over past surprise and a forgetting gate (Titans, section 3.1):

    S_t = eta_t * S_{t-1} - theta_t * clip(grad l(M_{t'}; x_t))      surprise (momentum)
    M_t = (1 - alpha_t) * M_{t-1} + S_t                               forgetting gate

``t'`` is the start of the chunk holding ``t`` (Titans, "how to parallelize the long-term memory
training"): all gradients of a chunk are taken at the chunk-start weights, then momentum and decay run as
the recurrence over the chunk's tokens. Each token's gradient of a layer is an outer product (the layer's
input times the loss gradient at its output), and the recurrence is linear, so a chunk is computed as a
few batched matmuls without forming any per-token gradient matrix (see ``_update``).
Chunks are aligned to the start of each ``update`` call. Reading is a forward pass without update,
``y_t = M*(q_t)``. Keys and queries are l2-normalised and the MLP uses SiLU, as in Titans'
architectural details.
"""

# B batch, T tokens (time), c chunk length, k broadcast winners, d model dim, h memory hidden dim

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["NeuralMemory", "NeuralMemoryState"]


class NeuralMemoryState(NamedTuple):
    """Per-stream fast state of a `NeuralMemory`."""

    weights: tuple[Tensor, ...]  # the memory MLP's weight matrices, each (B, d_in, d_out)
    momentum: tuple[Tensor, ...]  # S, the past surprise, same shapes as weights
    step: Tensor  # (B,) long: valid tokens presented so far
    nan_count: Tensor  # (B,) long: chunks whose update was refused as non-finite


def _mlp(weights: tuple[Tensor, ...], x: Tensor) -> Tensor:
    """M(x): matmuls with SiLU between layers. Works batched ((B, T, d) @ (B, d, h)) and unbatched."""
    for i, w in enumerate(weights):
        x = x @ w
        if i < len(weights) - 1:
            x = F.silu(x)
    return x


def _token_gradients(weights: tuple[Tensor, ...], keys: Tensor, values: Tensor) -> tuple[list, list, Tensor]:
    """Per-token gradients of the associative loss ||M(k_t) - v_t||^2 at shared weights, in factored form.

    keys, values (B, c, d); weights as in ``_mlp``. The gradient of token t w.r.t. layer i is the outer
    product ``inputs[i][:, t] ⊗ deltas[i][:, t]``: the layer's input (B, c, d_in) and the gradient at its
    output (B, c, d_out), back-propagated by hand (the formulas autograd uses for matmul, SiLU and the
    squared error). Returns (inputs, deltas, loss (B, c))."""
    inputs, pre = [], []
    h = keys
    for i, w in enumerate(weights):
        inputs.append(h)
        z = h @ w  # (B, c, d_out)
        pre.append(z)
        h = F.silu(z) if i < len(weights) - 1 else z
    error = h - values
    delta = 2 * error  # d loss / d output
    deltas = [delta]
    for i in range(len(weights) - 1, 0, -1):
        sig = torch.sigmoid(pre[i - 1])
        delta = (delta @ weights[i].transpose(1, 2)) * (sig * (1 + pre[i - 1] * (1 - sig)))  # silu'
        deltas.append(delta)
    return inputs, deltas[::-1], error.pow(2).sum(-1)


def _transfer(gain: Tensor) -> Tensor:
    """The recurrence x_t = gain_t x_{t-1} + u_t (t = 0..n-1, x_{-1} = 0) as a matrix: x_t = sum_j P[t, j] u_j
    with P[t, j] = prod_{j < s <= t} gain_s for t >= j, else 0. gain (B, n) -> P (B, n, n)."""
    n = gain.shape[1]
    later = torch.ones(n, n, dtype=torch.bool, device=gain.device).tril(-1)  # [t, j]: s = t is in (j, t]
    return torch.where(later, gain[:, :, None], 1.0).cumprod(1).tril()


class NeuralMemory(nn.Module):
    """Titans' neural long-term memory: an MLP written by test-time gradient steps on surprise.

    Source: Behrouz, Zhong, Mirrokni, "Titans: Learning to Memorize at Test Time" (2024); the retention
    gate and the associative-memory view from Behrouz et al., "It's All Connected: ... Miras" (2025).

    Inputs: ``update(state, x (B, T, d), mask (B, T) | None)`` writes T tokens; ``retrieve(state,
    x (B, d) | (B, T, d))`` and ``surprise(state, x)`` read; the workspace protocol ``propose(state,
    query (B, d))`` / ``receive(state, broadcast (B, k, d), mask (B, k))``.
    Outputs: retrievals ``M*(W_Q x)`` in model space; ``propose`` gives one candidate (B, 1, d).
    State: `NeuralMemoryState` — per-stream MLP weights and momentum, ``step`` and ``nan_count`` (B,).

    Slow parameters (gradient descent across episodes): W_K, W_V, W_Q, the memory's initial weights and,
    with ``adaptive_gates``, the gate projections. Fast writes happen on the state only.

    Args:
        dim: model dim d (>= 1).
        hidden: hidden width h of the memory MLP (>= 1; default 2 * dim).
        depth: number of MLP layers (>= 1; 1 is a linear memory, Titans uses >= 2).
        chunk_size: tokens whose gradients are taken at the same chunk-start weights (>= 1).
        lr: theta, the step size of the surprise (>= 0).
        momentum: eta, the decay of past surprise (in [0, 1]).
        decay: alpha, the forgetting gate (in [0, 1]; 1 erases everything before the current token).
        max_norm: each token's gradient is clipped to this global norm over all weights (> 0, or None to
            turn clipping off).
        adaptive_gates: if True, theta_t, eta_t, alpha_t are data-dependent, ``g * 2 * sigmoid(w . x_t)``
            with ``g`` the constant above and ``w`` zero-initialised (so they start at the constants;
            eta and alpha clamped to <= 1). If False (default) they are the constants.
        detach_writes: if True (default) writes run under ``torch.no_grad()``: the new state carries no
            graph, so W_K, W_V and the gates learn nothing from writes (W_Q and the initial weights still
            learn through ``propose``). If False, gradients flow through the inner updates into all slow
            parameters (Titans' outer loop; use with truncated streams).
        persistent: if True (default) the weights survive ``end_episode``; if False they reset.

    The defaults (lr 0.4, momentum 0.5, max_norm 1.0) were picked so that 1-64 random key-value tokens at
    d = 128 fall below 40% of their first loss by the fifth presentation and below 10% by the tenth, without
    oscillating. Decay 0 means no forgetting (use decay > 0 or adaptive gates for unbounded streams).
    The NaN guard works per chunk: a stream whose chunk update is non-finite keeps its weights and
    momentum and counts the chunk in ``nan_count``; the other streams and chunks go on.
    (With ``detach_writes=False`` a NaN input can still put NaN into the slow gradients; the guard protects
    the state, not the outer loop.)
    """

    source = "neural"

    def __init__(
        self,
        dim: int = 128,
        hidden: int | None = None,
        depth: int = 2,
        chunk_size: int = 16,
        lr: float = 0.4,
        momentum: float = 0.5,
        decay: float = 0.0,
        max_norm: float | None = 1.0,
        adaptive_gates: bool = False,
        detach_writes: bool = True,
        persistent: bool = True,
    ):
        super().__init__()
        hidden = 2 * dim if hidden is None else hidden
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth), ("chunk_size", chunk_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not lr >= 0 or lr == float("inf"):
            raise ValueError(f"lr must be finite and >= 0, got {lr!r}")
        for name, value in (("momentum", momentum), ("decay", decay)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {max_norm!r}")
        self.dim, self.hidden, self.depth, self.chunk_size = dim, hidden, depth, chunk_size
        self.lr, self.momentum, self.decay, self.max_norm = float(lr), float(momentum), float(decay), max_norm
        self.adaptive_gates, self.detach_writes, self.persistent = adaptive_gates, detach_writes, persistent

        self.to_key = nn.Linear(dim, dim, bias=False)  # W_K
        self.to_value = nn.Linear(dim, dim, bias=False)  # W_V
        self.to_query = nn.Linear(dim, dim, bias=False)  # W_Q
        sizes = [dim] + [hidden] * (depth - 1) + [dim]
        self.init_weights = nn.ParameterList(
            nn.Parameter(torch.randn(d_in, d_out) / d_in**0.5) for d_in, d_out in zip(sizes[:-1], sizes[1:])
        )
        # theta, eta, alpha projections (zero-init: the gates start at the constants)
        self.to_gates = nn.Linear(dim, 3, bias=False) if adaptive_gates else None
        if self.to_gates is not None:
            nn.init.zeros_(self.to_gates.weight)

    # ---- state -------------------------------------------------------------------------------------

    def initial_state(self, batch_size: int, device=None) -> NeuralMemoryState:
        """The learned initial weights for every stream, zero momentum, zero counters."""
        # copies of the parameters (contiguous, for saving) that keep their graph: reads before the first
        # write train the initial weights; detached writes then replace them
        weights = tuple(w.to(device).expand(batch_size, *w.shape).clone() for w in self.init_weights)
        momentum = tuple(torch.zeros_like(w, requires_grad=False) for w in weights)
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return NeuralMemoryState(weights, momentum, zeros, zeros.clone())

    def end_episode(self, state: NeuralMemoryState) -> NeuralMemoryState:
        """Persistent: keep the weights, zero the momentum (the old episode's surprise does not carry
        over). Non-persistent: back to the initial weights. ``nan_count`` is kept either way."""
        batch, device = state.step.shape[0], state.step.device
        if not self.persistent:
            return self.initial_state(batch, device)._replace(nan_count=state.nan_count)
        return state._replace(momentum=tuple(torch.zeros_like(s) for s in state.momentum))

    # ---- reading -----------------------------------------------------------------------------------

    def retrieve(self, state: NeuralMemoryState, x: Tensor) -> Tensor:
        """y = M*(q), q = normalize(W_Q x): x (B, d) -> (B, d) or (B, T, d) -> (B, T, d); no update."""
        single = x.dim() == 2
        q = F.normalize(self.to_query(x), dim=-1)
        q = rearrange(q, "b d -> b 1 d") if single else q  # (B, T, d)
        y = _mlp(state.weights, q)  # (B, T, d)
        return rearrange(y, "b 1 d -> b d") if single else y

    def surprise(self, state: NeuralMemoryState, x: Tensor) -> Tensor:
        """The associative loss ||M(k_t) - v_t||^2 at the current weights: x (B, T, d) -> (B, T)
        ((B, d) -> (B,)); no update."""
        keys, values = F.normalize(self.to_key(x), dim=-1), self.to_value(x)
        single = x.dim() == 2
        keys = rearrange(keys, "b d -> b 1 d") if single else keys
        values = rearrange(values, "b d -> b 1 d") if single else values
        loss = (_mlp(state.weights, keys) - values).pow(2).sum(-1)  # (B, T)
        return rearrange(loss, "b 1 -> b") if single else loss

    # ---- writing -----------------------------------------------------------------------------------

    def _gates(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """theta, eta, alpha per token: x (B, T, d) -> (B, T) each."""
        ones = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        theta, eta, alpha = ones * self.lr, ones * self.momentum, ones * self.decay
        if self.to_gates is not None:
            scale = 2 * torch.sigmoid(self.to_gates(x))  # (B, T, 3), 1 at init
            theta = theta * scale[..., 0]
            eta, alpha = (eta * scale[..., 1]).clamp(max=1), (alpha * scale[..., 2]).clamp(max=1)
        return theta, eta, alpha

    def update(
        self, state: NeuralMemoryState, x: Tensor, mask: Tensor | None = None
    ) -> tuple[NeuralMemoryState, dict]:
        """Write T tokens x (B, T, d) in chunks of ``chunk_size``; masked tokens (mask (B, T) False) are
        skipped, i.e. the result equals writing only the valid tokens in order.

        Returns the new state and info: "loss" (B, T) each token's associative loss at its chunk-start
        weights (0 where masked), "surprise" (B,) its mean over valid tokens, "grad_norm" (B, T) the
        unclipped gradient norms, "nan_refused" (B,) bool: some chunk's update was non-finite and refused.
        """
        if self.detach_writes:
            with torch.no_grad():
                return self._update(state, x, mask)
        return self._update(state, x, mask)

    def _update(self, state: NeuralMemoryState, x: Tensor, mask: Tensor | None) -> tuple[NeuralMemoryState, dict]:
        batch, length, _ = x.shape
        if length == 0:
            zeros = x.new_zeros(batch, 0)
            return state, {"loss": zeros, "surprise": x.new_zeros(batch), "grad_norm": zeros,
                           "nan_refused": torch.zeros(batch, dtype=torch.bool, device=x.device)}
        valid = torch.ones(batch, length, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        order = None  # no token is masked: nothing to move
        if mask is not None and not bool(valid.all()):
            # Skipping = moving the valid tokens to the front (stable); the trailing masked ones make no step.
            order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # (B, T)
            x = torch.gather(x, 1, rearrange(order, "b t -> b t 1").expand_as(x))
            valid = torch.gather(valid, 1, order)
            x = torch.where(rearrange(valid, "b t -> b t 1"), x, torch.zeros_like(x))  # (B, T, d)

        keys, values = F.normalize(self.to_key(x), dim=-1), self.to_value(x)  # (B, T, d)
        theta, eta, alpha = self._gates(x)  # (B, T) each
        # A masked (trailing) token is no step at all: no momentum decay, no surprise, no forgetting.
        on = valid.to(x.dtype)
        eta = torch.where(valid, eta, 1.0)
        retain = torch.where(valid, 1 - alpha, 1.0)

        weights, momentum = state.weights, state.momentum
        refused = torch.zeros(batch, dtype=torch.bool, device=x.device)
        losses, norms = [], []
        for start in range(0, length, self.chunk_size):
            part = slice(start, start + self.chunk_size)
            inputs, deltas, loss = _token_gradients(weights, keys[:, part], values[:, part])  # loss (B, c)
            # ||a ⊗ g||_F = ||a|| ||g||: each token's gradient norm over all layers, from the factors
            norm = sum(a.pow(2).sum(-1) * g.pow(2).sum(-1) for a, g in zip(inputs, deltas)).sqrt()  # (B, c)
            step = theta[:, part] * on[:, part]  # (B, c) the surprise step size theta_t of each token
            if self.max_norm is not None:  # same rule as torch.nn.utils.clip_grad_norm_
                step = step * (self.max_norm / (norm + 1e-6)).clamp(max=1.0)
            # The recurrence over the chunk's tokens t = 1..c, with the chunk-start values as "token" 0,
            #     S_t = eta_t S_{t-1} - step_t G_t,      W_t = retain_t W_{t-1} + on_t S_t,
            # is linear, so S_c = m S_0 - sum_t n_t G_t and W_c = p W_0 + q S_0 - sum_t r_t G_t with scalar
            # coefficients per stream: from P = _transfer(eta), S_t = P[t, 0] S_0 - sum_u P[t, u] step_u G_u,
            # and W_c = p W_0 + sum_t R_t on_t S_t with R_t = prod_{s > t} retain_s (the last row of
            # _transfer(retain)). They are worked out on (B, c + 1) numbers; the weights are touched once.
            P = _transfer(F.pad(eta[:, part], (1, 0), value=1.0))  # (B, c + 1, c + 1)
            R = _transfer(F.pad(retain[:, part], (1, 0), value=1.0))[:, -1]  # (B, c + 1)
            coef = torch.bmm((R * F.pad(on[:, part], (1, 0))).unsqueeze(1), P).squeeze(1)  # (B, c + 1)
            m, p, q = (v[:, None, None] for v in (P[:, -1, 0], R[:, 0], coef[:, 0]))  # (B, 1, 1) each
            n, r = (-(v * step).unsqueeze(1) for v in (P[:, -1, 1:], coef[:, 1:]))  # (B, 1, c), with the minus
            new_w, new_s = [], []
            for w0, s0, a, g in zip(weights, momentum, inputs, deltas):
                a_t = a.transpose(1, 2)  # (B, d_in, c)
                # sum_t n_t G_t = a^T diag(n) g: one batched matmul, added into the fresh scaled copy
                new_s.append(torch.mul(s0, m).baddbmm_(a_t * n, g))
                kept = w0 if self.decay == 0 else w0 * p  # without forgetting p is exactly 1
                new_w.append(torch.addcmul(kept, s0, q).baddbmm_(a_t * r, g))
            # NaN guard: a stream whose new weights or momentum are non-finite keeps the old ones. The sum over
            # a stream is finite when all its entries are (one cheap pass); only otherwise is each entry checked.
            ok = torch.stack([t.sum((1, 2)) for t in new_w + new_s]).isfinite().all(0)  # (B,)
            if not bool(ok.all()):
                ok = torch.stack([torch.isfinite(t.flatten(1)).all(-1) for t in new_w + new_s]).all(0)
                for new, old in zip(new_w + new_s, weights + momentum):
                    new[~ok] = old[~ok]
            weights, momentum = tuple(new_w), tuple(new_s)
            refused |= ~ok
            losses.append(loss)
            norms.append(norm)
            state = state._replace(nan_count=state.nan_count + (~ok).long())

        # back to the caller's token order; masked tokens report 0
        loss, norm = torch.cat(losses, 1) * valid, torch.cat(norms, 1) * valid  # (B, T)
        if order is not None:
            inverse = torch.argsort(order, dim=1)
            loss, norm = torch.gather(loss, 1, inverse), torch.gather(norm, 1, inverse)
        count = valid.sum(1)
        new_state = NeuralMemoryState(weights, momentum, state.step + count, state.nan_count)
        info = {
            "loss": loss,
            "surprise": loss.sum(1) / count.clamp(min=1),
            "grad_norm": norm,
            "nan_refused": refused,
        }
        return new_state, info

    # ---- workspace protocol ------------------------------------------------------------------------

    def propose(self, state: NeuralMemoryState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """One candidate, the memory's answer M*(W_Q query): (B, 1, d). It always answers (before any write
        the answer comes from the learned initial weights); the mask is False only for non-finite answers."""
        y = self.retrieve(state, query)  # (B, d)
        mask = torch.isfinite(y).all(-1, keepdim=True)  # (B, 1)
        return rearrange(y, "b d -> b 1 d"), mask, {"readout_norm": y.detach().norm(dim=-1)}

    def receive(
        self, state: NeuralMemoryState, broadcast: Tensor, mask: Tensor | None = None
    ) -> tuple[NeuralMemoryState, dict]:
        """Write the k broadcast winners (B, k, d) as a token sequence (masked winners skipped); info as in
        ``update`` ("surprise" (B,) is the mean associative loss of the written winners)."""
        return self.update(state, broadcast, mask)
