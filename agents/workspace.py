"""The global-workspace agent: perception, the index layer, memories, the bottleneck and a motor head, composed.

Composition only: every part is a ``cogarch`` module chosen by a config group (configs/agent/workspace.yaml
pulls ``cogarch/working``, ``cogarch/long_term``, ``cogarch/episodic``, ``cogarch/relational``,
``cogarch/bottleneck``); an ablation is another option of a group (``agent/cogarch/long_term@agent.long_term=none``), not a flag here.

One env step (DESIGN.md, "one step of data"):
    facts (B, 3) -> perception (index-layer role binding)            sensory item (B, 1, d)
    repeat cycles_per_step times: workspace.cycle(state, sensory)    propose -> compete -> broadcast -> act
        (answer_cycles times at a step that asks a question, phase 1)
    the last cycle's motor logits (B, V) over the agent's concepts

Several cycles per step are the search of DESIGN.md ("cycles are the search"): each cycle can bring one more
retrieval into the conscious state before the answer is read out. ``answer_cycles`` spends them where the search
happens, at the question: a story read with one cycle per fact and answered after four costs a third of four
cycles at every step.

Axes: B batch, T steps, d model dim, V the agent's vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.data import StepBatch
from agents.learned import LearnedAgent, seeded
from cogarch.bottleneck import Bottleneck
from cogarch.index_layer import IndexLayer
from cogarch.perception import Perception
from cogarch.trace import CycleRecord
from cogarch.workspace import MotorHead, Workspace, WorkspaceState, compile_cycle


class WorkspaceModel(nn.Module):
    """The learnable parts: index layer, perception (facts only), and the workspace with its memories."""

    def __init__(self, vocab: Sequence[str], dim: int, bottleneck: Bottleneck, memories: Sequence[nn.Module],
                 time: bool = True, memory_cue: str = "conscious", efference: bool = False):
        super().__init__()
        self.index_layer = IndexLayer(vocab, dim, roles=4 if time else 3)  # roles s, p, o (and the time index)
        self.perception = Perception(self.index_layer, dim, text=False, time=time)
        if efference:  # the efference copy's map: a concept -> the item perceived (see WorkspaceAgent)
            self.efference = nn.Linear(dim, dim, bias=False)
            with torch.no_grad():  # at init the concept bound to the subject and the object role
                roles = self.index_layer.role_vectors
                self.efference.weight.copy_(torch.diag((roles[0] + roles[2]) / math.sqrt(2)))
        for memory in memories:  # memories that decode triples (cogarch.memory.semantic) read the index layer
            if hasattr(memory, "attach"):
                memory.attach(self.index_layer)
        self.workspace = Workspace(dim, bottleneck, MotorHead(dim, len(vocab), concepts=self.index_layer), memories,
                                   memory_cue=memory_cue)


class AgentState(NamedTuple):
    """Per-episode state of the agent: the workspace's (memories included) and the env step counter (an int
    for a batch of episodes in step, or a (B,) long tensor when each row is at its own step)."""

    workspace: WorkspaceState
    step: int | Tensor
    last_action: Tensor | None = None  # (B,) long: the agent's answer at the last step, 0 (<none>) while reading


def _part(value: Any) -> nn.Module | None:
    """A configured part, or None for an empty option (``none.yaml`` composes to an empty node)."""
    if value is None or (isinstance(value, Mapping) and len(value) == 0):
        return None
    if not isinstance(value, nn.Module):
        raise ValueError(f"a workspace part must be a torch module built from its config, got {type(value).__name__}")
    return value


class StepCycles(NamedTuple):
    """The cycles of one env step (``WorkspaceAgent._step``)."""

    outs: list  # one CycleOutput per cycle (over the whole batch)
    active: list  # per cycle: (B,) bool, the rows that took it, or None for every row
    logits: Tensor  # (B, V) each row's last cycle's action logits
    aux: Tensor  # (B,) the consciousness-prior loss averaged over each row's cycles


class WorkspaceAgent(LearnedAgent):
    """An agent that thinks in global-workspace cycles (Baars; Tensor Brain; Consciousness Prior; PMI; EM-LLM).

    Inputs: fact-stream observations (``fact`` ids, ``phase``). Outputs: an action id of the env.
    State: :class:`AgentState` (a :class:`cogarch.workspace.WorkspaceState` holding every memory's state).

    Args:
        vocab: the env's vocabulary (passed by the CLI); ``agent_vocab`` overrides the agent's own (a superset).
        dim: model width d (>= 1); the memory and bottleneck configs interpolate the same ``${dim}``.
        bottleneck: a :class:`cogarch.bottleneck.Bottleneck` (config group ``cogarch/bottleneck``).
        working, long_term, episodic: memory modules, or an empty node / None to leave one out.
        relational: a relational module (``cogarch/relational``: ``relation_network``, a Relation Network over the
            episode's objects), or an empty node / None (default) to leave it out.
        extra_memories: more memories beside those four, by name (a mapping name -> module; default none): a new
            module's config group added from the command line, ``+cogarch/<group>@agent.extra_memories.<name>=<option>``.
        language: a :class:`cogarch.language.LanguageModule` (config group ``cogarch/language``), or None. With
            it, the text of each observation is a second sensory item: the frozen LM's pooled sentence vector
            through its learned projection (the LM stays outside the checkpoint; only the projection is saved).
        cycles_per_step: workspace cycles per env step (>= 1).
        answer_cycles: workspace cycles at a step that asks (``phase`` 1), >= 1; None (default) = cycles_per_step.
            In a batch whose rows differ in phase, a row takes only its own number of cycles (the others keep
            their state and logits while the asking rows think on).
        time: bind each fact to a code of its step (perception's time index, for recency); default True.
        memory_cue: what the memories are read with (``cogarch.workspace.Workspace``): ``"conscious"`` (the
            previous cycle's conscious state), ``"conscious_and_sensory"`` (plus this step's sensory items,
            so a question cues its answer's retrieval in the cycle that reads it), ``"sensory"`` (this step's
            sensory items alone) or ``"projected"`` (the two, each through its own learned map).
        decode_loss: weight (finite, >= 0; default 0 = off) of a semantic-decoding loss added to the auxiliary loss
            in training: each perceived fact item is decoded role by role by the index layer (Tensor Brain
            semantic decoding, the true subject explained away before the predicate is read, and so on) and the
            cross-entropy of each role against the fact's own concept is taken. It keeps what is perceived
            decodable while the embeddings learn, which memories that decode the broadcast into triples
            (``long_term=spreading|triple``, ``relational=relation_network``) rely on.
        efference: an efference copy (default False): the agent perceives its own answer of the last step as a
            second sensory item, ``W_e E[answer]`` (a learned map of the answered concept's embedding, at init
            the concept bound to the subject and object roles), so that what it just said can cue the next
            step's recall, e.g. a follow-up question about "it". Nothing while reading (the answer is ``<none>``).
            In training the last answer is the oracle's (teacher forcing), when acting the agent's own argmax.
        bptt_steps: training backpropagates through at most this many env steps (>= 1).
        compile: act through ``cogarch.workspace.compile_cycle(workspace)`` (``torch.compile`` with ``COMPILE_OPTIONS``)
            (default False): the first steps wait for the compile (tens of seconds), later ones run faster
            (``make bench`` prints the compiled / eager ratio by batch size, above 1 at each); only without
            autograd (acting, evaluating), training stays eager. Needs a C++ compiler.
        checkpoint: a folder written by ``cogarch train`` (its ``model.safetensors``) to load.
        seed: torch seed of the agent's own initial weights (index layer, perception, motor, source tags).
        action_space, observation_space: accepted from the CLI and unused.
    """

    def __init__(self, bottleneck: Bottleneck, dim: int = 64, working: Any = None, long_term: Any = None,
                 episodic: Any = None, relational: Any = None, extra_memories: Mapping[str, Any] | None = None,
                 language: Any = None, cycles_per_step: int = 1,
                 answer_cycles: int | None = None, time: bool = True, memory_cue: str = "conscious",
                 decode_loss: float = 0.0, efference: bool = False, bptt_steps: int = 32, vocab: Sequence[str] | None = None,
                 agent_vocab: Sequence[str] | None = None, checkpoint: str | None = None, seed: int = 0,
                 compile: bool = False, action_space=None, observation_space=None):
        if vocab is None and agent_vocab is None:
            raise ValueError("WorkspaceAgent needs a fact-stream env (one with a vocab, e.g. env=story_qa); "
                             "this env has none")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim={dim!r} is out of range; allowed: integer >= 1")
        if isinstance(cycles_per_step, bool) or not isinstance(cycles_per_step, int) or cycles_per_step < 1:
            raise ValueError(f"cycles_per_step={cycles_per_step!r} is out of range; allowed: integer >= 1")
        if answer_cycles is not None and (isinstance(answer_cycles, bool) or not isinstance(answer_cycles, int)
                                          or answer_cycles < 1):
            raise ValueError(f"answer_cycles={answer_cycles!r} is out of range; allowed: integer >= 1 or null "
                             "(= cycles_per_step)")
        super().__init__(vocab, agent_vocab, seed)
        extra = dict(extra_memories or {})
        memories = [m for m in map(_part, (working, long_term, episodic, relational, *extra.values())) if m is not None]
        for m in memories:
            if getattr(m, "dim", dim) != dim:
                raise ValueError(f"memory {m.source!r} has dim {m.dim} but the agent's dim is {dim}")
        if isinstance(decode_loss, bool) or not isinstance(decode_loss, (int, float)) or not 0 <= decode_loss < math.inf:
            raise ValueError(f"decode_loss={decode_loss!r} is out of range; allowed: finite and >= 0")
        self.decode_loss = float(decode_loss)
        if not isinstance(efference, bool):
            raise ValueError(f"efference={efference!r} is not allowed; allowed: true or false")
        self.efference = efference
        if isinstance(bptt_steps, bool) or not isinstance(bptt_steps, int) or bptt_steps < 1:
            raise ValueError(f"bptt_steps={bptt_steps!r} is out of range; allowed: integer >= 1")
        if not isinstance(compile, bool):
            raise ValueError(f"compile={compile!r} is not allowed; allowed: true or false")
        self.dim, self.cycles_per_step, self.bptt_steps = dim, cycles_per_step, bptt_steps
        self.compile, self._compiled_cycle = compile, None
        self.answer_cycles = cycles_per_step if answer_cycles is None else answer_cycles
        # (step, cycle) pairs whose broadcast is suppressed when acting (the counterfactual of cogarch.inspect)
        self.suppress: set[tuple[int, int]] = set()
        self.language = _part(language)
        if self.language is not None and self.language.dim != dim:
            raise ValueError(f"the language module projects to dim {self.language.dim} but the agent's dim is {dim}")
        with seeded(self.seed):
            self.model = WorkspaceModel(self.vocab, dim, bottleneck, memories, time=time, memory_cue=memory_cue,
                                        efference=efference)
        if self.language is not None:  # only the projection is a parameter of the agent (saved, trained)
            self.model.language_proj = self.language.proj
        if checkpoint is not None:
            self.load(checkpoint)

    @property
    def workspace(self) -> Workspace:
        return self.model.workspace

    @property
    def index_layer(self) -> IndexLayer:
        return self.model.index_layer

    def initial_state(self, seed: int | None = None, batch_size: int = 1) -> AgentState:
        last = torch.zeros(batch_size, dtype=torch.long) if self.efference else None
        return AgentState(self.workspace.initial_state(batch_size), 0, last)

    def end_episode(self, state: AgentState) -> None:
        return None

    # ------------------------------------------------------------------ one step
    supports_batch = True  # reset_rows: rows of one batch may be at different steps (cogarch.vector)

    def reset_rows(self, state: AgentState, rows: Tensor) -> AgentState:
        B = rows.shape[0]
        steps = torch.as_tensor(state.step).expand(B)
        last = None if state.last_action is None else torch.where(rows, 0, state.last_action)
        return AgentState(self.workspace.reset_rows(state.workspace, rows), torch.where(rows, 0, steps), last)

    def _step(self, state: WorkspaceState, facts: Tensor, phase: Tensor, step: int | Tensor, inplace: bool,
              text: Sequence[str] | None = None, sensory: Tensor | None = None,
              last_action: Tensor | None = None) -> tuple[WorkspaceState, StepCycles]:
        """The cycles of one env step: ``cycles_per_step`` in each row, ``answer_cycles`` in rows that ask (phase
        (B,) == 1). ``sensory`` (B, 1, d): the facts already perceived (episode_logits perceives a whole episode
        at once); None = perceive ``facts`` here."""
        B = facts.shape[0]
        steps = torch.as_tensor(step, dtype=torch.long).expand(B)  # (B,)
        if sensory is None:
            sensory = self.model.perception({"fact": facts, "step": steps})  # (B, 1, d)
        if self.language is not None:  # the observation's text as a second sensory item (B, 2, d)
            if text is None:
                raise ValueError("this agent has a language module and needs each step's text (obs['text'])")
            sensory = torch.cat([sensory, self.language.encode(list(text)).unsqueeze(1)], dim=1)
        sensory_mask = None
        if self.efference:  # the last answer as one more sensory item (masked while reading: it was <none>)
            if last_action is None:  # (a state made without one: nothing said yet)
                last_action = torch.zeros(B, dtype=torch.long, device=facts.device)
            said = F.linear(self.index_layer.embeddings[last_action], self.model.efference.weight)  # (B, d)
            sensory = torch.cat([sensory, said.unsqueeze(1)], dim=1)
            sensory_mask = torch.ones(sensory.shape[:2], dtype=torch.bool, device=sensory.device)
            sensory_mask[:, -1] = last_action != 0
        n_cycles, fewest, total = None, self.cycles_per_step, self.cycles_per_step  # the common case: no masks
        if self.answer_cycles != self.cycles_per_step:
            asking = torch.as_tensor(phase, device=facts.device).expand(B) == 1
            n_cycles = torch.where(asking, self.answer_cycles, self.cycles_per_step)  # (B,)
            fewest, total = int(n_cycles.min()), int(n_cycles.max())
        outs, active, logits, aux = [], [], None, None
        for c in range(total):
            rows = None if c < fewest else n_cycles > c  # (B,) bool: the rows that take cycle c (None: all)
            off = None
            if self.suppress:  # the rows whose (step, cycle) is suppressed
                off = torch.tensor([(s, c) in self.suppress for s in steps.tolist()])
            new, out = self._cycle()(state, sensory, sensory_mask, inplace=inplace and rows is None, suppress=off)
            if rows is None:
                state, logits = new, out.logits
                aux = out.aux_loss if aux is None else aux + out.aux_loss
            else:  # the rows past their own number of cycles keep what they had
                state = state.where(rows, new)
                logits = torch.where(rows[:, None], out.logits, logits)
                aux = aux + torch.where(rows, out.aux_loss, 0.0)
            outs.append(out)
            active.append(rows)
        count = self.cycles_per_step if n_cycles is None else n_cycles.to(aux.dtype)
        return state, StepCycles(outs, active, logits, aux / count)

    def _cycle(self):
        """The workspace cycle to run: compiled (made on first use) when ``compile`` is on and autograd is off."""
        if not self.compile or torch.is_grad_enabled():
            return self.workspace.cycle
        if self._compiled_cycle is None:
            self._compiled_cycle = compile_cycle(self.workspace)
        return self._compiled_cycle

    def step_logits(self, state: AgentState, facts: Tensor, phase: Tensor, trace: bool = True,
                    text: Sequence[str] | None = None) -> tuple[Tensor, AgentState, list[CycleRecord]]:
        """One env step for a batch: facts (B, 3), phase (B,) (and the B texts, for the language module) ->
        logits (B, V), next state, cycle records (one per row and cycle it took)."""
        ws, cycles = self._step(state.workspace, facts, phase, state.step, inplace=not torch.is_grad_enabled(),
                                text=text, last_action=state.last_action)
        records: list[CycleRecord] = []
        if trace:
            steps = torch.as_tensor(state.step).expand(facts.shape[0]).tolist()
            for c, (out, rows) in enumerate(zip(cycles.outs, cycles.active)):
                recs = self.workspace.records(out, steps, c, index_layer=self.index_layer)
                records += recs if rows is None else [r for r, on in zip(recs, rows.tolist()) if on]
        last = None
        if self.efference:  # what it answers at an asking step (the argmax over the symbols, never <none> or ?)
            answer = cycles.logits[:, 2:].argmax(-1) + 2
            last = torch.where(torch.as_tensor(phase, device=answer.device) == 1, answer, 0)
        return cycles.logits, AgentState(ws, state.step + 1, last), records

    # ------------------------------------------------------------------ training
    def episode_logits(self, batch: StepBatch) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, T, V) of a padded batch and the mean consciousness-prior loss over the
        cycles of real steps (the bottleneck's auxiliary objective). Gradients flow back at most
        ``bptt_steps`` steps (the state is detached between windows; the forward values are unchanged), as
        memories are written fast and parameters learn slowly (DESIGN.md): a long episode (GraphSearch at
        100 vertices streams hundreds of edges) would otherwise explode the gradient through the slots."""
        B, T = batch.mask.shape
        state = self.workspace.initial_state(B)
        # Perception depends on the fact and its step alone, not on the state: every step of the episode is
        # perceived in one call (the per-step loop then runs only the cycles)
        steps = torch.arange(T, device=batch.facts.device).expand(B, T)
        sensory = self.model.perception({"fact": batch.facts.reshape(B * T, 3), "step": steps.reshape(B * T)})
        sensory = einops.rearrange(sensory, "(b t) n d -> b t n d", b=B)
        logits, aux = [], []
        said = None  # teacher forcing of the efference copy: the oracle's answer at the step before (0 while reading)
        if self.efference:
            said = F.pad(torch.where(batch.phase == 1, batch.target, 0)[:, :-1], (1, 0))  # (B, T)
        for t in range(T):
            if t and t % self.bptt_steps == 0:  # truncated backpropagation through time (same forward values)
                state = state.detach()
            text = None if batch.text is None else [row[t] for row in batch.text]
            state, cycles = self._step(state, batch.facts[:, t], batch.phase[:, t], t, inplace=False, text=text,
                                       sensory=sensory[:, t], last_action=None if said is None else said[:, t])
            logits.append(cycles.logits)
            aux.append(cycles.aux)  # (B,) the mean over each row's cycles
        valid = batch.mask.to(aux[0].dtype)  # (B, T)
        aux_loss = (torch.stack(aux, dim=1) * valid).sum() / valid.sum().clamp(min=1)
        if self.decode_loss:
            items = einops.rearrange(sensory[:, :, 0], "b t d -> (b t) d")  # the perceived fact items
            per_item = self.semantic_decoding_loss(items, batch.facts.reshape(B * T, 3))  # (B T,)
            aux_loss = aux_loss + self.decode_loss * (per_item * valid.flatten()).sum() / valid.sum().clamp(min=1)
        return torch.stack(logits, dim=1), aux_loss

    def semantic_decoding_loss(self, items: Tensor, ids: Tensor) -> Tensor:
        """Cross-entropy (N,) of decoding the fact items (N, d) into their own triples ids (N, 3), averaged over
        the three roles: role r is read from the residual left after the true concepts of the roles before it
        are explained away (teacher-forced semantic decoding: ``IndexLayer.decode_triple``'s order and
        explain-away)."""
        layer, residual, loss = self.index_layer, items, items.new_zeros(items.shape[0])
        for role in range(3):
            logits = layer.logits(layer.unbind(residual, role))  # (N, C)
            loss = loss + F.cross_entropy(logits, ids[:, role], reduction="none")
            residual = layer.explain_away(residual, ids[:, role], role)
        return loss / 3
