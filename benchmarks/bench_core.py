"""Cognitive-cycle throughput of the workspace at default sizes, at batch 1 and batch 256.

Default sizes: dim 128, 8 working-memory slots, k = 4 winners, outer-product long-term memory and EM-LLM
episodic memory (the default composition), one sensory item per cycle, inference (no autograd). Also the
same cycle with Titans neural memory as the long-term store. A reference torch op timed in the same run
(a 128x128 linear layer at the same batch) shows how much of the cycle is framework overhead.

    .venv/bin/python benchmarks/bench_core.py        (part of `make bench`)
"""

from __future__ import annotations

import os
import sys
import time

import torch

from cogarch.bottleneck import Bottleneck
from cogarch.memory.episodic import EpisodicMemory
from cogarch.memory.long_term import OuterProductMemory
from cogarch.memory.neural import NeuralMemory
from cogarch.memory.working import WorkingMemory
from cogarch.workspace import MotorHead, Workspace

DIM, SLOTS, K, ACTIONS = 128, 8, 4, 100
SECONDS = float(os.environ.get("BENCH_SECONDS", "2.0"))


def workspace(long_term: str) -> Workspace:
    torch.manual_seed(0)
    lt = OuterProductMemory(DIM, capacity=256) if long_term == "outer_product" else NeuralMemory(DIM)
    memories = [WorkingMemory(DIM, slots=SLOTS), lt, EpisodicMemory(DIM, capacity=256, max_event_len=16, gamma=2.0)]
    return Workspace(DIM, Bottleneck(DIM, k=K), MotorHead(DIM, ACTIONS), memories)


@torch.no_grad()
def cycles_per_s(ws: Workspace, batch: int) -> float:
    state = ws.initial_state(batch)
    inputs = torch.randn(64, batch, 1, DIM)
    for t in range(10):  # warm-up: fill slots, open events
        state, _ = ws.cycle(state, inputs[t])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        state, _ = ws.cycle(state, inputs[n % 64])
        n += 1
    return n / (time.perf_counter() - start)


@torch.no_grad()
def reference_ops_per_s(batch: int) -> float:
    layer, x = torch.nn.Linear(DIM, DIM), torch.randn(batch, DIM)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS / 4:
        layer(x)
        n += 1
    return n / (time.perf_counter() - start)


def main() -> str:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    lines = [
        "## Workspace cycles/s (dim 128, 8 slots, k 4; working + long-term + episodic memory)\n",
        f"torch threads: {torch.get_num_threads()}; goal: >= 1,000 cycles/s at batch 1 and >= 50,000 item-cycles/s batched.\n",
        "| long-term memory | batch | cycles/s | item-cycles/s | reference Linear(128,128) calls/s | cycle cost in Linear calls |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for long_term in ("outer_product", "neural"):
        ws = workspace(long_term)
        for batch in (1, 256):
            rate = cycles_per_s(ws, batch)
            ref = reference_ops_per_s(batch)
            lines.append(f"| {long_term} | {batch} | {rate:,.0f} | {rate * batch:,.0f} | {ref:,.0f} | {ref / rate:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
