"""Plots of what happened inside the agent (matplotlib Figures outside pyplot: no display needed).

Every function returns ``(figure, data)``: the matplotlib Figure and the numbers it drew (a dict), so tests
and notebooks can check a plot against the trace rather than trust a picture.

- :func:`plot_competition`: workspace competition, candidates x cycles heatmap of scores, winners marked,
  candidates grouped by source module;
- :func:`plot_working_memory`: working-memory slots x cycles with the decoded concept in each cell;
- :func:`plot_long_term_graph`: a networkx graph of triples: those long-term memory completes from a
  snapshot (``(s, p, ?)`` cues read by contraction and decoded by the index layer), or, without a long-term
  memory, the triples the workspace broadcast (what a long-term memory would consolidate);
- :func:`plot_surprise`: surprise per cycle with event boundaries;
- :func:`plot_pca`: PCA of concept representations along a GraphTrace episode, drawn on the graph's edges.

Axes: C cycles, N candidates, K slots, T steps, d model dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from cogarch.inspect.html import words


def _figure(figsize) -> tuple[Figure, Any]:
    """A figure outside pyplot (its Agg canvas draws without a display; nothing global is kept, so many plots
    do not accumulate open figures; a notebook shows a returned Figure through its inline formatter)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _records(episode_or_records) -> list:
    records = getattr(episode_or_records, "records", episode_or_records)
    records = list(records)
    if not records:
        raise ValueError("no cycle records to plot (an empty episode or a run without trace.jsonl)")
    return records


def _cycle_labels(records) -> list[str]:
    return [f"{r.step}.{r.cycle}" for r in records]


# ----------------------------------------------------------------------------------------- competition
def plot_competition(episode_or_records, max_cycles: int = 80) -> tuple[Figure, dict[str, Any]]:
    """Heatmap of candidate scores (rows: candidates grouped by source; columns: cycles), winners marked.

    Inputs: an :class:`cogarch.inspect.Episode` or a list of CycleRecords with ``candidates`` (a workspace
    agent's trace); at most ``max_cycles`` cycles are drawn (the first ones).
    Output: (fig, data) with ``scores`` (N, C) float array (NaN where a candidate was masked or absent),
    ``order`` (N,) the original candidate index of each row, ``sources`` (N,) the source of each row,
    ``winners`` list of (row, column) cells marked, ``winner_candidates`` per column the original candidate
    indices marked (equal to each record's ``winners``), ``cycles`` the column labels "step.cycle".
    Raises ValueError when the records have no candidates (a baseline agent's trace).
    """
    records = _records(episode_or_records)[:max_cycles]
    if any(r.candidates is None for r in records):
        raise ValueError("these records have no candidates: the agent has no workspace (a baseline?)")
    n = max(len(r.candidates) for r in records)
    sources = [None] * n
    for r in records:  # the source of each candidate position (the layout is fixed per agent)
        for i, c in enumerate(r.candidates):
            sources[i] = sources[i] or c.get("source")
    first = {s: i for i, s in reversed(list(enumerate(sources)))}
    order = sorted(range(n), key=lambda i: (first[sources[i]], i))  # grouped by source, stable
    row_of = {cand: row for row, cand in enumerate(order)}
    scores = np.full((n, len(records)), np.nan)
    marked, per_column = [], []
    for col, r in enumerate(records):
        for i, c in enumerate(r.candidates):
            if c.get("score") is not None:
                scores[row_of[i], col] = c["score"]
        per_column.append(list(r.winners or []))
        marked += [(row_of[w], col) for w in (r.winners or [])]
    fig, ax = _figure((min(3 + 0.25 * len(records), 20), 1.5 + 0.3 * n))
    im = ax.imshow(np.ma.masked_invalid(scores), aspect="auto", cmap="viridis", interpolation="nearest")
    if marked:
        ys, xs = zip(*marked)
        ax.scatter(xs, ys, marker="s", s=40, facecolors="none", edgecolors="red", linewidths=1.5, label="winner")
        ax.legend(loc="upper right", fontsize=7)
    ordered_sources = [sources[i] for i in order]
    for row in range(1, n):  # a line between source groups
        if ordered_sources[row] != ordered_sources[row - 1]:
            ax.axhline(row - 0.5, color="white", linewidth=2)
    ax.set_yticks(range(n), [f"{s} {i}" for s, i in zip(ordered_sources, order)], fontsize=7)
    labels = _cycle_labels(records)
    ax.set_xticks(range(len(records)), labels, rotation=90, fontsize=6)
    ax.set_xlabel("cycle (step.cycle)")
    ax.set_title("workspace competition: candidate scores, winners boxed")
    fig.colorbar(im, ax=ax, label="bottleneck score")
    fig.tight_layout()
    return fig, {"scores": scores, "order": order, "sources": ordered_sources, "winners": marked,
                 "winner_candidates": per_column, "cycles": labels}


# ----------------------------------------------------------------------------------------- working memory
def plot_working_memory(episode_or_records, max_cycles: int = 40) -> tuple[Figure, dict[str, Any]]:
    """Working-memory slots over time: a grid of slots x cycles, each cell labelled with its decoded concept.

    Inputs: an Episode or CycleRecords with ``slot_concepts`` (the slots as they competed in each cycle, i.e.
    before that cycle's write); at most ``max_cycles`` cycles. Cells are shaded by how strongly the cycle
    wrote into the slot (the max over winners of ``write_weights``; 0 without write weights).
    Output: (fig, data) with ``labels`` (K, C) list of lists of strings ("" for an empty slot; equal to
    ``words(record.slot_concepts[k])``), ``writes`` (K, C) array, ``cycles`` the column labels.
    Raises ValueError when the records have no slot contents (an agent without working memory).
    """
    records = _records(episode_or_records)[:max_cycles]
    if any(r.slot_concepts is None for r in records):
        raise ValueError("these records have no slot_concepts: the agent has no working memory")
    K = max(len(r.slot_concepts) for r in records)
    labels = [["" for _ in records] for _ in range(K)]
    writes = np.zeros((K, len(records)))
    for col, r in enumerate(records):
        for k, c in enumerate(r.slot_concepts):
            labels[k][col] = "" if c is None else words(c)
        if r.write_weights:
            w = np.asarray(r.write_weights, dtype=float)  # (winners, K)
            writes[: w.shape[-1], col] = w.max(axis=0) if w.ndim == 2 else w
    fig, ax = _figure((min(2 + 1.1 * len(records), 40), 1 + 0.45 * K))
    ax.imshow(writes, aspect="auto", cmap="Blues", vmin=0, vmax=2.5, interpolation="nearest")  # light: text stays legible
    for k in range(K):
        for col in range(len(records)):
            if labels[k][col]:
                ax.text(col, k, labels[k][col].replace(" ", "\n"), ha="center", va="center", fontsize=5)
    cycles = _cycle_labels(records)
    ax.set_xticks(range(len(records)), cycles, rotation=90, fontsize=6)
    ax.set_yticks(range(K), [f"slot {k}" for k in range(K)], fontsize=7)
    ax.set_xlabel("cycle (step.cycle); shading = write weight of this cycle")
    ax.set_title("working memory: decoded slot contents as each cycle began")
    fig.tight_layout()
    return fig, {"labels": labels, "writes": writes, "cycles": cycles}


# ----------------------------------------------------------------------------------------- long-term memory
def long_term_completions(agent, snapshot, cues: Sequence[tuple[str, str]]) -> list[tuple[str, str, str, float]]:
    """The triples the agent's long-term memory completes from ``(subject, relation, ?)`` cues.

    Inputs: ``agent`` with ``index_layer`` and a workspace holding a memory of source ``long_term`` with a
    ``read(state, query)`` (OuterProductMemory); ``snapshot`` a MemorySnapshot with its
    ``memories.long_term.*`` tensors; ``cues`` (subject, relation) word pairs.
    Output: one (subject, relation, decoded object, p(object)) per cue: the cue is the index layer's encoding
    of (s, p, ?), read by contraction, and the readout's object role decoded by the index layer.
    Raises ValueError when the agent or snapshot has no long-term memory, or a cue word is unknown.
    """
    import torch

    memory = next((m for m in getattr(agent.workspace, "memories", []) if m.source == "long_term"), None)
    if memory is None or not hasattr(memory, "read"):
        raise ValueError("the agent has no readable long-term memory (compose it with long_term=outer_product)")
    prefix = "memories.long_term."
    parts = {k[len(prefix):]: v for k, v in snapshot.tensors.items() if k.startswith(prefix)}
    if not parts:
        raise ValueError(f"the snapshot has no {prefix}* tensors; it holds {sorted(snapshot.tensors)[:8]}")
    state = type(memory.initial_state(1))(**parts)
    index = agent.index_layer
    vocab = {w: i for i, w in enumerate(index.vocab)}
    bad = [w for cue in cues for w in cue if w not in vocab]
    if bad:
        raise ValueError(f"cue words {bad[:5]} are not concepts of the agent's index layer")
    if not cues:
        return []
    ids = torch.tensor([[vocab[s], vocab[p], vocab["?"] if "?" in vocab else 0] for s, p in cues])  # (M, 3)
    with torch.no_grad():
        query = index.encode_triple(ids)  # (M, d)
        batch = type(state)(*(t.expand(len(cues), *t.shape[1:]) for t in state))
        readout = memory.read(batch, query)  # (M, d)
        obj = index.bottom_up(index.unbind(readout, 2))  # (M, V): what fills the object role
        p, o = obj.max(dim=-1)
    return [(s, r, index.vocab[int(i)], float(q)) for (s, r), i, q in zip(cues, o, p)]


def plot_long_term_graph(episode_or_records=None, completions=None,
                         min_prob: float = 0.0) -> tuple[Figure, dict[str, Any]]:
    """Long-term memory as a directed graph: subject -> object, edges labelled with the relation.

    Inputs: either ``completions`` (from :func:`long_term_completions`: the triples the memory completes, edges
    with p(object) < ``min_prob`` left out) or, when it is None, an Episode / CycleRecords whose broadcast
    winners' decoded triples are drawn (what the workspace sent to every memory, hence what an outer-product
    long-term memory consolidates; the trace alone cannot say what that memory would give back).
    Output: (fig, data) with ``edges`` the (s, p, o) triples drawn, ``graph`` the networkx MultiDiGraph,
    ``what`` "completed by long-term memory" or "broadcast winners".
    """
    if completions is not None:
        edges = [(s, p, o) for s, p, o, q in completions if q >= min_prob]
        what = "triples completed by long-term memory from (s, p, ?) cues"
    else:
        seen = []
        for r in _records(episode_or_records):
            for c in r.winner_concepts or []:
                t = tuple(c)
                if t not in seen:
                    seen.append(t)
        edges = seen
        what = "triples broadcast by the workspace (what long-term memory consolidates)"
    g = nx.MultiDiGraph()
    for s, p, o in edges:
        g.add_edge(s, o, label=p)
    fig, ax = _figure((7, 6))
    if g.number_of_nodes():
        pos = nx.spring_layout(g, seed=0)
        nx.draw_networkx_nodes(g, pos, ax=ax, node_size=500, node_color="#cde")
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, connectionstyle="arc3,rad=0.1", node_size=500)
        labels = {}
        for s, o, d in g.edges(data=True):
            labels.setdefault((s, o), []).append(d["label"])
        nx.draw_networkx_edge_labels(g, pos, {k: ", ".join(v) for k, v in labels.items()}, ax=ax, font_size=6)
    ax.set_title(what, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig, {"edges": edges, "graph": g, "what": what}


# ----------------------------------------------------------------------------------------- surprise
def plot_surprise(episode_or_records) -> tuple[Figure, dict[str, Any]]:
    """Surprise per cycle with the cycles where an episodic event closed marked by vertical lines.

    Inputs: an Episode or CycleRecords. Output: (fig, data) with ``surprise`` (C,) array (NaN where not
    recorded), ``boundaries`` the cycle positions with ``boundary`` True, ``cycles`` the labels.
    """
    records = _records(episode_or_records)
    surprise = np.array([np.nan if r.surprise is None else float(r.surprise) for r in records])
    boundaries = [i for i, r in enumerate(records) if r.boundary]
    fig, ax = _figure((min(3 + 0.15 * len(records), 20), 3))
    ax.plot(range(len(records)), surprise, marker=".", label="surprise (consciousness-prior prediction error)")
    for j, b in enumerate(boundaries):
        ax.axvline(b, color="red", linestyle="--", linewidth=1, label="event boundary" if j == 0 else None)
    cycles = _cycle_labels(records)
    step = max(1, len(records) // 40)
    ax.set_xticks(range(0, len(records), step), cycles[::step], rotation=90, fontsize=6)
    ax.set_xlabel("cycle (step.cycle)")
    ax.set_ylabel("surprise")
    ax.set_title("surprise" + ("" if boundaries else " (no event boundaries: no episodic memory or none cut)"))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig, {"surprise": surprise, "boundaries": boundaries, "cycles": cycles}


# ----------------------------------------------------------------------------------------- PCA
def graph_trace_representations(agent, env, seed: int) -> tuple[np.ndarray, list[str], dict]:
    """Play one GraphTrace episode and collect the conscious state after each step, labelled by its node.

    Inputs: ``agent`` (a workspace agent: ``initial_state``, ``act``; its state has ``workspace.conscious``),
    ``env`` a GraphTrace env (``gymnasium.make("cogarch/GraphTrace-v0")``), ``seed``.
    Output: ``reps`` (T, d) float array, ``labels`` (T,) the word of the node the walk is at after the step
    (the fact's object while reading, its subject while answering), and the reset ``info`` (``positions``,
    ``words``, ...). The node is the concept the step is about; averaging by node gives one point per concept.
    """
    obs, info = env.reset(seed=seed)
    meta = dict(info)
    vocab = env.unwrapped.vocab
    state = agent.initial_state(seed=seed)
    reps, labels, done = [], [], False
    while not done:
        fact = [vocab[int(i)] for i in obs["fact"]]
        label = fact[2] if int(obs["phase"]) == 0 else fact[0]
        action, state, _ = agent.act(obs, state, info)
        reps.append(state.workspace.conscious[0].detach().cpu().numpy().copy())
        labels.append(label)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return np.stack(reps), labels, meta


def plot_pca(reps: np.ndarray, labels: Sequence[str], positions: dict[str, Sequence[float]] | None = None,
             edges: Sequence[tuple[str, str]] = ()) -> tuple[Figure, dict[str, Any]]:
    """PCA (numpy SVD, no sklearn) of representations averaged per concept, with the graph's edges drawn.

    Inputs: ``reps`` (T, d); ``labels`` (T,) the concept of each row; ``positions`` {word: [x, y]} the node's
    place in the true graph (GraphTrace's reset info) and ``edges`` (word, word) pairs to draw.
    Output: (fig, data) with ``concepts`` (the words, in order), ``coords`` (n, 2) their first two principal
    components, ``explained`` the variance fraction of the two components, and ``distance_correlation``: the
    Pearson correlation between pairwise distances in PCA space and in the true layout (``positions``), a
    number for "does the graph appear?" (None without positions or with < 3 concepts).
    """
    reps = np.asarray(reps, dtype=float)
    if reps.ndim != 2 or len(reps) != len(labels):
        raise ValueError(f"reps must be (T, d) with one label per row; got {reps.shape} and {len(labels)} labels")
    concepts = list(dict.fromkeys(labels))
    means = np.stack([reps[[i for i, l in enumerate(labels) if l == c]].mean(0) for c in concepts])  # (n, d)
    centred = means - means.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T  # (n, 2)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    var = s**2
    explained = (var[:2] / var.sum()).tolist() if var.sum() > 0 else [0.0, 0.0]
    corr = None
    if positions and len(concepts) >= 3 and all(c in positions for c in concepts):
        true = np.array([positions[c] for c in concepts], dtype=float)
        iu = np.triu_indices(len(concepts), 1)
        d_pca = np.linalg.norm(coords[:, None] - coords[None], axis=-1)[iu]
        d_true = np.linalg.norm(true[:, None] - true[None], axis=-1)[iu]
        if d_pca.std() > 0 and d_true.std() > 0:
            corr = float(np.corrcoef(d_pca, d_true)[0, 1])
    where = {c: i for i, c in enumerate(concepts)}
    fig, ax = _figure((6, 6))
    for a, b in edges:
        if a in where and b in where:
            ax.plot(*coords[[where[a], where[b]]].T, color="#bbb", linewidth=1, zorder=1)
    ax.scatter(coords[:, 0], coords[:, 1], zorder=2)
    for c, (x, y) in zip(concepts, coords):
        ax.annotate(c, (x, y), fontsize=7)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.set_title("PCA of concept representations" + (f" (distance corr. with the graph {corr:.2f})" if corr is not None else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig, {"concepts": concepts, "coords": coords, "explained": explained, "distance_correlation": corr}
