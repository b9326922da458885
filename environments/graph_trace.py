"""GraphTrace: predict the next node of a random walk over a graph whose nodes carry concept words.

After Park et al., "ICLR: In-Context Learning of Representations" (2024/25): familiar words (apple,
bird, car, ...) are placed on the nodes of a grid, ring or hexagonal lattice, and the context is a random
walk over that graph. A model that learns the graph's structure in context can name a valid next node;
one that falls back on the words' usual meaning cannot.
"""

from __future__ import annotations

import math

import networkx as nx

from environments.core import NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_choice, check_range

# 128 common nouns: the largest graph of each kind fits, and words never repeat within an episode.
WORDS = (
    "apple", "bird", "car", "dog", "cat", "house", "tree", "book",
    "chair", "table", "river", "mountain", "cloud", "flower", "window", "door",
    "bread", "cheese", "milk", "egg", "fish", "horse", "cow", "sheep",
    "pig", "lion", "tiger", "bear", "wolf", "fox", "rabbit", "mouse",
    "snake", "frog", "duck", "owl", "boat", "ship", "train", "plane",
    "bike", "truck", "bus", "road", "bridge", "castle", "tower", "garden",
    "forest", "lake", "ocean", "island", "desert", "beach", "star", "moon",
    "rain", "snow", "wind", "fire", "stone", "sand", "grass", "leaf",
    "seed", "rose", "lamp", "clock", "phone", "radio", "piano", "drum",
    "guitar", "violin", "ball", "kite", "doll", "hat", "shoe", "coat",
    "shirt", "glove", "ring", "watch", "cup", "plate", "bowl", "spoon",
    "fork", "knife", "bottle", "box", "bag", "basket", "pencil", "paper",
    "letter", "map", "coin", "candle", "bell", "brush", "soap", "towel",
    "pillow", "blanket", "bed", "sofa", "mirror", "ladder", "hammer", "rope",
    "wheel", "anchor", "flag", "crown", "sword", "tent", "farm", "school",
    "market", "kitchen", "village", "city", "planet", "whale", "shark", "banana",
)
RELATION = "to"
# Allowed `size` per graph kind, and the default; the upper bounds keep num_nodes <= len(WORDS).
SIZES = {"grid": (2, 11, 4), "ring": (3, 128, 16), "hex": (1, 7, 2)}


def build_graph(graph: str, size: int) -> tuple[nx.Graph, list, list[list[float]]]:
    """The graph, its nodes in a fixed order, and a 2-D layout position per node (for plotting)."""
    if graph == "grid":
        g = nx.grid_2d_graph(size, size)
        nodes = sorted(g.nodes)
        return g, nodes, [[r, c] for r, c in nodes]
    if graph == "ring":
        g = nx.cycle_graph(size)
        nodes = list(range(size))
        angles = [2 * math.pi * i / size for i in nodes]
        pos = [[round(math.cos(a), 6), round(math.sin(a), 6)] for a in angles]
        return g, nodes, pos
    g = nx.hexagonal_lattice_graph(size, size)
    nodes = sorted(g.nodes)
    return g, nodes, [[round(float(x), 6) for x in g.nodes[n]["pos"]] for n in nodes]


class GraphTraceEnv(FactStreamEnv):
    """Read a random walk over word-labelled graph nodes, then predict each next node of the walk.

    ## Description

    From Park et al., "ICLR: In-Context Learning of Representations" (2024/25). Each episode assigns
    distinct concept words, drawn at random from a fixed list of 128 common nouns, to the nodes of a
    fixed graph (a square grid, a ring, or a hexagonal "honeycomb" lattice), then takes a random walk
    ``w_0, w_1, ..., w_L`` (``L = walk_length``) that moves to a uniformly random neighbour each step
    (going back is allowed). The first ``warmup`` transitions are shown as facts; every later
    transition is a question: given the current node, name a node the walk may go to next. Any
    neighbour of the current node counts as correct; the walk itself then continues along its own path
    whatever the agent said, so the next question's subject is the walk's actual next node.

    ## Action Space

    ``Discrete(V)`` with ``V = 3 + 128``: one action per vocabulary symbol. ``vocab`` is ``<none>``,
    ``?``, ``to``, then the 128 words in a fixed order (all of them, even when the graph uses fewer).
    Action 0 (``<none>``) is the expected action while reading; actions are not scored then.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``. Reading step ``t``
    (``1 <= t <= warmup``) shows ``(w_{t-1}, to, w_t)``, text ``"apple to bird."``. Question step ``t``
    (``warmup < t <= walk_length``) shows ``(w_{t-1}, to, ?)``, text ``"apple to what?"``.

    ## Rewards

    While answering, 1 when the action is a neighbour of the current node, else 0. Reading steps pay 0.

    ## Starting State

    ``w_0`` is a uniformly random node; the word assignment is a uniformly random injection.

    ## Episode End

    Terminates after the last of the ``walk_length - warmup`` predictions; never truncates.
    ``info["success"]`` is true when every prediction named a neighbour. ``info["oracle_action"]`` is
    the walk's actual next node. ``reset``'s ``info`` also holds ``graph``, ``size``, ``num_nodes``,
    ``walk_length``, ``warmup``, ``words`` (the word on each node, by node index), ``positions``
    (``{word: [x, y]}``: ``[row, col]`` on the grid, a point on the unit circle for the ring, the
    honeycomb's drawing coordinates for hex), ``walk`` (the words ``w_0 .. w_L``) and ``edges_twice_at``:
    the first step t from which the walk so far (transitions before w_t, all the agent has been shown by the
    time it is asked where w_t leads) has shown every edge of the graph at least twice (``walk_length + 1``
    if it never does). Questions from then on carry the tag ``edges_twice`` (``info["tags"]``), so a run
    reports ``answer_accuracy_edges_twice``: next-node accuracy once each edge has been seen twice.

    ## Arguments

    - ``graph`` (str, default ``"grid"``): ``"grid"``, ``"ring"`` or ``"hex"``.
    - ``size`` (int or None, default None = 4, 16 or 2 by graph): for ``"grid"`` the side length,
      ``2..11`` (``size x size`` nodes, 4-neighbour moves, no wrap-around); for ``"ring"`` the number
      of nodes, ``3..128``; for ``"hex"`` the number of hexagon rows and of hexagon columns of a
      honeycomb patch (``networkx.hexagonal_lattice_graph(size, size)``), ``1..7``, giving
      6, 16, 30, 48, 70, 96, 126 nodes.
    - ``walk_length`` (int, default 64): transitions in the walk, ``2..100000``; also the episode's
      number of steps.
    - ``warmup`` (int, default 16): transitions shown as reading facts before predictions start,
      ``0..walk_length-1``.
    - ``render_mode`` (str or None, default None): ``None`` or ``"ansi"``.
    """

    def __init__(
        self,
        graph: str = "grid",
        size: int | None = None,
        walk_length: int = 64,
        warmup: int = 16,
        render_mode: str | None = None,
    ):
        check_choice("graph", graph, list(SIZES))
        low, high, default = SIZES[graph]
        size = default if size is None else size
        check_range("size", size, low, high, integer=True)
        check_range("walk_length", walk_length, 2, 100_000, integer=True)
        check_range("warmup", warmup, 0, walk_length - 1, integer=True)
        self.graph_kind, self.size = graph, int(size)
        self.walk_length, self.warmup = int(walk_length), int(warmup)

        self.graph, self.nodes, self._positions = build_graph(graph, self.size)
        self.num_nodes = len(self.nodes)
        order = {n: i for i, n in enumerate(self.nodes)}
        # Plain tuples of node indices: the per-episode walk never touches networkx.
        self.neighbours = tuple(tuple(sorted(order[m] for m in self.graph[n])) for n in self.nodes)
        self.edges = tuple(sorted((min(order[u], order[v]), max(order[u], order[v])) for u, v in self.graph.edges))

        vocab = (NONE, QUERY, RELATION, *WORDS)
        longest = max(map(len, WORDS))
        super().__init__(vocab, max_text_length=2 * longest + len(" to what?"), render_mode=render_mode)
        self._word0 = self.index[WORDS[0]]

    def _generate(self) -> Episode:
        rng = self.np_random
        n, L, nbrs = self.num_nodes, self.walk_length, self.neighbours
        # word_id[node] is the vocab id of the word placed on that node.
        word_id = (rng.permutation(len(WORDS))[:n] + self._word0).tolist()
        walk = [int(rng.integers(n))]
        for u in rng.random(L).tolist():
            options = nbrs[walk[-1]]
            walk.append(options[int(u * len(options))])

        vocab, to, query = self.vocab, self.index[RELATION], self.index[QUERY]
        names = [vocab[w] for w in word_id]
        reading = []
        seen: dict[int, list[int]] = {}  # node -> reading steps whose fact touches it (the known edges)
        for t in range(self.warmup):
            a, b = walk[t], walk[t + 1]
            reading.append(Fact((word_id[a], to, word_id[b]), f"{names[a]} to {names[b]}."))
            seen.setdefault(a, []).append(t)
            if b != a:
                seen.setdefault(b, []).append(t)
        accept = [frozenset(word_id[m] for m in nb) for nb in nbrs]
        twice = self._edges_twice(walk)
        questions = [
            Question(
                ids=(word_id[a], to, query),
                text=f"{names[a]} to what?",
                answer=(word_id[walk[t + 1]],),
                accept=(accept[a],),
                supporting=tuple(seen.get(a, ())),
                tags=("edges_twice",) if t >= twice else (),
            )
            for t in range(self.warmup, L)
            for a in (walk[t],)
        ]
        info = {
            "edges_twice_at": twice,
            "graph": self.graph_kind,
            "size": self.size,
            "num_nodes": n,
            "walk_length": L,
            "warmup": self.warmup,
            "words": names,
            "positions": {w: list(p) for w, p in zip(names, self._positions)},
            "walk": [names[v] for v in walk],
        }
        return Episode(reading=reading, questions=questions, info=info)

    def _edges_twice(self, walk: list[int]) -> int:
        """The first t at which transitions 0 .. t-1 of the walk (all the agent has seen when asked where w_t
        leads: the reading facts, then each question's subject after the previous one) have shown every edge
        of the graph at least twice, in either direction; ``len(walk)`` if the walk never gets there."""
        counts = dict.fromkeys(self.edges, 0)
        short = len(counts)  # edges shown fewer than twice so far
        for t in range(len(walk) - 1):
            if short == 0:
                return t
            edge = (min(walk[t], walk[t + 1]), max(walk[t], walk[t + 1]))
            counts[edge] += 1
            short -= counts[edge] == 2
        return len(walk) - 1 if short == 0 else len(walk)
