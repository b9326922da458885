"""The index layer of the Tensor Brain: concepts as indices and embeddings, and semantic decoding.

Source: Tresp et al., "The Tensor Brain: Semantic Decoding for Perception and Memory". Every concept has
two representations: an *index* (one unit per concept, here position ``c`` of the vocabulary) and an
*embedding* ``E[c]`` (a vector in the representation layer, the "blackboard" that all modules share).
Bottom-up, the representation ``q`` activates a distribution over indices; top-down, a chosen index writes
its embedding back into the representation. Semantic decoding turns ``q`` into a subject-predicate-object
triple one role at a time, each decision conditioning the next through that top-down write.

Triples live in ``q`` as a sum of role-bound embeddings: role ``r`` has a fixed random +-1 vector ``R[r]``
and binding is the elementwise product (Hadamard/MAP binding), so unbinding is multiplying by ``R[r]``
again (``R[r] * R[r] = 1``) and the other two roles become zero-mean crosstalk.
"""

# B batch, C concepts, d model dim, r roles (3: subject, predicate, object)

from __future__ import annotations

import math
from collections.abc import Sequence

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROLE_SEED = 20240317  # role vectors are a fixed code, the same in every model of the same dim


class IndexLayer(nn.Module):
    """Concept indices with embeddings; bottom-up recognition, top-down writes, SPO semantic decoding.

    Source: Tresp et al., The Tensor Brain (the index layer and the representation layer).

    Inputs / Outputs (all batch-first):
        ``bottom_up(q (B, d)) -> probs (B, C)``: ``softmax(sqrt(d) * q @ E^T / temperature)``.
        ``top_down(index (B,) long | probs (B, C)) -> (B, d)``: the chosen embedding, or the expected one.
        ``bind(x (..., d), role) / unbind(x (..., d), role) -> (..., d)``: elementwise product with ``R[role]``.
        ``encode_triple(ids (B, 3)) -> (B, d)``: ``sum_r bind(E[ids[:, r]], r)``.
        ``decode_triple(q (B, d)) -> ids (B, 3), probs (B, 3, C)``: subject, then predicate, then object.
        ``names(ids) -> list[tuple[str, ...]]``: vocabulary words of ids.

    State: none. The layer is memoryless (the representation ``q`` is passed in); ``E`` is a slow weight.

    Scale: embeddings start ~ N(0, 1/d) (norm about 1, two distinct concepts have cosine about N(0, 1/d)).
    The logits carry a fixed gain ``sqrt(d)`` so that at ``temperature=1`` a concept's own embedding scores
    about ``sqrt(d)`` and a random other one about N(0, 1): at d=256 with 500 concepts the own concept
    gets p > 0.99. ``temperature`` divides the logits (lower = sharper).

    Args:
        vocab: the concept names (e.g. the env's ``vocab``); id ``c`` is ``vocab[c]``. Non-empty, unique strings.
        dim: d, the representation width; ``dim >= 1``.
        temperature: softmax temperature of ``bottom_up``; ``temperature > 0``.
        roles: number of binding roles (3 for s, p, o); ``roles >= 1`` (``encode_triple`` needs ``>= 3``).
    """

    def __init__(self, vocab: Sequence[str], dim: int, temperature: float = 1.0, roles: int = 3):
        super().__init__()
        vocab = tuple(vocab)
        if len(vocab) == 0:
            raise ValueError("vocab must hold at least 1 concept name; got an empty sequence")
        if not all(isinstance(v, str) for v in vocab):
            raise ValueError("vocab must hold strings only")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab names must be unique")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim={dim!r} is out of range; allowed: integer dim >= 1")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature={temperature!r} is out of range; allowed: 0 < temperature < inf")
        if isinstance(roles, bool) or not isinstance(roles, int) or roles < 1:
            raise ValueError(f"roles={roles!r} is out of range; allowed: integer roles >= 1")
        self.vocab = vocab
        self.dim = dim
        self.temperature = float(temperature)
        self.num_roles = roles
        self.scale = math.sqrt(dim)  # fixed logit gain, see the class docstring
        self.embeddings = nn.Parameter(torch.randn(len(vocab), dim) / math.sqrt(dim))  # (C, d)
        gen = torch.Generator().manual_seed(ROLE_SEED + dim)
        signs = torch.randint(0, 2, (roles, dim), generator=gen).float() * 2 - 1
        self.register_buffer("role_vectors", signs)  # (r, d), entries +-1

    @property
    def num_concepts(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ bottom-up / top-down
    def logits(self, q: Tensor, temperature: float | None = None) -> Tensor:
        """Index-layer activations before the softmax: ``sqrt(d) * q @ E^T / temperature``; (B, C)."""
        t = self.temperature if temperature is None else temperature
        return F.linear(q, self.embeddings) * (self.scale / t)  # q @ E^T (as einsum "b d, c d -> b c", faster)

    def bottom_up(self, q: Tensor, temperature: float | None = None) -> Tensor:
        """p(concept | q): (B, d) -> (B, C). ``temperature`` overrides the layer's default for this call."""
        return self.logits(q, temperature).softmax(dim=-1)

    def top_down(self, index_or_probs: Tensor) -> Tensor:
        """The embedding a chosen index writes into the representation layer.

        ``index`` (B,) integer -> ``E[index]`` (B, d); ``probs`` (B, C) float -> ``probs @ E`` (B, d), the
        expected embedding (a one-hot gives exactly the embedding; differentiable w.r.t. the probs).
        """
        x = index_or_probs
        if not torch.is_floating_point(x):
            if x.dim() != 1:
                raise ValueError(f"an index must have shape (B,), got {tuple(x.shape)}")
            return self.embeddings[x]  # (B, d)
        if x.dim() != 2 or x.shape[-1] != self.num_concepts:
            raise ValueError(f"probs must have shape (B, {self.num_concepts}), got {tuple(x.shape)}")
        return einops.einsum(x, self.embeddings, "b c, c d -> b d")

    # ------------------------------------------------------------------ role binding
    def _role(self, role: int) -> Tensor:
        if not 0 <= role < self.num_roles:
            raise ValueError(f"role={role!r} is out of range; allowed: 0 <= role < {self.num_roles}")
        return self.role_vectors[role]  # (d,)

    def bind(self, x: Tensor, role: int) -> Tensor:
        """Bind ``x`` (..., d) to ``role``: elementwise product with the role's +-1 vector."""
        return x * self._role(role)

    def unbind(self, x: Tensor, role: int) -> Tensor:
        """Inverse of ``bind`` (the same product, since each entry squared is 1)."""
        return x * self._role(role)

    # ------------------------------------------------------------------ triples
    def encode_triple(self, ids: Tensor) -> Tensor:
        """(B, 3) concept ids (subject, predicate, object) -> (B, d) = sum of role-bound embeddings."""
        if self.num_roles < 3:
            raise ValueError(f"encode_triple needs roles >= 3; this layer has roles={self.num_roles}")
        if ids.dim() != 2 or ids.shape[-1] != 3:
            raise ValueError(f"ids must have shape (B, 3), got {tuple(ids.shape)}")
        if not torch.compiler.is_compiling():  # (a host sync; a compiled graph leaves the check to its caller)
            outside = (ids < 0) | (ids >= self.num_concepts)
            if bool(outside.any()):
                raise ValueError(f"concept id {int(ids[outside][0])} is outside the vocabulary; allowed: "
                                 f"0..{self.num_concepts - 1} ({self.num_concepts} concepts)")
        e = self.embeddings[ids]  # (B, 3, d)
        # sum_r e_r * R_r: the product and sum directly (einsum "b r d, r d -> b d" runs as a batched matmul with
        # one-column operands, several times slower forward and backward)
        return (e * self.role_vectors[:3]).sum(-2)

    def decode_triple(
        self, q: Tensor, explain_away: bool = True, temperature: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """Semantic decoding: read a subject, then a predicate, then an object out of ``q`` (B, d).

        For each role: unbind it from the residual, ``bottom_up`` -> probs (B, C), take the most probable
        index, then write that index's role-bound embedding top-down into the representation, here as an
        explain-away (subtract it from the residual) so the next decision sees only what is left. What is
        subtracted is the embedding's least-squares share of the residual, ``(u . e / |e|^2) e`` bound to the
        role (u the unbound residual, e the embedding): 1 e for a plain sum of role-bound embeddings, and the same
        share at any scale of ``q``, so a rescaled representation (the workspace's RMS-normalised candidates)
        decodes as the sum does. With ``explain_away=False`` every role is read from the untouched ``q`` (an
        ablation).

        Returns ids (B, 3) long and probs (B, 3, C). Decisions are greedy (argmax), so ``ids`` carries no
        gradient; ``probs`` is differentiable w.r.t. ``q`` and the embeddings.
        """
        if self.num_roles < 3:
            raise ValueError(f"decode_triple needs roles >= 3; this layer has roles={self.num_roles}")
        residual = q  # (B, d)
        ids, probs = [], []
        for role in range(3):
            unbound = self.unbind(residual, role)  # (B, d)
            p = self.bottom_up(unbound, temperature)  # (B, C)
            c = p.argmax(dim=-1)  # (B,)
            ids.append(c)
            probs.append(p)
            if explain_away:
                residual = self.explain_away(residual, c, role, unbound)
        return torch.stack(ids, dim=1), torch.stack(probs, dim=1)

    def explain_away(self, residual: Tensor, index: Tensor, role: int, unbound: Tensor | None = None) -> Tensor:
        """``residual`` (B, d) without the share of concept ``index`` (B,) in ``role``: minus ``(u . e / |e|^2) e``
        bound to the role (u the residual unbound from it, ``unbound`` if the caller has it, e the concept's
        embedding), the least-squares amount, so the same share goes at any scale of the residual. One step of
        :meth:`decode_triple`."""
        e = self.top_down(index)  # (B, d)
        u = self.unbind(residual, role) if unbound is None else unbound
        share = (u * e).sum(-1, keepdim=True)  # (B, 1)
        share = share / e.square().sum(-1, keepdim=True).clamp_min(1e-12)
        return residual - share * self.bind(e, role)

    # ------------------------------------------------------------------ words
    def names(self, ids) -> list[tuple[str, ...]]:
        """Vocabulary words of ``ids``: (B, r) -> B tuples of r words; (B,) -> B one-word tuples.

        Accepts a tensor, a numpy array or nested lists of ints.
        """
        t = torch.as_tensor(ids)
        if t.dim() == 1:
            t = t[:, None]
        if t.dim() != 2:
            raise ValueError(f"ids must have shape (B,) or (B, r), got {tuple(t.shape)}")
        if t.numel() and (t.min() < 0 or t.max() >= self.num_concepts):
            raise ValueError(f"ids must lie in 0..{self.num_concepts - 1}")
        return [tuple(self.vocab[i] for i in row) for row in t.tolist()]

    def extra_repr(self) -> str:
        return f"concepts={self.num_concepts}, dim={self.dim}, temperature={self.temperature}, roles={self.num_roles}"
