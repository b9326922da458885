"""Cognitive-cycle throughput of the workspace in its configured composition, at batch 1, 64 and 256.

The composition is the one configured in configs/cogarch/: bottleneck k4 (k = 4 winners), working slots (8
slots), long-term outer_product (and, for comparison, neural: Titans) and episodic em_llm, at dim 128, one
sensory item per cycle, inference (under ``torch.inference_mode()``, which skips autograd's bookkeeping: about
15% more cycles/s at batch 1 than ``torch.no_grad()``). Each is timed with the state as a value (the default) and
with ``Workspace.cycle(..., inplace=True)`` (memories write into the input state's tensors). A reference
torch op timed in the same run (a 128x128 linear layer at the same batch) shows how much of the cycle is
framework overhead. Batch 1 runs with one torch thread, the batched rows with ``BENCH_THREADS`` (default 2, the
machine's cores); the table states each row's threads. The last rows time the same cycle compiled by
``cogarch.workspace.compile_cycle(ws, fullgraph=True)`` (``torch.compile`` with ``{"cpp_wrapper": True}``, dynamo
capturing scalar outputs: one graph, in
place, its host-side wrapper in C++ as well; the compile itself, tens of seconds, is left out of the timing), beside the eager in-place
cycle of the same workspace. Its state writes go into the state's own tensors (row writes as ``index_put_``, the
boundary refinement of the streams closing an event, however many, in the graph; the long-term update as one
elementwise pass), and
its batched matrix-vector products are fused loops rather than a BLAS call per example, so it runs faster than the
eager cycle at every batch size. Its rows go up to batch 1024: a call's fixed costs (the compiled function's guards,
its wrapper's tensor handles, the small kernels' thread start-ups) are shared by more streams there, and the
item-cycles/s of one process still rise past batch 256.

The last table sets the compiled batch-256 cycle in one process on the batched threads (its row above) against
as many single-thread processes side by side, timed right after it, each with its own 256 streams, over the same
seconds: the same cores used as a sweep of that many jobs on hydra's joblib launcher uses them (one torch thread
per job). The sum of their item-cycles/s is the machine's; the ratio says how much of the cores one
multi-threaded process leaves unused. The same table runs that many batches side by side in one process, one
Python thread each (one torch thread, its own 256 streams): one process's way to most of the processes' share.
A table says what the memories cost: the compiled batch-256 cycle with the episodic memory's boundary refinement
off, then the episodic memory left out, then the long-term memory as well, beside the full composition. The last one
sets the cycle compiled ahead of time (cogarch.aot: torch.export and AOTInductor, no guards checked per call) beside
compile_cycle at batch 1, 256 and 1024, over 12 rounds: the machine's speed drifts, so each row gives its median, its
range and the rounds that reached the goal, and a line under it says what that makes of the goal.

    .venv/bin/python benchmarks/bench_core.py        (part of `make bench`)
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cogarch.aot import aot_compile_cycle
from cogarch.runtime import keep_freed_memory
from cogarch.workspace import COMPILE_OPTIONS, MotorHead, Workspace, compile_cycle

DIM, ACTIONS = 128, 100
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "cogarch"
COMPOSITION = {"bottleneck": "k4", "working": "slots", "episodic": "em_llm"}  # + the long-term option timed
SECONDS = float(os.environ.get("BENCH_SECONDS", "2.0"))
BATCHES = (1, 64, 256)
BATCHED_THREADS = int(os.environ.get("BENCH_THREADS", "2"))
THREADS = {1: 1}  # batch -> torch threads; other batches use BATCHED_THREADS
SIDE_BY_SIDE_BATCH = 256  # the batch of each single-thread process in the side-by-side row
# the compiled table's batches: up to 1024, where one process's item-cycles/s peaked on the 2-core AMD EPYC when this
# row was added (2048 and 4096 gave fewer)
COMPILED_BATCHES = (1, 16, 64, SIDE_BY_SIDE_BATCH, 1024)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what platform reports): the figures differ between machines
    (this project's 2-core boxes have been an Intel Xeon and an AMD EPYC, on which MKL's batched small products are
    slow), so each table says which one printed it."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]}, {len(names)} logical CPUs" if names else (platform.processor() or platform.machine())


def component(group: str, option: str, **overrides):
    node = OmegaConf.create({"dim": DIM, "node": OmegaConf.load(CONFIGS / group / f"{option}.yaml")})
    return instantiate(node.node, **overrides)


def workspace(long_term: str, episodic: str = COMPOSITION["episodic"], refine: bool = True) -> Workspace:
    """The configured composition with ``long_term`` (and ``episodic``, with or without its boundary ``refine``ment);
    the option ``none`` leaves that memory out."""
    torch.manual_seed(0)
    options = [("working", COMPOSITION["working"], {}), ("long_term", long_term, {}),
               ("episodic", episodic, {} if refine else {"refine": False})]
    memories = [component(group, option, **kw) for group, option, kw in options if option != "none"]
    return Workspace(DIM, component("bottleneck", COMPOSITION["bottleneck"]), MotorHead(DIM, ACTIONS), memories)


# The compositions of the cost table: each memory of the configured one left out in turn (long_term, episodic,
# refine: the episodic memory's boundary refinement)
ABLATIONS = (("outer_product", COMPOSITION["episodic"], True), ("outer_product", COMPOSITION["episodic"], False),
             ("outer_product", "none", False), ("none", "none", False))
# the ablation table times its compositions in turn, ROUNDS rounds of SECONDS / 2 each, and reports each one's median
# (at 3 rounds of SECONDS the drift of the machine's speed could reorder its rows)
ROUNDS = 8


def composition_costs(batch: int) -> list[tuple[str, float]]:
    """Item-cycles/s of the compiled in-place cycle at ``batch`` for each composition of ABLATIONS: all compiled
    first, then timed in turn, ROUNDS rounds (the machine's speed drifts; alternating spreads the drift over
    all of them), the median of each."""
    torch._dynamo.reset()  # the cycles compiled before (one code object, Workspace.cycle) count to its recompile limit
    runs = []
    for long_term, episodic, refine in ABLATIONS:
        ws = workspace(long_term, episodic, refine)
        label = f"long_term={long_term}, episodic={episodic}"
        if episodic != "none" and not refine:
            label += " without boundary refinement (refine=false)"
        runs.append((label, ws, compiled_cycle(ws)))
    rates = alternated([(ws, cycle) for _, ws, cycle in runs], batch, ROUNDS)
    return [(label, statistics.median_low(r)) for (label, _, _), r in zip(runs, rates)]


def alternated(runs: list[tuple[Workspace, object]], batch: int, rounds: int) -> list[list[float]]:
    """Item-cycles/s of each (workspace, cycle) of ``runs`` at ``batch`` (in place), timed in turn for ``rounds``
    rounds of SECONDS / 2: the machine's speed drifts, and alternating spreads the drift over all of them."""
    rates = [[] for _ in runs]
    for _ in range(rounds):
        for (ws, cycle), out in zip(runs, rates):
            out.append(cycles_per_s(ws, batch, True, cycle, seconds=SECONDS / 2) * batch)
    return rates


@torch.inference_mode()
def cycles_per_s(ws: Workspace, batch: int, inplace: bool, cycle=None, faults: list | None = None,
                 seconds: float = SECONDS) -> float:
    """Cycles/s of ``cycle`` (default ``ws.cycle``) over ``seconds`` after a warm-up; appends the minor page faults
    per timed cycle to ``faults`` when given."""
    import resource

    cycle = ws.cycle if cycle is None else cycle
    state = ws.initial_state(batch)
    inputs = torch.randn(64, batch, 1, DIM)
    for t in range(10):  # warm-up: fill slots, open events (and compile, for a compiled cycle)
        state, _ = cycle(state, inputs[t], inplace=inplace)
    n, before, start = 0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state, _ = cycle(state, inputs[n % 64], inplace=inplace)
        n += 1
    rate = n / (time.perf_counter() - start)
    if faults is not None:
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n)
    return rate


@torch.inference_mode()
def reference_ops_per_s(batch: int) -> float:
    layer, x = torch.nn.Linear(DIM, DIM), torch.randn(batch, DIM)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS / 4:
        layer(x)
        n += 1
    return n / (time.perf_counter() - start)


def compiled_cycle(ws: Workspace):
    return compile_cycle(ws, fullgraph=True, dynamic=False)


# The goal: cycles/s at batch 1, item-cycles/s batched
GOAL_ONE, GOAL_BATCHED = 1_000, 50_000
# 12 rounds: the machine's speed drifts by 15% or more within minutes, so the last table gives each row's range and how
# many rounds reached the goal, not one number
AOT_BATCHES, AOT_ROUNDS = (1, SIDE_BY_SIDE_BATCH, 1024), 12


def goal(batch: int) -> int:
    return GOAL_ONE if batch == 1 else GOAL_BATCHED


def aot_rows() -> tuple[list[str], str]:
    """The cycle compiled ahead of time (cogarch.aot.aot_compile_cycle) against compile_cycle, each batch of
    AOT_BATCHES: both made first, then timed in turn, AOT_ROUNDS rounds of SECONDS / 2. Returns the table's rows
    (item-cycles/s: the median, the range, the rounds at the goal) and a line on the goal over those rounds."""
    torch._dynamo.reset()  # (compile_cycle's graphs count to the recompile limit of Workspace.cycle's code object)
    rows, medians = [], {}
    for batch in AOT_BATCHES:
        threads = THREADS.get(batch, BATCHED_THREADS)
        torch.set_num_threads(threads)
        ws = workspace("outer_product")
        start = time.perf_counter()
        aot = aot_compile_cycle(ws, ws.initial_state(batch), torch.zeros(batch, 1, DIM))
        made = time.perf_counter() - start
        ahead, jit = alternated([(ws, aot), (ws, compiled_cycle(ws))], batch, AOT_ROUNDS)
        rates = {"ahead of time": ahead, "compile_cycle": jit}
        cells = []
        for name in ("compile_cycle", "ahead of time"):
            v = rates[name]
            medians[name, batch] = (statistics.median(v), sum(x >= goal(batch) for x in v))
            cells.append(f"{medians[name, batch][0]:,.0f} ({min(v):,.0f} to {max(v):,.0f})")
        ratio = medians["ahead of time", batch][0] / medians["compile_cycle", batch][0]
        hits = " / ".join(f"{medians[name, batch][1]} of {AOT_ROUNDS}" for name in ("compile_cycle", "ahead of time"))
        rows.append(f"| {batch} | {threads} | {cells[0]} | {cells[1]} | {ratio:.2f} | {hits} | {made:.0f} |")
    one = min(medians[name, 1][0] for name in ("compile_cycle", "ahead of time"))
    (name, batch), (best, hits) = max(((k, v) for k, v in medians.items() if k[1] > 1), key=lambda kv: kv[1][0])
    verdict = (f"Goal over these rounds: batch 1, >= {GOAL_ONE:,} cycles/s: {'met' if one >= GOAL_ONE else 'not met'} "
               f"(the lower median, {one:,.0f}); batched, >= {GOAL_BATCHED:,} item-cycles/s: the best median is "
               f"{best:,.0f} ({name}, batch {batch}), at the goal in {hits} of its {AOT_ROUNDS} rounds.")
    return rows, verdict


def worker(batch: int) -> None:
    """One process of the side-by-side row (``--worker BATCH``): one torch thread, the compiled in-place cycle,
    compiled; prints ``ready``, waits for a line on stdin, then times the cycle and prints its cycles/s."""
    torch.set_num_threads(1)
    ws = workspace("outer_product")
    cycle = compiled_cycle(ws)
    with torch.inference_mode():  # compile before the common start (cycles_per_s warms up after it)
        cycle(ws.initial_state(batch), torch.randn(batch, 1, DIM), inplace=True)
    print("ready", flush=True)
    sys.stdin.readline()
    print(cycles_per_s(ws, batch, True, cycle), flush=True)


def side_by_side(processes: int, batch: int) -> list[float]:
    """Cycles/s of ``processes`` single-thread processes, each running its own batch of ``batch`` streams, timed
    over the same seconds (all are compiled and warmed up first, then started together): how a sweep of as many
    jobs side by side (hydra's joblib launcher, one torch thread per job on as many cores) uses the machine."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(batch)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for _ in range(processes)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a side-by-side worker failed before timing (exit code {p.wait()}); run "
                                   f"`{sys.executable} {__file__} --worker {batch}` to see its error")
        for p in procs:  # the go signal
            p.stdin.write("go\n")
            p.stdin.flush()
        return [float(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:  # (finished after printing; killed if another one failed)
            if p.poll() is None:
                p.kill()
            p.wait()


MALLOC_ROUNDS = 3  # the malloc table alternates its two settings, this many processes each


def alone(batch: int, threads: int, keep: bool) -> None:
    """One process of the malloc table (``--alone BATCH THREADS keep|default``): glibc's malloc as
    cogarch.runtime.keep_freed_memory leaves it, or its defaults; the compiled in-place cycle on ``threads``
    threads; prints its item-cycles/s and the minor page faults per cycle."""
    if keep:
        keep_freed_memory()
    torch.set_num_threads(threads)
    ws = workspace("outer_product")
    faults: list[float] = []
    rate = cycles_per_s(ws, batch, True, compiled_cycle(ws), faults)  # (its warm-up compiles)
    print(f"{rate * batch} {faults[0]}")


def malloc_rows(batch: int, threads: int) -> list[str]:
    """glibc's malloc defaults against keep_freed_memory (the CLI's setting): MALLOC_ROUNDS processes of each,
    alternated, the median item-cycles/s and page faults per cycle of each."""
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(MALLOC_ROUNDS):
        for keep in ((False, True) if r % 2 == 0 else (True, False)):
            mode = "keep" if keep else "default"
            out = subprocess.run([sys.executable, __file__, "--alone", str(batch), str(threads), mode],
                                 capture_output=True, text=True, check=True)
            rate, faults = (float(x) for x in out.stdout.split()[-2:])
            runs[keep].append((rate, faults))
    rows = []
    for keep, label in ((False, "glibc's defaults"), (True, "keep_freed_memory() (the CLI's setting)")):
        rate, faults = statistics.median_low(r for r, _ in runs[keep]), statistics.median_low(f for _, f in runs[keep])
        rows.append(f"| {label} | {rate:,.0f} | {' / '.join(f'{r:,.0f}' for r, _ in runs[keep])} | {faults:,.1f} |")
    return rows


def threads_side_by_side(ws: Workspace, cycle, threads: int, batch: int) -> list[float]:
    """Cycles/s of ``threads`` Python threads of this process, each running ``cycle`` (compiled, in place) on its own
    batch of ``batch`` streams with one torch thread, timed over the same seconds: the side-by-side processes within
    one process, sharing its weights and its compile. The compiled cycle's C++ wrapper releases the GIL while it
    runs, so the threads run at the same time; the Python around each call (the compiled function's guards,
    compile_cycle's setting) takes turns. Leaves this thread's torch threads at ``threads``: MKL's setting is
    per process, and each thread sets 1."""
    torch.set_num_threads(1)  # as in the threads: the number of threads is part of what a compiled graph is for
    with torch.inference_mode():  # every batch warmed up here, one after the other (a first call may compile)
        states = [ws.initial_state(batch) for _ in range(threads)]
        inputs = torch.randn(64, batch, 1, DIM)
        for i in range(threads):
            for t in range(10):
                states[i], _ = cycle(states[i], inputs[t], inplace=True)
    ready, stop = threading.Barrier(threads + 1), threading.Event()
    rates, errors = [0.0] * threads, []

    def run(i: int) -> None:
        try:
            torch.set_num_threads(1)
            with torch.inference_mode():  # (grad modes are per thread)
                state, n = states[i], 0
                ready.wait()
                start = time.perf_counter()
                while not stop.is_set():
                    state, _ = cycle(state, inputs[n % 64], inplace=True)
                    n += 1
                rates[i] = n / (time.perf_counter() - start)
        except BaseException as e:  # reported by the caller; the others stop
            errors.append(e)
            stop.set()
            ready.abort()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    try:
        ready.wait()
        stop.wait(SECONDS)  # (returns at once if a thread failed)
    except threading.BrokenBarrierError:
        pass
    stop.set()
    for w in workers:
        w.join()
    torch.set_num_threads(threads)
    if errors:
        raise RuntimeError(f"a cycle thread failed: {errors[0]!r}") from errors[0]
    return rates


def main() -> str:
    composition = ", ".join(f"{group}={option}" for group, option in COMPOSITION.items())
    lines = [
        f"## Workspace cycles/s (dim {DIM}; configs/cogarch: {composition}, long_term as listed)\n",
        f"CPU: {cpu_name()}; torch {torch.__version__}.\n",
        f"goal: >= {GOAL_ONE:,} cycles/s at batch 1 and >= {GOAL_BATCHED:,} item-cycles/s batched (the last table "
        "says over how many rounds). Threads: the torch intra-op "
        f"threads of each row (batch 1: {THREADS[1]}, as one stream gains nothing from a second; batched: "
        f"{BATCHED_THREADS}, BENCH_THREADS sets it); the reference Linear is timed with the same threads.\n",
        "| long-term memory | state | batch | threads | cycles/s | item-cycles/s | reference Linear(128,128) calls/s | cycle cost in Linear calls |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for long_term in ("outer_product", "neural"):
        ws = workspace(long_term)
        for batch in BATCHES:
            threads = THREADS.get(batch, BATCHED_THREADS)
            torch.set_num_threads(threads)
            ref = reference_ops_per_s(batch)
            for inplace in (False, True):
                rate = cycles_per_s(ws, batch, inplace)
                mode = "in-place" if inplace else "value"
                lines.append(f"| {long_term} | {mode} | {batch} | {threads} | {rate:,.0f} | {rate * batch:,.0f} | {ref:,.0f} | {ref / rate:.0f} |")
    lines += [
        "",
        f"Compiled: `cogarch.workspace.compile_cycle(ws, fullgraph=True, dynamic=False)` (torch.compile with "
        f"options={COMPILE_OPTIONS}, scalar outputs captured) "
        "(outer_product, in place) against the eager in-place cycle of the same workspace, timed one after the other:\n",
        "| batch | threads | eager cycles/s | compiled cycles/s | compiled item-cycles/s | compiled / eager |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    ws = workspace("outer_product")
    compiled, fast, rows = compiled_cycle(ws), {}, {}
    # (one compile per batch size; batch 256 last, as the next table compares it with processes side by side)
    for batch in sorted(COMPILED_BATCHES, key=lambda b: b == SIDE_BY_SIDE_BATCH):
        threads = THREADS.get(batch, BATCHED_THREADS)
        torch.set_num_threads(threads)
        eager, fast[batch] = cycles_per_s(ws, batch, True), cycles_per_s(ws, batch, True, compiled)
        rows[batch] = (f"| {batch} | {threads} | {eager:,.0f} | {fast[batch]:,.0f} | {fast[batch] * batch:,.0f} "
                       f"| {fast[batch] / eager:.2f} |")
    lines += [rows[batch] for batch in sorted(rows)]
    # The same cores as separate processes: the compiled batch-256 cycle in one process on BATCHED_THREADS threads
    # (its row above, timed just before), against as many single-thread processes side by side, each with its
    # own batch of 256.
    batch, n = SIDE_BY_SIDE_BATCH, BATCHED_THREADS
    one = fast[batch] * batch
    rates = side_by_side(n, batch)
    total = sum(rates) * batch
    # The threads call the same compiled code through a wrapper without fullgraph=True: torch 2.13 checks fullgraph
    # calls with one process-wide count of compiled frames, which two threads' calls reset under each other (a
    # spurious "found no compiled frames" error; pytorch/pytorch#185138 makes it per thread). The wrapper shares the
    # code object's cache of compiled graphs; the one-torch-thread graph the threads need compiles in their warm-up.
    unchecked = compile_cycle(ws, dynamic=False)
    in_threads = threads_side_by_side(ws, unchecked, n, batch)
    threaded = sum(in_threads) * batch
    lines += [
        "",
        f"The same {n} cores as {n} processes side by side (one torch thread each, the compiled in-place cycle at "
        f"batch {batch} in each, timed over the same seconds; as a sweep of {n} jobs on hydra's joblib launcher "
        f"runs) against one process on {n} threads, and that process running {n} batches of {batch} side by side in "
        f"{n} Python threads of one torch thread each (the compiled cycle's C++ runs without the GIL):\n",
        "| setup | item-cycles/s | per process or thread |",
        "|---|---:|---|",
        f"| 1 process, {n} threads, batch {batch} | {one:,.0f} | |",
        f"| {n} processes, 1 thread each, batch {batch} each | {total:,.0f} | "
        + " / ".join(f"{r * batch:,.0f}" for r in rates) + " |",
        f"| ratio | {total / one:.2f} | |",
        f"| 1 process, {n} Python threads, 1 torch thread and batch {batch} each | {threaded:,.0f} | "
        + " / ".join(f"{r * batch:,.0f}" for r in in_threads) + " |",
        f"| ratio | {threaded / one:.2f} | |",
    ]
    lines += [
        "",
        f"glibc's malloc: the compiled in-place cycle at batch {batch} in one process on {n} threads, with glibc's "
        "defaults (freed memory at the top of the heap goes back to the system, and each cycle takes it again, a "
        "page fault per 4 KiB page) against `cogarch.runtime.keep_freed_memory()`, which the CLI applies and every "
        f"other table here runs with; {MALLOC_ROUNDS} processes each, alternated, the median:\n",
        "| malloc | item-cycles/s | each process | minor page faults per cycle |",
        "|---|---:|---|---:|",
    ] + malloc_rows(batch, n)
    costs = composition_costs(SIDE_BY_SIDE_BATCH)
    full = costs[0][1]
    lines += [
        "",
        f"What the memories cost: the compiled in-place cycle at batch {SIDE_BY_SIDE_BATCH} on {n} threads with the "
        f"memories left out in turn (all compiled first, then timed in turn, {ROUNDS} rounds of {SECONDS / 2:g} s, "
        "the median of each):\n",
        "| composition (working=slots, bottleneck=k4) | item-cycles/s | time per cycle against the full composition |",
        "|---|---:|---:|",
    ] + [f"| {label} | {rate:,.0f} | {full / rate:.2f} |" for label, rate in costs]
    lines += [
        "",
        "Ahead of time: the same cycle exported (`torch.export`) and compiled by AOTInductor into a package "
        "(`cogarch.aot.aot_compile_cycle`, one per batch size), whose calls skip dynamo's guards and AOTAutograd's "
        f"Python wrapper, against `compile_cycle` (outer_product, in place); {AOT_ROUNDS} rounds of {SECONDS / 2:g} s "
        "each in turn. Item-cycles/s (cycles/s at batch 1): the median and the range over the rounds, and how many "
        f"rounds reached the goal ({GOAL_ONE:,} at batch 1, {GOAL_BATCHED:,} batched):\n",
        "| batch | threads | compile_cycle | ahead of time | ahead of time / compile_cycle (medians) "
        "| rounds at the goal (compile_cycle / ahead of time) | seconds to make it |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows, verdict = aot_rows()
    lines += rows + ["", verdict]
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    if sys.argv[1:2] != ["--alone"]:  # (the malloc table's processes choose for themselves)
        keep_freed_memory()  # as the CLI does
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--alone"]:
        alone(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "keep")
    else:
        sys.exit(0 if main() else 1)
