"""A Relation Network over the episode's objects: which other object stands in the asked relation to this one.

Source: Santoro et al., "A simple neural network module for relational reasoning" (2017): a relation network
``RN(O) = f( sum_{i,j} g(o_i, o_j, q) )`` applies one learned function g to every pair of objects (with the
question q) and sums, so the relation is computed, not memorised per scene. The objects here are entity files:
the facts the workspace broadcast, decoded into triples through the agent's index layer (Tensor Brain semantic
decoding) and stored as links (cogarch.memory.spreading.LinkMemory), are grouped by subject; an object's file
is the sum of its facts' role-bound codes (``encode_triple``), e.g. red = (red, shape, circle) + (red, column,
col3) + (red, row, row1).

The question names one object (the cue's decoded subject, the target t), so the pairs are (t, j) for every
other object j, as in the RN paper's relational questions about one object. Two candidates:

- ``attend``: ``sum_j softmax_j(w . g(o_t, o_j, q)) o_j``, the file of the object the pair scores pick
  ("the object closest to red" is one of the others, so the answer is read out of that object's facts);
- ``relate``: ``f(sum_j g(o_t, o_j, q))``, the RN's summed relation (e.g. how many share red's shape).

g, w and f are learned (slow weights); the files and links are written fast and carry no gradient except
through the index layer's embeddings. It is the workspace's ``relational`` option ``relation_network``.
"""

# B batch, N stored links, C concepts (candidate objects: every concept may be a subject), d model dim,
# h hidden width of g

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import Tensor, nn

from cogarch.memory.spreading import LinkMemory, SpreadingState

__all__ = ["RelationalMemory"]


class RelationalMemory(LinkMemory):
    """Relation Network over entity files built from the broadcast's facts.

    Inputs: ``propose(state, query (B, d))``; ``receive(state, broadcast (B, k, d), mask (B, k) | None)`` (as
    :class:`~cogarch.memory.spreading.LinkMemory`: each decoded fact with real subject and object is stored once).
    Outputs: ``propose`` -> candidates (B, 2, d) = (attend, relate), mask (B, 2) (both valid when the cue's
    subject has a file and some other object has one), and ``{"target": (B,) the cue's subject id (-1 none),
    "attended": (B,) the other object with the largest pair weight (-1 none), "objects": (B, E) the concept
    ids of the other objects (-1 padding; E = the most objects any stream holds), "pair_weights": (B, E) their
    pair weights}``.
    State: :class:`~cogarch.memory.spreading.SpreadingState` (``capacity`` links per stream; constant size).

    Pairs: ``g([rms(o_t); rms(o_j); q])``, a two-layer ReLU MLP of width ``hidden``, for each object j != t
    with a file (the files enter at RMS 1, so an object with more facts does not dominate by size).

    Args:
        dim: model dimension d, >= 1 (the index layer's).
        hidden: width h of g, >= 1.
        capacity: links stored per stream, >= 1 (the oldest is overwritten).
        persistent: if False (default), ``end_episode`` forgets the episode's facts.
        perceived_only: if True (default), only broadcast items that came from perception are stored (a recalled
            or composed item, e.g. this module's own ``attend`` candidate, can decode into a triple it is not).
        skip: concept names that are never stored nor made an object (the fact stream's ``<none>`` and ``?``).
    """

    source = "relational"

    def __init__(self, dim: int, hidden: int = 128, capacity: int = 256, persistent: bool = False,
                 perceived_only: bool = True, skip: Sequence[str] = ("<none>", "?")):
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden={hidden!r} is out of range; allowed: integer >= 1")
        self._init_links(dim, capacity, persistent, skip, perceived_only)
        self.hidden = hidden
        self.g = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.pair_score = nn.Linear(hidden, 1)  # w: which pair answers
        self.f = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def files(self, state: SpreadingState) -> tuple[Tensor, Tensor]:
        """Entity files (B, C, d), the sum of each subject's stored facts' role-bound codes, and which concepts
        have one (B, C) bool. Differentiable w.r.t. the index layer's embeddings."""
        layer = self.index_layer
        links = state.links  # (B, N, 3)
        if not torch.compiler.is_compiling() and links.shape[0] > 0:  # the ring fills from row 0: skip empty rows
            links = links[:, : max(1, min(links.shape[1], int(state.count.max())))]
        B, N, _ = links.shape
        valid = links[..., 0] >= 0  # (B, N)
        codes = layer.encode_triple(links.clamp(min=0).view(-1, 3)).view(B, N, self.dim)
        codes = codes * valid.unsqueeze(-1).to(codes.dtype)
        subject = links[..., 0].clamp(min=0)  # (B, N)
        files = codes.new_zeros(B, layer.num_concepts, self.dim).scatter_add(
            1, repeat(subject, "B N -> B N d", d=self.dim), codes)  # (B, C, d)
        has = codes.new_zeros(B, layer.num_concepts).scatter_add(1, subject, valid.to(codes.dtype)) > 0
        return files, has

    def pairs(self, state: SpreadingState, query: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """g over the pairs (target, j): the cue's decoded subject t with every other object j (E of them, the
        most objects any stream holds). Returns the other objects' concept ids (B, E) (-1 where none), their
        pair weights softmax_j(w . g) (B, E) and g itself (B, E, h) (both differentiable; zero where no pair),
        their files (B, E, d) and the target (B,) (-1 when the cue's subject has no file or is alone)."""
        B = query.shape[0]
        with torch.no_grad():
            ids, real = self._decode(query.detach())  # (B, 3)
            target = ids[:, 0]  # (B,)
        files, has = self.files(state)  # (B, C, d), (B, C)
        rows = torch.arange(B, device=query.device)
        found = real[:, 0] & has[rows, target]  # (B,) the cue's subject is an object
        target_file = F.rms_norm(files[rows, target], (self.dim,), eps=1e-6)  # (B, d)
        # g runs on the objects present, not on every concept
        # (a compiled cycle takes every concept: the count would be a host sync, a break in its graph)
        E = has.shape[1] if torch.compiler.is_compiling() or B == 0 else max(1, int(has.sum(-1).max()))
        objects = has.to(torch.int8).topk(E, dim=-1, sorted=False).indices  # (B, E) concept ids
        others = has.gather(1, objects) & (objects != target[:, None]) & found[:, None]  # (B, E)
        obj_files = files.gather(1, repeat(objects, "B E -> B E d", d=self.dim))  # (B, E, d)
        pairs = torch.cat([repeat(target_file, "B d -> B E d", E=E), F.rms_norm(obj_files, (self.dim,), eps=1e-6),
                           repeat(query, "B d -> B E d", E=E)], dim=-1)  # (B, E, 3d)
        h = self.g(pairs) * others.unsqueeze(-1).to(files.dtype)  # (B, E, h), zero where no pair
        scores = rearrange(self.pair_score(h), "B E 1 -> B E")
        weights = torch.softmax(scores.masked_fill(~others, float("-inf")), dim=-1).nan_to_num(0.0)  # (B, E)
        target = torch.where(others.any(-1), target, -1)
        return torch.where(others, objects, -1), weights, h, obj_files, target

    def propose(self, state: SpreadingState, query: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Relate the cue's subject (the target object) to every other object: candidates (attend, relate)."""
        objects, weights, h, obj_files, target = self.pairs(state, query)
        found = target >= 0  # (B,)
        attend = einsum(weights, obj_files, "B E, B E d -> B d")
        relate = self.f(h.sum(1))  # (B, d)
        mask = repeat(found, "B -> B two", two=2)
        candidates = torch.stack([attend, relate], dim=1) * mask.unsqueeze(-1).to(obj_files.dtype)  # (B, 2, d)
        attended = torch.where(found, objects.gather(1, weights.argmax(-1, keepdim=True)).squeeze(1), -1)
        info = {"target": target, "attended": attended, "objects": objects, "pair_weights": weights.detach()}
        return candidates, mask, info

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, capacity={self.capacity}"
