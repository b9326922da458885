"""The global workspace: the cognitive cycle propose -> compete -> broadcast -> act.

Sources: Baars' Global Workspace theory and the Tensor Brain's blackboard (Tresp et al.): specialist
modules propose contents, a limited-capacity stage selects a few (the consciousness-prior bottleneck,
Bengio 2017), and the selection is broadcast back to every module, which updates on it.

One cycle, for a batch of independent episodes:

1. propose: the sensory items of this step and each memory's ``propose(state, conscious)`` form the
   candidates, each tagged with its source module;
2. compete: the bottleneck scores every candidate from the previous conscious state (plus a learned
   embedding of its source) and picks k winners; their pooled value is the new conscious state;
3. broadcast: the k winners go to every memory's ``receive`` (working memory writes them competitively,
   long-term memory consolidates them, neural memory learns them at test time, episodic memory
   observes them and may cut an event); a memory with ``wants_perceived = True`` also gets
   ``perceived`` (B, k) bool, which winners are perceptions (from the sensory buffer) rather than recalls;
4. act: the motor head reads the conscious state, the broadcast and what memories offer for action
   (``motor_context``: working memory's slots) and gives action logits.

Scale: candidates enter the competition RMS-normalised, and the conscious state is RMS-normalised, so no
module wins by the size of its vector and repeated broadcasts cannot grow the state without bound.

Axes: B batch, n sensory items, N candidates, k winners, d model dim, A actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cogarch.bottleneck import Bottleneck, BottleneckOutput
from cogarch.trace import CycleRecord


class WorkspaceState(NamedTuple):
    """Everything the workspace carries between cycles; batch-first, an explicit value."""

    conscious: Tensor  # (B, d) the conscious summary of the last cycle (the next cycle's query)
    broadcast: Tensor  # (B, k, d) the last winners
    broadcast_mask: Tensor  # (B, k) bool
    sensory: Tensor  # (B, n, d) the sensory buffer of the last cycle
    memories: dict[str, Any]  # source name -> that memory's state
    step: Tensor  # (B,) long: cycles since the episode began

    def detach(self) -> "WorkspaceState":
        """The same values cut from any autograd graph (call between training windows)."""
        return _map_tensors(self, lambda t: t.detach())

    def where(self, rows: Tensor, other: "WorkspaceState") -> "WorkspaceState":
        """This state with the batch rows where ``rows`` (B,) is True taken from ``other`` (same structure and
        shapes), e.g. to let only some rows take a cycle."""
        return _zip_tensors(self, other, lambda old, new: torch.where(rows.view(-1, *(1,) * (old.dim() - 1)), new, old))

    def rows(self, index: slice | Tensor) -> "WorkspaceState":
        """The state of some batch rows (every tensor indexed on its first axis), e.g. ``rows(slice(i, i + 1))``."""
        return _map_tensors(self, lambda t: t[index])


def _map_tensors(value: Any, fn) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if hasattr(value, "_fields"):
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


def _zip_tensors(a: Any, b: Any, fn) -> Any:
    """``fn(x, y)`` on the tensors at the same place of two states of the same structure (None stays None)."""
    if isinstance(a, Tensor):
        return fn(a, b)
    if hasattr(a, "_fields"):
        return type(a)(*(_zip_tensors(x, y, fn) for x, y in zip(a, b)))
    if isinstance(a, dict):
        return {k: _zip_tensors(a[k], b[k], fn) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(_zip_tensors(x, y, fn) for x, y in zip(a, b))
    return a


class CycleOutput(NamedTuple):
    logits: Tensor  # (B, A) action logits
    candidates: Tensor  # (B, N, d) everything that competed
    selection: BottleneckOutput  # winners, weights, scores over all candidates, summary
    candidate_mask: Tensor  # (B, N) bool
    sources: tuple[str, ...]  # (N,) the source module of each candidate
    surprise: Tensor  # (B,) the consciousness-prior prediction error of this cycle
    aux_loss: Tensor  # (B,) the same error with gradient to the predictor (for training)
    proposals: dict[str, dict[str, Tensor]]  # per memory: what its propose() reported
    receipts: dict[str, dict[str, Tensor]]  # per memory: what its receive() reported
    poisoned: Tensor | None = None  # (B, N) bool: non-finite candidates dropped this cycle (None: there were none;
    # a compiled cycle always gives the mask)


# How a cycle is compiled (the workspace agent's compile=true, `make bench`): inductor's C++ wrapper as well as its
# C++ kernels, so that the host-side work of each call (some sixty tensors in and out) is C++ too.
COMPILE_OPTIONS = {"cpp_wrapper": True}


def compile_cycle(workspace: Workspace, **kwargs):
    """``workspace.cycle`` compiled by ``torch.compile(..., options=COMPILE_OPTIONS, **kwargs)``, each call made with
    ``torch._dynamo.config.capture_scalar_outputs`` on (the setting is put back after the call): the compiler then
    reads a count as a value the graph's shapes may depend on instead of breaking the graph, which lets the episodic
    refinement work on just the streams that close an event (EpisodicMemory._refine_compiled). The setting takes
    effect when a call traces the cycle (the first call, or a new batch size); it costs a few microseconds a call.
    A call that finds it on already (a call in another thread turned it on) leaves it alone: the call that turned
    it on turns it off, so calls from several threads leave it as it was. (A cycle traced in the meantime, with the
    setting off, refines a fixed number of rows: the same results, slower.)"""
    compiled = torch.compile(workspace.cycle, options=COMPILE_OPTIONS, **kwargs)
    config = torch._dynamo.config

    def cycle(*args, **kw):
        if config.capture_scalar_outputs:
            return compiled(*args, **kw)
        config.capture_scalar_outputs = True
        try:
            return compiled(*args, **kw)
        finally:
            config.capture_scalar_outputs = False

    return cycle


# Workspace(memory_cue=...): what memories are read with
MEMORY_CUES = ("conscious", "conscious_and_sensory", "sensory", "projected")


class MotorHead(nn.Module):
    """Action logits from the conscious state, what was broadcast and working memory.

    Inputs: ``conscious`` (B, d); ``context`` (B, m, d) with ``mask`` (B, m) (the winners and the used
    working-memory slots, see ``Workspace.cycle``). Outputs: logits (B, A). It attends from the conscious
    state over the context, then maps [conscious; read] to the actions through an MLP.

    With ``concepts`` (an index layer whose concepts are the actions, e.g. the env's vocabulary) it is also a
    pointer (DESIGN.md: "a pointer over input items where the answer is one of them"): the read item is
    unbound in each role and matched against the concept embeddings, ``sum_r g_r(conscious) (unbind(read, r)
    . E_a)``, so an answer that sits in an attended fact's subject, relation or object role is named directly.
    The role gates g start at 0 (the head starts as the plain MLP).

    Arguments: ``dim`` (>= 1), ``num_actions`` (>= 1), ``concepts`` (optional index layer with
    ``num_concepts == num_actions``).
    """

    def __init__(self, dim: int, num_actions: int, concepts: nn.Module | None = None):
        super().__init__()
        if dim < 1 or num_actions < 1:
            raise ValueError(f"dim={dim} and num_actions={num_actions} must both be >= 1")
        if concepts is not None and (concepts.num_concepts != num_actions or concepts.dim != dim):
            raise ValueError(f"concepts has {concepts.num_concepts} concepts of dim {concepts.dim}; the pointer "
                             f"needs num_actions={num_actions} of dim {dim}")
        self.query = nn.Linear(dim, dim)
        self.out = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, num_actions))
        self.scale = dim**-0.5
        self.concepts = concepts
        if concepts is not None:
            self.role_gate = nn.Linear(dim, concepts.num_roles)
            nn.init.zeros_(self.role_gate.weight)
            nn.init.zeros_(self.role_gate.bias)

    def forward(self, conscious: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        # the layers' functions on their weights directly: at batch 1 the modules' call overhead is a
        # sizeable part of the head's cost (the same arithmetic)
        query = F.linear(conscious, self.query.weight, self.query.bias)  # (B, d)
        scores = torch.bmm(context, query.unsqueeze(-1)).squeeze(-1) * self.scale  # (B, m)
        weights = torch.softmax(torch.where(mask, scores, -1e30), dim=-1) * mask
        read = torch.bmm(weights.unsqueeze(1), context).squeeze(1)  # (B, d)
        hidden, _, out = self.out
        h = F.gelu(F.linear(torch.cat([conscious, read], dim=-1), hidden.weight, hidden.bias))
        logits = F.linear(h, out.weight, out.bias)
        if self.concepts is None:
            return logits
        gates = F.linear(conscious, self.role_gate.weight, self.role_gate.bias)  # (B, r)
        # sum_r g_r unbind(read, r) = read * (g @ R) (unbinding is the product with the role's +-1 vector R_r),
        # then matched against every concept: three small ops (a three-operand einsum costs ~3x as much)
        unbound = read * (gates @ self.concepts.role_vectors)  # (B, d)
        return logits + F.linear(unbound, self.concepts.embeddings)  # (B, A)


class Workspace(nn.Module):
    """The cognitive cycle over a bottleneck, a motor head and any number of memories.

    Inputs of :meth:`cycle`: the state and this step's sensory items (B, n, d) with an optional mask.
    Outputs: the next :class:`WorkspaceState` and a :class:`CycleOutput`.
    State: :class:`WorkspaceState`; each memory's own state sits in ``state.memories[memory.source]``.
    Memories follow the protocol of ``cogarch.memory`` (``initial_state``, ``propose``, ``receive``,
    ``end_episode``); which ones are present is a composition choice (config groups), not a flag here.

    Arguments: ``dim`` (>= 1); ``bottleneck``; ``motor``; ``memories`` (distinct ``source`` names);
    ``memory_cue``: what the memories are read with when they propose (see :data:`MEMORY_CUES`):
    ``"conscious"`` (default), the previous cycle's conscious state, so what was just perceived is looked up
    in memory one cycle later (with a second cycle per step, or at the next step); ``"conscious_and_sensory"``,
    that state plus this cycle's sensory items (their mean, each term at RMS 1), so a question perceived this
    cycle cues its own answer's retrieval in the same cycle; ``"sensory"``, this cycle's sensory items alone (their
    mean at RMS 1): memory is cued bottom-up by what is perceived, unmixed with what was last conscious, as a memory
    that decodes its cue into a triple (``long_term=spreading``) needs; ``"projected"``, as
    ``"conscious_and_sensory"`` but each term through its own learned d x d map first (identity at init, so it
    starts as that cue): the cue can take a different part of each, e.g. the object of the fact last broadcast as
    the subject of the question now perceived ("What colour is it?" after "What is the man riding?").
    """

    SENSORY = "sensory"

    def __init__(self, dim: int, bottleneck: Bottleneck, motor: MotorHead, memories: Sequence[nn.Module] = (),
                 memory_cue: str = "conscious"):
        super().__init__()
        if memory_cue not in MEMORY_CUES:
            raise ValueError(f"memory_cue={memory_cue!r} is not one of {MEMORY_CUES}")
        self.memory_cue = memory_cue
        if memory_cue == "projected":  # the two terms' maps, identity at init
            self.cue_conscious, self.cue_sensory = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
            nn.init.eye_(self.cue_conscious.weight)
            nn.init.eye_(self.cue_sensory.weight)
        for m in memories:
            missing = [f for f in PROTOCOL if not callable(getattr(m, f, None))]
            if missing or not isinstance(getattr(m, "source", None), str):
                raise TypeError(f"{type(m).__name__} is not a workspace memory: it needs a `source` name (a str, got "
                                f"{getattr(m, 'source', None)!r}) and the methods {', '.join(PROTOCOL)}"
                                + (f" (missing: {', '.join(missing)})" if missing else ""))
        names = [m.source for m in memories]
        if len(set(names)) != len(names) or self.SENSORY in names:
            raise ValueError(f"memory sources must be distinct and not {self.SENSORY!r}; got {names}")
        if bottleneck.dim != dim:
            raise ValueError(f"bottleneck dim {bottleneck.dim} != workspace dim {dim}")
        self.dim = dim
        self.bottleneck, self.motor = bottleneck, motor
        self.memories = nn.ModuleList(memories)
        self.source_names = (self.SENSORY, *names)
        self.source_embedding = nn.Embedding(len(self.source_names), dim)
        nn.init.normal_(self.source_embedding.weight, std=0.02)
        self.initial_conscious = nn.Parameter(torch.zeros(dim))
        self._ids_cache: dict = {}  # candidate layout -> (source ids, names); see _source_ids

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> WorkspaceState:
        k = self.bottleneck.k or 1
        z = lambda *shape, **kw: torch.zeros(*shape, device=device, **kw)
        return WorkspaceState(
            conscious=self.initial_conscious.detach().to(device).expand(batch_size, -1).clone(),
            broadcast=z(batch_size, k, self.dim),
            broadcast_mask=z(batch_size, k, dtype=torch.bool),
            sensory=z(batch_size, 1, self.dim),
            memories={m.source: m.initial_state(batch_size, device=device) for m in self.memories},
            step=z(batch_size, dtype=torch.long),
        )

    def end_episode(self, state: WorkspaceState) -> WorkspaceState:
        """Clear what an episode owns; memories keep what their configuration says they keep."""
        fresh = self.initial_state(state.conscious.shape[0], state.conscious.device)
        kept = {m.source: m.end_episode(state.memories[m.source]) for m in self.memories}
        return fresh._replace(memories=kept)

    def reset_rows(self, state: WorkspaceState, rows: Tensor) -> WorkspaceState:
        """``state`` with the rows where ``rows`` (B,) is True replaced by a fresh initial state (a new
        episode in that row; the other rows are untouched). Used to batch episodes that start at different
        times (cogarch.vector)."""
        if not bool(rows.any()):
            return state
        fresh = self.initial_state(rows.shape[0], rows.device)
        # What the last cycle broadcast and sensed varies in size (min(k, N) winners of N candidates, n sensory
        # items): a new episode holds none of it, zeros in the state's own shapes.
        fresh = fresh._replace(broadcast=torch.zeros_like(state.broadcast),
                               broadcast_mask=torch.zeros_like(state.broadcast_mask),
                               sensory=torch.zeros_like(state.sensory))
        return state.where(rows, fresh)

    def cycle(self, state: WorkspaceState, sensory: Tensor, sensory_mask: Tensor | None = None,
              inplace: bool = False, suppress: Tensor | None = None) -> tuple[WorkspaceState, CycleOutput]:
        """One cycle. By default ``state`` is a value: it is left unchanged and may be reused.

        ``suppress`` (B,) bool is the counterfactual of Thought Anchors (cogarch.inspect): in those rows the
        competition runs but nothing is broadcast. Memories receive no winner, the conscious state stays the
        previous cycle's and the motor head acts without the winners (the output still reports what won).

        ``inplace=True`` is an inference option for throughput: memories that support it (``supports_inplace``)
        write into the tensors of ``state`` instead of copying them (at large batch, copying the long-term
        matrix, the working-memory slots and the episodic ring and event table is a large part of the cycle). The input state is then consumed: the caller must
        not reuse it (or anything holding its tensors) after the call. The results equal the value path's.
        It is ignored when autograd is enabled (in-place writes would break the graph); for inference
        throughput, run the cycles under ``torch.inference_mode()``."""
        B, n, _ = sensory.shape
        inplace = inplace and not torch.is_grad_enabled()
        if sensory_mask is None:
            sensory_mask = torch.ones(B, n, dtype=torch.bool, device=sensory.device)
        # 1. propose
        cue = state.conscious
        if self.memory_cue != "conscious" and self.memories:
            seen = sensory_mask.to(sensory.dtype).unsqueeze(-1)  # (B, n, 1)
            seen = (sensory * seen).sum(1) / seen.sum(1).clamp(min=1)  # (B, d) mean of the valid items
            seen = F.rms_norm(seen, (self.dim,), eps=1e-6)
            if self.memory_cue == "projected":
                cue, seen = F.linear(cue, self.cue_conscious.weight), F.linear(seen, self.cue_sensory.weight)
            cue = seen if self.memory_cue == "sensory" else F.rms_norm(cue + seen, (self.dim,), eps=1e-6)
        parts, masks, proposals = [sensory], [sensory_mask], {}
        for memory in self.memories:
            cands, mask, info = _proposal(memory, memory.propose(state.memories[memory.source], cue), B, self.dim)
            parts.append(cands)
            masks.append(mask)
            proposals[memory.source] = info
        # Every proposal enters at the same scale (RMS 1): the competition is on direction, not size, so a
        # memory whose readout grows with what it stores (an outer-product sum) cannot win by magnitude and
        # feed its own growth through the broadcast.
        raw = torch.cat(parts, dim=1)  # (B, N, d)
        candidates, norm = _rms_normed(raw)
        # An empty proposal (a zero vector, e.g. a memory read with a zero query) carries nothing and may not
        # win: broadcast, it would be written into working memory as a "used" slot holding nothing.
        norm = norm.squeeze(-1)  # (B, N)
        mask = torch.cat(masks, dim=1) & (norm > 1e-12)  # (B, N)
        # A poisoned proposal (NaN or inf, e.g. from a bad input or a diverged memory) is dropped before it can
        # win and is reported; zeroed, it cannot leak into the pooled state through a masked winner either.
        poisoned = None
        # (a compiled cycle always takes the masked path: the test would be a host sync, a break in its graph)
        if torch.compiler.is_compiling() or not bool(torch.isfinite(norm).all()):
            poisoned = ~torch.isfinite(norm)  # (B, N)
            candidates = torch.where(poisoned.unsqueeze(-1), 0.0, candidates)
            mask = mask & ~poisoned
        ids, names = self._source_ids(tuple(p.shape[1] for p in parts), sensory.device)
        key_bias = F.embedding(ids, self.source_embedding.weight).unsqueeze(0)  # (1, N, d)
        # 2. compete (the bottleneck's forward, which also gives the winners themselves (B, k, d))
        sel, broadcast = self.bottleneck.select(state.conscious, candidates, mask, key_bias=key_bias)
        sel = sel._replace(summary=F.rms_norm(sel.summary, (self.dim,), eps=1e-6))  # the conscious state, RMS 1
        aux = self.bottleneck.aux_loss(state.conscious, sel.summary)
        conscious, sent = sel.summary, sel.winner_mask  # what is broadcast: the new conscious state, the winners
        if suppress is not None:
            conscious = torch.where(suppress[:, None], state.conscious, conscious)
            sent = sent & ~suppress[:, None]
        # 3. broadcast
        memories, receipts = {}, {}
        perceived = None  # (B, k) bool: which winners came from the sensory buffer (memories that ask for it)
        for memory in self.memories:
            extra = {"inplace": True} if inplace and getattr(memory, "supports_inplace", False) else {}
            if getattr(memory, "wants_perceived", False):
                perceived = ids[sel.winners] == 0 if perceived is None else perceived  # source 0 is SENSORY
                extra["perceived"] = perceived
            memories[memory.source], receipts[memory.source] = _receipt(memory, memory.receive(
                state.memories[memory.source], broadcast, sent, **extra
            ))
        # 4. act
        context, context_mask = [broadcast], [sent]
        for memory in self.memories:  # memories that hold items for action (working memory's slots)
            if hasattr(memory, "motor_context"):
                items, item_mask = memory.motor_context(memories[memory.source])
                context.append(_rms_normed(items)[0])
                context_mask.append(item_mask)
        if len(context) > 1:
            context, context_mask = [torch.cat(context, dim=1)], [torch.cat(context_mask, dim=1)]
        logits = self.motor(conscious, context[0], context_mask[0])
        new_state = WorkspaceState(conscious, broadcast, sent, sensory, memories, state.step + 1)
        return new_state, CycleOutput(logits, candidates, sel, mask, names, aux.detach(), aux, proposals, receipts,
                                      poisoned)

    def _source_ids(self, sizes: tuple[int, ...], device: torch.device) -> tuple[Tensor, tuple[str, ...]]:
        """The source index (N,) and the source name of every candidate, given the sizes of the parts.

        The layout repeats from cycle to cycle, so the index tensor is built once per layout and device."""
        if torch.compiler.is_compiling():  # a constant of the compiled graph (the mode test below breaks graphs)
            return self._make_source_ids(sizes, device)
        # (tensors made under inference_mode may not enter autograd later, so that mode is part of the key)
        key = (sizes, device, torch.is_inference_mode_enabled())
        if key not in self._ids_cache:
            self._ids_cache[key] = self._make_source_ids(sizes, device)
        return self._ids_cache[key]

    def _make_source_ids(self, sizes: tuple[int, ...], device: torch.device) -> tuple[Tensor, tuple[str, ...]]:
        ids = [i for i, size in enumerate(sizes) for _ in range(size)]
        return torch.tensor(ids, device=device), tuple(self.source_names[i] for i in ids)

    @torch.no_grad()
    def records(self, out: CycleOutput, step: Tensor | Sequence[int], cycle: int,
                actions: Sequence[int | None] | None = None, index_layer=None) -> list[CycleRecord]:
        """One :class:`CycleRecord` per batch row of a cycle's output, decoded into words when an index
        layer (with ``decode_triple`` and ``names``) is given."""
        sel, B = out.selection, out.logits.shape[0]
        # every tensor goes to Python once for the whole batch (per-row .tolist() calls cost more than the rows)
        valid = sel.winner_mask.tolist()
        winners = [[w for w, ok in zip(row, oks) if ok] for row, oks in zip(sel.winners.tolist(), valid)]
        weights = [[x for x, ok in zip(row, oks) if ok] for row, oks in zip(sel.weights.tolist(), valid)]
        scores, surprise, logits = sel.scores.tolist(), out.surprise.tolist(), out.logits.tolist()
        receipt = out.receipts.get("working", {})
        writes = receipt["write_weights"].tolist() if "write_weights" in receipt else None
        reads = {src: info["read_weights"].tolist() for src, info in out.proposals.items() if "read_weights" in info}
        episodic = out.receipts.get("episodic", {})
        boundary = episodic["boundary"].tolist() if "boundary" in episodic else None
        surprises = {f"{src}.surprise": info["surprise"].tolist() for src, info in out.receipts.items()
                     if "surprise" in info}
        poisoned = out.poisoned.any(-1).tolist() if out.poisoned is not None else [False] * B
        steps = step.tolist() if isinstance(step, Tensor) else step
        working = [i for i, s in enumerate(out.sources) if s == "working"]
        concepts = None
        if index_layer is not None:  # the winners and working-memory slots of all rows, decoded in one call
            rows, cols = [], []  # (row, candidate) of each vector to decode: a row's winners, then its slots
            for b in range(B):
                picked = (*winners[b], *working)
                rows += [b] * len(picked)
                cols += picked
            concepts = []
            if rows:
                ids, _ = index_layer.decode_triple(out.candidates[rows, cols])
                concepts = [list(t) for t in index_layer.names(ids)]
            used = out.candidate_mask[:, working].tolist() if working else [[]] * B
        records, at = [], 0
        for b in range(B):
            rec = dict(
                candidates=[{"source": s, "score": _finite(v)} for s, v in zip(out.sources, scores[b])],
                winners=winners[b],
                winner_sources=[out.sources[w] for w in winners[b]],
                winner_weights=weights[b],
                surprise=surprise[b],
                action_logits=logits[b],
            )
            if concepts is not None:
                n = len(winners[b])
                rec["winner_concepts"] = concepts[at:at + n]
                if working:
                    slots = concepts[at + n:at + n + len(working)]
                    rec["slot_concepts"] = [c if ok else None for c, ok in zip(slots, used[b])]
                at += n + len(working)
            if writes is not None:
                rec["write_weights"] = writes[b]
            if reads:
                rec["read_weights"] = {src: w[b] for src, w in reads.items()}
            if boundary is not None:
                rec["boundary"] = bool(boundary[b])
            extra = {name: values[b] for name, values in surprises.items()}
            if poisoned[b]:  # which sources proposed NaN / inf
                extra["nonfinite_candidates"] = [out.sources[i] for i in out.poisoned[b].nonzero().flatten().tolist()]
            records.append(CycleRecord(step=int(steps[b]), cycle=cycle, action=None if actions is None else actions[b],
                                       extra=extra, **rec))
        return records


PROTOCOL = ("initial_state", "propose", "receive", "end_episode")  # what a memory of the workspace has


def _proposal(memory: nn.Module, result, batch: int, dim: int) -> tuple[Tensor, Tensor, dict]:
    """``memory.propose``'s result, checked: (candidates (B, n, d), mask (B, n) bool, info dict). Checks of shapes
    only (no host sync), so that a memory that breaks the protocol is named instead of failing later in the cycle."""
    ok = isinstance(result, tuple) and len(result) == 3
    if ok:
        cands, mask, info = result
        ok = (isinstance(cands, Tensor) and cands.dim() == 3 and cands.shape[0] == batch and cands.shape[2] == dim
              and isinstance(mask, Tensor) and mask.shape == cands.shape[:2] and isinstance(info, dict))
    if not ok:
        raise TypeError(f"{type(memory).__name__}.propose (source {memory.source!r}) must return (candidates ({batch}, "
                        f"n, {dim}), mask ({batch}, n) bool, info dict); got {_shapes(result)}")
    return result


def _receipt(memory: nn.Module, result) -> tuple[Any, dict]:
    """``memory.receive``'s result, checked: (new state, info dict)."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TypeError(f"{type(memory).__name__}.receive (source {memory.source!r}) must return (new state, info "
                        f"dict); got {_shapes(result)}")
    return result


def _shapes(x) -> str:
    """What a protocol method returned, briefly: tensors as their shapes."""
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return "(" + ", ".join(_shapes(v) for v in x) + ")"
    return type(x).__name__


def _rms_normed(x: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``F.rms_norm(x, (d,), eps)`` (no weight) and the L2 norm of each vector (..., 1), from one reduction:
    x / sqrt(|x|^2 / d + eps). At large batch this is one pass over x fewer than rms_norm plus a separate
    emptiness test."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (..., 1)
    return x * norm.square().mul_(1.0 / x.shape[-1]).add_(eps).rsqrt_(), norm


def _finite(x: float) -> float | None:
    """-inf scores mark masked candidates; record them as None (JSON has no infinities)."""
    return x if x == x and abs(x) != float("inf") else None
