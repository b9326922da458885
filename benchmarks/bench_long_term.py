"""Long-term memory (PMI outer-product stores): capacity curves and time per operation.

1. TripleMemory capacity: T random triples over 1,000 random unit concept embeddings (d = 256, key_dim
   32); every triple is completed from two roles and decoded to the nearest concept. T = 50, 100, 200, ...
   doubling until recall of (s, p, ?) drops below 50%.
2. OuterProductMemory capacity: T facts stored as role-bound sums s*r_s + p*r_p + o*r_o (random +-1 role
   vectors), cued by s*r_s + p*r_p; the readout is unbound with r_o and decoded. Same doubling.
3. Time per single operation (batch 1, one triple / item) against the number already stored, next to a
   list store (keys kept in a growing buffer, exact nearest-key lookup) as a reference that grows with N.

    .venv/bin/python benchmarks/bench_long_term.py      # prints markdown tables
"""

# B batch, T stored triples / facts, C concepts, d model dim, r key dim

from __future__ import annotations

import os
import platform
import time

import torch
import torch.nn.functional as F

from cogarch.memory.long_term import OuterProductMemory, TripleMemory

D, C, KEY_DIM = 256, 1000, 32
MAX_T = int(os.environ.get("BENCH_MAX_T", 102_400))
CHUNK = 4096  # triples per write()/complete() call, to bound transient memory
REPEATS = int(os.environ.get("BENCH_REPEATS", 20))


def concept_table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(C, D, generator=g), dim=-1)  # (C, d)


def random_triples(T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, C, (T, 3), generator=g)  # (T, 3); (s, p) may repeat: counted as errors


def accuracy(vectors: torch.Tensor, E: torch.Tensor, target: torch.Tensor) -> float:
    return (vectors @ E.T).argmax(-1).eq(target).float().mean().item()


@torch.no_grad()
def triple_curve(E: torch.Tensor) -> list[tuple]:
    tm, rows, T = TripleMemory(D, key_dim=KEY_DIM), [], 50
    while T <= MAX_T:
        ids = random_triples(T, seed=T)
        s, p, o = (E[ids[:, r]][None] for r in range(3))  # (1, T, d)
        state, start = tm.initial_state(1), time.perf_counter()
        for i in range(0, T, CHUNK):
            state = tm.write(state, s[:, i : i + CHUNK], p[:, i : i + CHUNK], o[:, i : i + CHUNK])
        write_s = time.perf_counter() - start
        acc = [0.0, 0.0, 0.0]
        for i in range(0, T, CHUNK):
            sl = slice(i, i + CHUNK)
            n = len(ids[sl])
            acc[0] += n * accuracy(tm.complete(state, s=s[:, sl], p=p[:, sl])[0], E, ids[sl, 2])
            acc[1] += n * accuracy(tm.complete(state, s=s[:, sl], o=o[:, sl])[0], E, ids[sl, 1])
            acc[2] += n * accuracy(tm.complete(state, p=p[:, sl], o=o[:, sl])[0], E, ids[sl, 0])
        rows.append((T, *(a / T for a in acc), write_s))
        if acc[0] / T < 0.5:
            break
        T *= 2
    return rows


@torch.no_grad()
def outer_product_curve(E: torch.Tensor) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    roles = torch.randint(0, 2, (3, D), generator=g).float() * 2 - 1  # (3, d) +-1 role vectors
    m, rows, T = OuterProductMemory(D), [], 50
    while T <= MAX_T:
        ids = random_triples(T, seed=T)
        facts = (E[ids] * roles).sum(1)  # (T, d)
        state, _ = m.receive(m.initial_state(1), facts[None])
        cue = (E[ids[:, :2]] * roles[:2]).sum(1)  # (T, d) the fact without its object
        readout = F.normalize(cue, dim=-1) @ state.matrix[0].T  # (T, d) = M k(cue) for each cue
        acc = accuracy(readout * roles[2], E, ids[:, 2])
        rows.append((T, acc))
        if acc < 0.5:
            break
        T *= 2
    return rows


def per_op_us(fn, repeats: int = REPEATS, rounds: int = 5) -> float:
    """Microseconds per call: the best of `rounds` rounds of `repeats` calls (robust to machine load)."""
    for _ in range(3):
        fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 1e6 * best


@torch.no_grad()
def timings(E: torch.Tensor) -> list[tuple]:
    tm, m = TripleMemory(D, key_dim=KEY_DIM), OuterProductMemory(D)
    rows = []
    for N in (100, 1_000, 10_000, 100_000):
        ids = random_triples(N, seed=7)
        t_state = tm.initial_state(1)
        for i in range(0, N, CHUNK):
            sl = slice(i, i + CHUNK)
            t_state = tm.write(t_state, E[ids[sl, 0]][None], E[ids[sl, 1]][None], E[ids[sl, 2]][None])
        o_state = m.initial_state(1)
        for i in range(0, N, CHUNK):
            o_state, _ = m.receive(o_state, E[ids[i : i + CHUNK, 0]][None])
        s, p, o = (E[ids[:1, r]] for r in range(3))  # (1, d)
        keys = torch.cat([E[ids[:, 0]], torch.zeros(1, D)])  # list store: (N + 1, d)
        rows.append((
            N,
            per_op_us(lambda: tm.write(t_state, s, p, o)),
            per_op_us(lambda: tm.complete(t_state, s=s, p=p)),
            per_op_us(lambda: m.receive(o_state, s[:, None])),
            per_op_us(lambda: m.read(o_state, s)),
            per_op_us(lambda: torch.cat([keys, s])),  # append (copies, as a growing buffer does)
            per_op_us(lambda: keys[(keys @ s[0]).argmax()]),  # exact nearest-key lookup
        ))
    return rows


def main() -> None:
    # Batch-1 operations on small tensors: one thread avoids oversubscription noise on the 2-core machines.
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    torch.manual_seed(0)
    E = concept_table()
    print("# Long-term memory (PMI outer-product stores)\n")
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads). d = {D}, {C} concepts.\n")

    print(f"## TripleMemory capacity (key_dim {KEY_DIM}; state 3 x {KEY_DIM}^2 x {D} floats = "
          f"{3 * KEY_DIM**2 * D * 4 / 2**20:.1f} MiB per example)\n")
    print("| T triples | recall (s, p, ?) | recall (s, ?, o) | recall (?, p, o) | write all, s |")
    print("|---:|---:|---:|---:|---:|")
    for T, a_o, a_p, a_s, w in triple_curve(E):
        print(f"| {T:,} | {a_o:.3f} | {a_p:.3f} | {a_s:.3f} | {w:.2f} |")

    print(f"\n## OuterProductMemory capacity (facts as role-bound sums; state {D}^2 floats = "
          f"{D * D * 4 / 2**20:.2f} MiB per example)\n")
    print("| T facts | recall of the object from (s, p) |")
    print("|---:|---:|")
    for T, acc in outer_product_curve(E):
        print(f"| {T:,} | {acc:.3f} |")

    print(f"\n## Time per operation (batch 1, microseconds, best of 5 rounds of {REPEATS}) against items stored\n")
    print("| stored N | Triple write | Triple complete | OuterProduct receive | OuterProduct read "
          "| list store append (ref.) | list store lookup (ref.) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for N, *us in timings(E):
        print(f"| {N:,} | " + " | ".join(f"{u:,.0f}" for u in us) + " |")
    print("\nThe outer-product stores have a fixed-size state, so their time per operation does not depend "
          "on N; the list store's grows with N (and its memory with it).")


if __name__ == "__main__":
    main()
