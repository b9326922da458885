"""Spreading activation over a semantic network of the broadcast's facts: intersection search.

Sources: Quillian, "Semantic memory" (1968) and Collins & Loftus, "A spreading-activation theory of semantic
processing" (1975): concepts are nodes, facts are labelled links, and a question relating two concepts is
answered by spreading activation from them through the links until the activations intersect; the path where
they meet relates the two. Here activation spreads from the cue's target concepts backwards along the stored
links, weakened by ``decay`` per link, and the memory proposes the stored fact that leads from the cue's
subject toward a target by the strongest (hence shortest) path: "from v3, which edge leads toward v9?" recalls
(v3, edge, v5) when v5 is on a shortest path from v3 to v9. Facts enter as SemanticMemory's do (Tensor Brain
semantic decoding of each broadcast item through the agent's index layer, cogarch.memory.semantic).

This is a built-in search: the spread itself has no parameters and is not learned. What an agent learns is
to perceive facts so that they decode, to let the recalled fact win the workspace and to read its object.
It is the workspace's ``long_term`` option ``spreading``.
"""

# B batch, k broadcast items, N stored links, C concepts, d model dim

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from cogarch.memory.semantic import DecodingMemory

__all__ = ["LinkMemory", "SpreadingMemory", "SpreadingState"]


class SpreadingState(NamedTuple):
    """The semantic network of one episode per stream (batch-first), a ring of links."""

    links: Tensor  # (B, N, 3) long: (subject, predicate, object) concept ids of each stored fact; -1 = empty
    count: Tensor  # (B,) long: facts written so far (the next one goes to row count % N)


class LinkMemory(DecodingMemory):
    """Base of the memories that keep an episode's facts as links between concepts (a semantic network).

    Receive: every valid broadcast item is decoded into a triple (Tensor Brain semantic decoding through the
    agent's index layer); one whose subject and object are real concepts (no ``skip`` concept: a question
    "(v3, v9, ?)" is not a link) and that is not stored yet (the ring held it when the cycle began, or an earlier
    item of the cycle is the same fact) is added, in broadcast order, to a ring of ``capacity`` links. The
    predicate is stored as decoded. Decoding and the links carry no gradient. Subclasses read the links in
    ``propose``; they call ``_init_links(dim, capacity, persistent, skip)`` in their ``__init__``.
    State: :class:`SpreadingState` ``(links (B, N, 3) long, count (B,) long)``; constant size.
    """

    def _init_links(self, dim: int, capacity: int, persistent: bool, skip: Sequence[str],
                    perceived_only: bool = False) -> None:
        for name, value in (("dim", dim), ("capacity", capacity)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is out of range; allowed: integer >= 1")
        if not isinstance(persistent, bool):
            raise ValueError(f"persistent={persistent!r} is not allowed; allowed: true or false")
        if not isinstance(perceived_only, bool):
            raise ValueError(f"perceived_only={perceived_only!r} is not allowed; allowed: true or false")
        self._init_decoding(dim, skip)
        self.capacity, self.persistent = capacity, persistent
        # store only what was perceived: the workspace then passes receive(..., perceived=) (which winners came
        # from the sensory buffer), so a recalled or composed item that happens to decode into a triple is not
        # stored as a fact
        self.perceived_only = self.wants_perceived = perceived_only

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device=None) -> SpreadingState:
        links = torch.full((batch_size, self.capacity, 3), -1, dtype=torch.long, device=device)
        return SpreadingState(links, torch.zeros(batch_size, dtype=torch.long, device=device))

    def end_episode(self, state: SpreadingState) -> SpreadingState:
        if self.persistent:
            return state
        return SpreadingState(torch.full_like(state.links, -1), torch.zeros_like(state.count))

    # ------------------------------------------------------------------ write
    @staticmethod
    def _earlier(k: int, device) -> Tensor:
        """(k, k) bool: [i, j] is True for j < i."""
        return torch.ones(k, k, dtype=torch.bool, device=device).tril(-1)

    def receive(self, state: SpreadingState, broadcast: Tensor, mask: Tensor | None = None,
                inplace: bool = False, perceived: Tensor | None = None) -> tuple[SpreadingState, dict]:
        """Add the fact decoded from each valid broadcast item (B, k, d) that is not stored yet, in order. With
        ``perceived_only``, the items where ``perceived`` (B, k) bool is False are skipped (None: all count as
        perceived, as when a caller hands the memory facts directly)."""
        B, k, _ = broadcast.shape
        with torch.no_grad():
            ids, real = self._decode(broadcast.detach())  # (B, k, 3)
            ok = real[..., 0] & real[..., 2]  # (B, k) a link needs two real ends; its label may be any concept
            ok = ok if mask is None else ok & mask.bool()
            if self.perceived_only and perceived is not None:
                ok = ok & perceived
            links, count = state.links, state.count
            # new: valid, not stored before this cycle and not equal to a valid item before it in this cycle
            stored_before = (links.unsqueeze(1) == ids.unsqueeze(2)).all(-1).any(-1)  # (B, k)
            same = (ids.unsqueeze(2) == ids.unsqueeze(1)).all(-1) & ok.unsqueeze(1)  # (B, k, k) [i, j]: j equals i
            repeated = (same & self._earlier(k, ids.device)).any(-1)  # (B, k)
            new = ok & ~stored_before & ~repeated
            # the new facts take the next rows of the ring in order; the others write into a spare row, dropped
            at = (count.unsqueeze(1) + new.cumsum(1) - new.long()) % self.capacity  # (B, k)
            at = torch.where(new, at, self.capacity)
            spare = torch.cat([links, links.new_full((B, 1, 3), -1)], dim=1)  # (B, N + 1, 3)
            if k <= self.capacity:  # each new fact has its own row
                links = spare.scatter(1, at.unsqueeze(-1).expand(B, k, 3), ids)[:, : self.capacity]
            else:  # more new facts than rows: written one after another, the last ones kept
                for i in range(k):
                    spare = spare.scatter(1, at[:, i, None, None].expand(B, 1, 3), ids[:, i : i + 1])
                links = spare[:, : self.capacity]
            stored = new.sum(-1)  # (B,)
            count = count + stored
        return SpreadingState(links, count), {"stored": stored}


class SpreadingMemory(LinkMemory):
    """Facts as links between concepts; recall by intersection search from the cue's subject to its targets.

    Inputs: ``propose(state, query (B, d))``; ``receive(state, broadcast (B, k, d), mask (B, k) | None)``.
    Outputs: ``propose`` -> one candidate (B, 1, d): the role-bound code (``encode_triple``) of the stored fact
    from the cue's subject whose object is nearest to a target, mask (B, 1) (a path exists), and ``{"next":
    (B,) that object's concept id (-1 none), "distance": (B,) links from it to the nearest target (-1 none)}``;
    ``receive`` -> new state and ``{"stored": (B,) facts written this cycle}``.
    State: :class:`SpreadingState`; constant size (``capacity`` links per stream; the oldest is overwritten).

    Propose: the cue (B, d) is decoded into a triple (s, p, o). The targets are its predicate and object
    concepts (those that are real concepts other than s; a question "(v3, v9, ?)" has the one target v9). Each
    target starts at activation 1; for ``hops`` rounds every link (u, r, w) passes ``decay * a(w)`` to u, a
    node keeping the largest activation it receives (max, not sum: ``a(u) = decay ** distance(u -> nearest
    target)``, so a node is ranked by its shortest path, not by how many paths it has). The spread stops early
    once no activation changes. Of the stored links leaving s, the one whose object is most active is proposed
    (ties: the one in the first row of the ring); none when no object of s is active (no path within ``hops``).

    Receive: as :class:`LinkMemory` (each decoded fact with two real ends, once). The predicate is the link's label
    only: the spread ignores it. The proposed candidate carries gradient through the index layer's embeddings
    (``encode_triple``).

    Args:
        dim: model dimension d, >= 1 (the index layer's).
        capacity: links stored per stream, >= 1.
        hops: the most links activation travels from a target, >= 1 (a path longer than this is not found).
        decay: activation kept per link, in (0, 1).
        persistent: if False (default), ``end_episode`` empties the network.
        perceived_only: if True, only broadcast items that came from perception are linked (default False: every
            broadcast item that decodes into a fact, a recalled one included, as in results/graph_search_scaling).
        skip: concept names that are never linked nor searched from (the fact stream's ``<none>`` and ``?``).
    """

    source = "long_term"

    def __init__(self, dim: int, capacity: int = 1024, hops: int = 64, decay: float = 0.5,
                 persistent: bool = False, perceived_only: bool = False, skip: Sequence[str] = ("<none>", "?")):
        super().__init__()
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
            raise ValueError(f"hops={hops!r} is out of range; allowed: integer >= 1")
        if not 0 < decay < 1:
            raise ValueError(f"decay={decay!r} is out of range; allowed: 0 < decay < 1")
        self._init_links(dim, capacity, persistent, skip, perceived_only)
        self.hops, self.decay = hops, float(decay)

    # ------------------------------------------------------------------ read
    def spread(self, state: SpreadingState, targets: Tensor) -> Tensor:
        """Activation (B, C) of every concept after spreading from ``targets`` (B, C) bool backwards along the
        links: ``decay ** (links from the concept to its nearest target)``, 0 when none is within ``hops``."""
        links = state.links
        valid = links[..., 0] >= 0  # (B, N)
        src, dst = links[..., 0].clamp(min=0), links[..., 2].clamp(min=0)  # (B, N)
        act = targets.float()
        for _ in range(self.hops):
            passed = act.gather(1, dst) * self.decay * valid  # (B, N) what each link passes to its subject
            new = act.scatter_reduce(1, src, passed, reduce="amax")
            if torch.equal(new, act):
                break
            act = new
        return act

    def propose(self, state: SpreadingState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Decode the cue (B, d) and recall the fact leading from its subject toward its targets (B, 1, d)."""
        layer = self.index_layer
        B, C = query.shape[0], layer.num_concepts
        with torch.no_grad():
            ids, real = self._decode(query.detach())  # (B, 3)
            subject = ids[:, 0]
            aim = real[:, 1:] & (ids[:, 1:] != subject[:, None]) & real[:, :1]  # (B, 2) target roles
            targets = (F.one_hot(ids[:, 1:], C).bool() & aim.unsqueeze(-1)).any(1)  # (B, C)
            act = self.spread(state, targets)  # (B, C)
            links = state.links
            leaves = (links[..., 0] == subject[:, None]) & (links[..., 0] >= 0)  # (B, N) links out of the subject
            score = act.gather(1, links[..., 2].clamp(min=0))  # (B, N) the activation of each link's object
            score = torch.where(leaves, score, 0.0)
            best_score, best = score.max(-1)  # (B,) ties: the first row of the ring
            found = best_score > 0
            fact = links.gather(1, best[:, None, None].expand(B, 1, 3)).squeeze(1).clamp(min=0)  # (B, 3)
            # best_score = decay ** distance of the recalled link's object
            distance = torch.where(found, (best_score.clamp(min=1e-30).log() / math.log(self.decay)).round().long(), -1)
            nxt = torch.where(found, fact[:, 2], -1)
        candidate = layer.encode_triple(fact) * found[:, None].to(layer.embeddings.dtype)  # (B, d)
        return candidate.unsqueeze(1), found.unsqueeze(1), {"next": nxt, "distance": distance}

    def extra_repr(self) -> str:
        return f"dim={self.dim}, capacity={self.capacity}, hops={self.hops}, decay={self.decay}"
