"""Semantic long-term memory: the broadcast's facts stored as subject-predicate-object triples, completed from
any two roles (PMI's higher-order store, read through the Tensor Brain's index layer).

Source: PMI ("Understanding AI Cognition: A Neural Module for Inference Inspired by Human Memory Mechanisms"):
long-term memory as a higher-order associative store merged from what working memory holds; Tensor Brain
("The Tensor Brain: A Unified Theory of Perception, Memory and Semantic Decoding"): a representation is turned
into a triple by semantic decoding, one role at a time, and a decoded index writes its embedding back.

This is the workspace's ``long_term`` option ``triple``: the :class:`~cogarch.memory.long_term.TripleMemory`
store behind the memory protocol. Every broadcast item is decoded into a triple of concepts (the index layer's
``decode_triple``) and the clean embeddings of its subject, predicate and object are written into the store.
To propose, the cue is decoded the same way, and each role is completed from the other two: three candidates,
each the role-bound code of a whole fact (``encode_triple``), the completed role cleaned up to its nearest
concept. A question such as (ball, colour, ?) thus proposes (ball, colour, yellow) in the cycle that cues it.
"""

# B batch, k broadcast items, d model dim, C concepts, R = 3 completions (one per missing role)

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cogarch.memory.long_term import TripleMemory, TripleState

__all__ = ["DecodingMemory", "SemanticMemory"]


class DecodingMemory(nn.Module):
    """Base of the memories that decode the broadcast into concept triples through the agent's index layer.

    Holds the wiring both need: ``attach(index_layer)`` (the agent calls it), the ``index_layer`` property
    (an error naming the class until attached), the ids of the ``skip`` concepts, and ``_decode``.
    Subclasses call ``_init_decoding(dim, skip)`` in their ``__init__``.
    """

    def _init_decoding(self, dim: int, skip: Sequence[str]) -> None:
        self.dim, self.skip = dim, tuple(skip)
        self._index: tuple = ()  # the index layer, outside this module's parameters (the agent owns it)
        self.register_buffer("skip_ids", torch.zeros(0, dtype=torch.long), persistent=False)

    def attach(self, index_layer: nn.Module) -> None:
        """Decode and encode triples with ``index_layer`` (an :class:`~cogarch.index_layer.IndexLayer`)."""
        if index_layer.dim != self.dim:
            raise ValueError(f"the index layer has dim {index_layer.dim} but this memory has dim {self.dim}")
        self._index = (index_layer,)
        ids = [index_layer.vocab.index(name) for name in self.skip if name in index_layer.vocab]
        self.skip_ids = torch.tensor(ids, dtype=torch.long, device=index_layer.embeddings.device)

    @property
    def index_layer(self) -> nn.Module:
        if not self._index:
            raise RuntimeError(f"{type(self).__name__} needs an index layer: call attach(index_layer) first (the "
                               "workspace agent does it when it is built)")
        return self._index[0]

    def _decode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Concept ids (..., 3) of the triples in x (..., d), and whether each role is a real concept (..., 3)."""
        ids, _ = self.index_layer.decode_triple(x.reshape(-1, self.dim))
        ids = ids.view(*x.shape[:-1], 3)
        return ids, ~torch.isin(ids, self.skip_ids)


class SemanticMemory(DecodingMemory):
    """Triples decoded from the broadcast, stored in a 3-way tensor store, completed from two roles.

    Inputs: ``propose(state, query (B, d))``; ``receive(state, broadcast (B, k, d), mask (B, k) | None)``.
    Outputs: ``propose`` -> candidates (B, 3, d) (role r of candidate r completed), mask (B, 3) and
    ``{"completed": (B, 3) long concept of each completed role, "match": (B, 3) its cosine to that concept}``;
    ``receive`` -> new state and ``{"stored": (B,) how many triples this cycle wrote}``.
    State: :class:`~cogarch.memory.long_term.TripleState` (constant size, 3 r² d floats per example).

    The module needs the agent's index layer (``attach(index_layer)``; the workspace agent does it) to decode
    and encode triples; it holds no parameters of its own (the key projection of the store is fixed), so the
    index layer's embeddings are its only learned part, trained through the proposed candidates.

    A triple holding a ``skip`` concept (the fact stream's ``<none>`` and the question mark ``?``) is never
    stored, and no role is completed from one. A completion is proposed when the store returns a vector within
    ``min_match`` cosine of some concept (a stored association comes back at cosine ~1, crosstalk far lower).

    Args:
        dim: model dimension d, >= 1.
        key_dim: r, the store's key dimension, >= 1 (capacity grows with r², cost with r² d).
        decay, capacity, persistent: as :class:`~cogarch.memory.long_term.TripleMemory` (capacity in triples).
        min_match: cosine in [0, 1) a completion needs to its nearest concept to be proposed.
        skip: concept names that are never stored nor completed from.
    """

    source = "long_term"

    def __init__(self, dim: int, key_dim: int = 32, decay: float = 0.0, capacity: float | None = 256,
                 persistent: bool = False, min_match: float = 0.5, skip: Sequence[str] = ("<none>", "?")):
        super().__init__()
        if not 0 <= min_match < 1:
            raise ValueError(f"min_match must be in [0, 1), got {min_match}")
        self.store = TripleMemory(dim, key_dim=key_dim, decay=decay, capacity=capacity, persistent=persistent)
        self._init_decoding(dim, skip)
        self.min_match = float(min_match)

    def initial_state(self, batch_size: int, device=None) -> TripleState:
        return self.store.initial_state(batch_size, device=device)

    def end_episode(self, state: TripleState) -> TripleState:
        return self.store.end_episode(state)

    def receive(self, state: TripleState, broadcast: Tensor, mask: Tensor | None = None,
                inplace: bool = False) -> tuple[TripleState, dict]:
        """Store the triple decoded from each valid broadcast item (B, k, d) (writes carry no gradient)."""
        with torch.no_grad():
            ids, real = self._decode(broadcast.detach())  # (B, k, 3)
            ok = real.all(-1) if mask is None else real.all(-1) & mask  # (B, k)
            e = self.index_layer.embeddings.detach()[ids]  # (B, k, 3, d)
            new = self.store.write(state, e[..., 0, :], e[..., 1, :], e[..., 2, :], ok)
        return new, {"stored": ok.sum(-1)}

    def propose(self, state: TripleState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Decode the cue (B, d); complete each role from the other two: candidates (B, 3, d), mask (B, 3)."""
        layer = self.index_layer
        with torch.no_grad():
            ids, real = self._decode(query.detach())  # (B, 3)
            e = layer.embeddings.detach()[ids]  # (B, 3, d)
            s, p, o = e.unbind(1)
            completions = torch.stack([self.store.complete(state, p=p, o=o), self.store.complete(state, s=s, o=o),
                                       self.store.complete(state, s=s, p=p)], dim=1)  # (B, 3, d) role r completed
            match = F.cosine_similarity(completions.unsqueeze(2), layer.embeddings.detach()[None, None], dim=-1)
            best, concept = match.max(-1)  # (B, 3) the nearest concept of each completion and its cosine
            given = torch.stack([real[:, 1] & real[:, 2], real[:, 0] & real[:, 2], real[:, 0] & real[:, 1]], dim=1)
            mask = given & (best > self.min_match) & ~torch.isin(concept, self.skip_ids) & (state.count > 0)[:, None]
            eye = torch.eye(3, dtype=torch.bool, device=ids.device)  # (3, 3) row r: role r is the completed one
            triples = torch.where(eye, concept.unsqueeze(-1), ids.unsqueeze(1))  # (B, 3, 3) the proposed facts
        candidates = layer.encode_triple(triples.view(-1, 3)).view(*triples.shape[:2], self.dim)  # (B, 3, d)
        return candidates * mask.unsqueeze(-1), mask, {"completed": concept, "match": best}
