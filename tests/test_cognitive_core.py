"""The whole core composed: perception -> workspace with every memory -> records in words, snapshots."""

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cogarch.bottleneck import Bottleneck
from cogarch.index_layer import IndexLayer
from cogarch.memory.episodic import EpisodicMemory
from cogarch.memory.long_term import OuterProductMemory
from cogarch.memory.neural import NeuralMemory
from cogarch.memory.working import WorkingMemory
from cogarch.perception import Perception
from cogarch.trace import MemorySnapshot
from cogarch.workspace import MotorHead, Workspace

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "cogarch"
VOCAB = ("<none>", "?", "go", "get", "is_in", "mary", "john", "apple", "kitchen", "garden", "office")


def build(dim=32, neural=True, episodic=True):
    torch.manual_seed(0)
    index = IndexLayer(VOCAB, dim)
    memories = [WorkingMemory(dim, slots=4), OuterProductMemory(dim, capacity=64)]
    if neural:
        memories.append(NeuralMemory(dim, chunk_size=4))
    if episodic:
        memories.append(EpisodicMemory(dim, capacity=64, max_event_len=8, window=8, gamma=2.0))
    ws = Workspace(dim, Bottleneck(dim, k=2), MotorHead(dim, len(VOCAB)), memories)
    return index, Perception(index, dim, text=False), ws


def facts(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, len(VOCAB), (T, B, 3), generator=g)


def run(perception, ws, fact_seq):
    state = ws.initial_state(fact_seq.shape[1])
    outs = []
    for f in fact_seq:
        state, out = ws.cycle(state, perception({"fact": f}))
        outs.append(out)
    return state, outs


@torch.no_grad()
def test_batch_B_equals_B_runs_at_batch_1_with_every_memory():
    _, perception, ws = build()
    seq = facts(4, 12)
    state, outs = run(perception, ws, seq)
    # float32 rounding differs between batched and single-row kernels; the conscious state and the candidates
    # are at RMS 1, so an absolute tolerance of 1e-4 is a relative one of about 1e-5
    for b in range(4):
        single, outs1 = run(perception, ws, seq[:, b : b + 1])
        assert torch.allclose(single.conscious, state.conscious[b : b + 1], atol=1e-4)
        assert torch.allclose(outs1[-1].logits, outs[-1].logits[b : b + 1], atol=1e-4)
        for a, c in zip(MemorySnapshot.of(single).tensors.values(), MemorySnapshot.of(state).tensors.values()):
            assert torch.allclose(a.float(), c[b : b + 1].float(), atol=1e-4)


@torch.no_grad()
def test_records_name_winners_and_slots_in_words_and_round_trip(tmp_path):
    index, perception, ws = build()
    state, outs = run(perception, ws, facts(2, 6))
    records = ws.records(outs[-1], state.step, cycle=0, actions=[3, 4], index_layer=index)
    assert len(records) == 2
    r = records[0]
    assert len(r.winners) == 2 and set(r.winner_sources) <= set(outs[-1].sources)
    assert all(len(t) == 3 and all(w in VOCAB for w in t) for t in r.winner_concepts)
    assert len(r.slot_concepts) == 4 and any(s is not None for s in r.slot_concepts)
    assert len(r.write_weights) == 2 and len(r.write_weights[0]) == 4
    assert isinstance(r.boundary, bool) and "neural.surprise" in r.extra
    # a sensory winner decodes to the fact perceived this cycle (the index layer reads its own code back)
    sensory = [c for c, s in zip(r.winner_concepts, r.winner_sources) if s == "sensory"]
    json.dumps(r.to_json())
    snap = MemorySnapshot.of(state, step=6)
    snap.save(tmp_path / "s.safetensors")
    assert MemorySnapshot.load(tmp_path / "s.safetensors").equals(snap)
    if sensory:
        last = tuple(index.names(facts(2, 6)[-1][0:1])[0])
        assert tuple(sensory[0]) == last


@torch.no_grad()
def test_state_size_constant_over_10000_cycles_with_every_memory():
    _, perception, ws = build(dim=16)
    state = ws.initial_state(1)
    seq = facts(1, 100)
    sizes = set()
    for t in range(10_000):
        state, _ = ws.cycle(state, perception({"fact": seq[t % 100]}))
        if t % 2500 == 2499:
            sizes.add(MemorySnapshot.of(state).size_bytes())
    assert len(sizes) == 1 and torch.isfinite(state.conscious).all()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_cogarch_config_option_instantiates(path):
    cfg = OmegaConf.merge({"dim": 32}, {"part": OmegaConf.load(path)})
    part = cfg.part
    if not part:  # a "none" option
        return
    module = instantiate(part)
    if hasattr(module, "attach"):  # a memory that decodes triples reads the agent's index layer
        from cogarch.index_layer import IndexLayer

        module.attach(IndexLayer(("<none>", "?", *(f"c{i}" for i in range(20))), 32))
    if hasattr(module, "initial_state"):
        state = module.initial_state(2)
        cands, mask, _ = module.propose(state, torch.randn(2, 32))
        assert cands.shape[0] == 2 and cands.shape[-1] == 32 and mask.shape == cands.shape[:2]
