"""Graph search: stream the edges of a DAG, then name the next vertex on a path from start to goal.

After Saparov et al., "Transformers Struggle to Learn to Search" (ICLR 2025), whose public generator
(asaparov/learning_to_search) defines the three graph distributions re-implemented here: ``balanced``
(controlled lookahead, their ``generate_graph_with_lookahead``), ``naive`` (their random-DAG
``generate_graph``) and ``star`` (the star graphs of Bachmann & Nagarajan that they compare against).
The generators are plain Python over adjacency lists so that episode generation stays cheap.
"""

from __future__ import annotations

from collections import deque

from environments.core import NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_choice, check_range

EDGE = "edge"
FIRST_VERTEX = 3  # vocab id of "v0": after <none>, ?, edge
MAX_VERTICES = 10_000
ALPHA = 0.5  # preferential-attachment smoothing of the balanced generator (their ALPHA)
MAX_DEGREE = 4  # their max_num_parents: a new vertex draws 0..3 children and parents
EDGE_TEXT = "There is an edge from {} to {}."
QUESTION_TEXT = "From {}, which vertex leads toward {}?"


def _weighted_pick(rand, weights: list[float], k: int) -> list[int]:
    """Draw up to ``k`` distinct indices with probability proportional to ``weights`` (zeroes excluded)."""
    total = sum(weights)
    picked = []
    for _ in range(k):
        if total <= 1e-9:
            break
        r = rand() * total
        last = -1
        for i, w in enumerate(weights):
            if w > 0.0:
                last = i
                r -= w
                if r < 0.0:
                    break
        picked.append(last)  # `last` also covers the float round-off case where r never went negative
        total -= weights[last]
        weights[last] = 0.0
    return picked


class _Uniforms:
    """Uniform [0, 1) draws from ``rng``, fetched in blocks: one numpy call per 256 draws, not per draw."""

    def __init__(self, rng):
        self._rng, self._buf = rng, []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(256).tolist()
        return self._buf.pop()


def _reach(adj: list[list[int]], sources) -> set[int]:
    """Every vertex reachable from ``sources`` through ``adj`` (sources included)."""
    seen = set(sources)
    stack = list(seen)
    while stack:
        for w in adj[stack.pop()]:
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


class GraphSearchEnv(FactStreamEnv):
    """Read the edges of a directed acyclic graph, then find the next step from a start vertex to a goal.

    ## Description

    The graph search task of Saparov et al., "Transformers Struggle to Learn to Search" (ICLR 2025).
    Each episode streams the edges of a random DAG in random order, one fact per edge
    ``(u, edge, v)`` / "There is an edge from v3 to v7.". Vertex names ``v0..v{N-1}`` are a random
    relabelling, so names carry no information about the topology. Then comes the question: the fact
    ``(current, goal, ?)`` (subject = the vertex the agent is at, relation slot = the goal vertex,
    object = ``?``) / "From v3, which vertex leads toward v9?". The answer is an out-neighbour of the
    current vertex from which the goal is reachable.

    Distributions (``distribution``):

    - ``balanced`` (their ``generate_graph_with_lookahead``): a lookahead ``L`` uniform on
      ``1..max_lookahead``; a chain ``start -> ... -> goal`` of ``L`` edges; ``num_paths - 1`` decoy
      branches out of the start, each of ``L`` or ``L + 1`` edges, so that the start has ``num_paths``
      branches and telling the right one apart needs ``L`` steps of search; a chain of ``0..k``
      ancestors into the start (k = vertices left); the remaining vertices attached one at a time
      with 0-3 children and 0-3 parents drawn preferentially (weight 0.5 + in/out-degree) among the
      vertices so far. Parents exclude the new vertex's descendants (the graph stays a DAG), and —
      unlike their code, which then measures the lookahead and rejects — a vertex whose children reach
      the goal never takes a parent reachable from the start, so the chain stays the only
      start-goal path: the shortest path has exactly ``L`` edges and one start branch is useful.
    - ``naive`` (their ``generate_graph``): vertex ``i`` takes 1 parent (probability 1/2) or 1-3
      parents, uniform among vertices ``< i``; start and goal are distinct random vertices (not the
      last one, as in their code), redrawn with a fresh graph until the goal is reachable.
    - ``star``: a centre start with ``num_paths`` arms of ``L`` edges each, ``L`` uniform on
      ``1..max_lookahead``; the goal ends one arm. Vertices beyond ``1 + num_paths * L`` stay unused.

    As in their filter (a shortest path of more than one *vertex*), the start is never the goal, so a
    path has at least one edge; ``L = 1`` means the goal is a direct child of the start.

    Modes (``mode``):

    - ``next``: one question from the start; any useful out-neighbour (one from which the goal is
      reachable) is accepted. ``info["oracle_action"]`` is the neighbour on a shortest path (ties:
      smallest vertex number).
    - ``walk``: the agent walks. Each answering step asks ``(current, goal, ?)``; naming an
      out-neighbour moves there (reward 1 if the goal is still reachable from it, else 0); any other
      action stays put with reward 0. The walk ends at the goal or after ``max_walk_steps`` answers.

    ## Action Space

    ``Discrete(V)`` with ``V = num_vertices + 3``: 0 ``<none>`` (the action while reading), 1 ``?``,
    2 ``edge``, then ``3 + k`` names vertex ``v{k}``.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))`` (see ``FactStreamEnv``).
    Reading facts are ``(u, edge, v)``; questions ``(current, goal, ?)``.

    ## Rewards

    0 while reading. In ``next`` mode 1 for a useful next vertex, else 0. In ``walk`` mode 1 per move
    to an out-neighbour from which the goal is still reachable, else 0.

    ## Starting State

    A fresh graph, start and goal from ``self.np_random``. ``info`` at reset holds ``lookahead`` (the
    chain length ``L`` for ``balanced``/``star``; the start-goal distance for ``naive``),
    ``path_length`` (start-goal distance in edges), ``num_edges``, ``num_start_children``,
    ``start`` and ``goal`` (vertex names).

    ## Episode End

    ``next``: after the one answer; ``success`` if it was a useful vertex. ``walk``: when the goal is
    reached (``success`` True) or after ``max_walk_steps`` answering steps (terminated, ``success``
    False). No truncation.

    ## Arguments

    - ``num_vertices`` (int, default 20): vertices in the graph (and vertex symbols).
      Range: ``max(3, 1 + num_paths * max_lookahead) .. 10000`` for ``balanced``/``star``, ``3 .. 10000``
      for ``naive``.
    - ``max_lookahead`` (int or None, default None = ``(num_vertices - 1) // num_paths``, the largest
      that fits, as their ``((n - 1) // 2)`` for two paths): ``1 .. (num_vertices - 1) // num_paths``.
      Unused by ``naive``.
    - ``num_paths`` (int, default 2): branches out of the start (``balanced``), arms (``star``);
      ``1 .. num_vertices - 1``. Unused by ``naive``.
    - ``distribution`` (str, default ``"balanced"``): ``"balanced"``, ``"naive"`` or ``"star"``.
    - ``mode`` (str, default ``"next"``): ``"next"`` or ``"walk"``.
    - ``max_walk_steps`` (int or None, default None = ``num_vertices``): answering steps allowed in
      ``walk`` mode; at least the longest possible path (``max_lookahead`` for ``balanced``/``star``,
      ``num_vertices - 1`` for ``naive``) so the oracle always arrives; at most 1000000.
    - ``render_mode`` (None or ``"ansi"``, default None).
    """

    def __init__(
        self,
        num_vertices: int = 20,
        max_lookahead: int | None = None,
        num_paths: int = 2,
        distribution: str = "balanced",
        mode: str = "next",
        max_walk_steps: int | None = None,
        render_mode: str | None = None,
    ):
        check_choice("distribution", distribution, ["balanced", "naive", "star"])
        check_choice("mode", mode, ["next", "walk"])
        check_range("num_vertices", num_vertices, 3, MAX_VERTICES, integer=True)
        num_vertices = int(num_vertices)
        try:
            check_range("num_paths", num_paths, 1, num_vertices - 1, integer=True)
        except ValueError as e:
            raise ValueError(f"{e} (num_vertices - 1 with num_vertices={num_vertices})") from None
        num_paths = int(num_paths)
        fits = (num_vertices - 1) // num_paths
        if max_lookahead is None:
            max_lookahead = fits
        try:  # the joint bound num_vertices >= 1 + num_paths * max_lookahead: name every knob that can fix it
            check_range("max_lookahead", max_lookahead, 1, fits, integer=True)
        except ValueError as e:
            raise ValueError(f"{e} = (num_vertices - 1) // num_paths with num_vertices={num_vertices}, "
                             f"num_paths={num_paths}; a longer lookahead needs num_vertices >= 1 + num_paths * "
                             "max_lookahead") from None
        max_lookahead = int(max_lookahead)
        longest = num_vertices - 1 if distribution == "naive" else max_lookahead
        if max_walk_steps is None:
            max_walk_steps = num_vertices  # >= longest: a path never revisits a vertex
        try:
            check_range("max_walk_steps", max_walk_steps, longest, 1_000_000, integer=True)
        except ValueError as e:
            what = "num_vertices - 1" if distribution == "naive" else "max_lookahead"
            raise ValueError(f"{e} (the lower bound is {what}, the longest path of "
                             f"distribution={distribution!r})") from None

        self.num_vertices, self.max_lookahead, self.num_paths = num_vertices, max_lookahead, num_paths
        self.distribution, self.mode, self.max_walk_steps = distribution, mode, int(max_walk_steps)
        self._names = [f"v{k}" for k in range(num_vertices)]
        vocab = (NONE, QUERY, EDGE, *self._names)
        longest_name = len(self._names[-1])
        max_text_length = max(len(EDGE_TEXT), len(QUESTION_TEXT)) - 4 + 2 * longest_name
        super().__init__(vocab, max_text_length, render_mode)

    # ------------------------------------------------------------------ graph generators
    # Each returns (children lists over internal vertices 0..n-1, start, goal, lookahead).
    def _balanced(self, rng):
        n, paths = self.num_vertices, self.num_paths
        rand = _Uniforms(rng)
        L = 1 + int(rand() * self.max_lookahead)
        children: list[list[int]] = [[] for _ in range(n)]
        parents: list[list[int]] = [[] for _ in range(n)]

        def link(u: int, v: int) -> None:
            children[u].append(v)
            parents[v].append(u)

        for i in range(L):  # the chain 0 -> 1 -> ... -> L; vertex 0 is the start, L the goal
            link(i, i + 1)
        idx = L + 1
        for j in range(paths - 1):  # decoys of L or L+1 edges (L+1 only where vertices are left)
            link(0, idx)
            idx += 1
            spare = n - idx - (L - 1) - (paths - 2 - j) * L
            length = L + (1 if spare > 0 and rand() < 0.5 else 0)
            for _ in range(length - 1):
                link(idx - 1, idx)
                idx += 1
        prev = 0
        for _ in range(int(rand() * (n - idx + 1))):  # a chain of ancestors into the start
            link(idx, prev)
            prev, idx = idx, idx + 1

        # from_start: reachable from the start; to_goal: reaches the goal. They meet only on the chain.
        from_start = _reach(children, [0])
        to_goal = _reach(parents, [L])
        for v in range(idx, n):
            n_children = int(rand() * MAX_DEGREE)
            n_parents = int(rand() * MAX_DEGREE) if n_children else 1 + int(rand() * (MAX_DEGREE - 1))
            kids = _weighted_pick(rand, [ALPHA + len(parents[u]) for u in range(v)], n_children)
            below = _reach(children, kids)  # the new vertex's descendants: never its parents
            feeds_goal = any(u in to_goal for u in kids)
            weights = [
                0.0 if u in below or (feeds_goal and u in from_start) else ALPHA + len(children[u])
                for u in range(v)
            ]
            ups = _weighted_pick(rand, weights, n_parents)
            for u in kids:
                link(v, u)
            for u in ups:
                link(u, v)
            if feeds_goal:
                to_goal |= _reach(parents, [v])
            if any(u in from_start for u in ups):
                from_start |= below
                from_start.add(v)
        return children, 0, L, L

    def _naive(self, rng):
        n = self.num_vertices
        rand = _Uniforms(rng)
        while True:
            children: list[list[int]] = [[] for _ in range(n)]
            for i in range(1, n):
                k = 1 if rand() < 0.5 else 1 + int(rand() * (MAX_DEGREE - 1))
                chosen: list[int] = []
                while len(chosen) < min(k, i):  # k distinct parents, uniform among vertices < i
                    u = int(rand() * i)
                    if u not in chosen:
                        chosen.append(u)
                for u in chosen:
                    children[u].append(i)
            # As in their code: start and goal distinct, drawn from all vertices but the last.
            start = int(rand() * (n - 1))
            goal = int(rand() * (n - 2))
            goal += goal >= start
            if goal in _reach(children, [start]):
                return children, start, goal, None

    def _star(self, rng):
        n, paths = self.num_vertices, self.num_paths
        L = int(rng.integers(1, self.max_lookahead + 1))
        children: list[list[int]] = [[] for _ in range(n)]
        for a in range(paths):
            prev = 0
            for i in range(1 + a * L, 1 + (a + 1) * L):
                children[prev].append(i)
                prev = i
        goal = L * (1 + int(rng.integers(0, paths)))
        return children, 0, goal, L

    # ------------------------------------------------------------------ episode
    def _generate(self) -> Episode:
        rng = self.np_random
        children, start, goal, lookahead = getattr(self, "_" + self.distribution)(rng)
        n = self.num_vertices
        label = rng.permutation(n).tolist()  # internal vertex -> vertex number k ("v{k}")
        edges = [(u, v) for u in range(n) for v in children[u]]
        order = rng.permutation(len(edges)).tolist()
        edges = [edges[i] for i in order]

        # Distance to the goal (BFS over reversed edges) decides usefulness and the oracle's choice.
        parents: list[list[int]] = [[] for _ in range(n)]
        for u, v in edges:
            parents[v].append(u)
        dist = [-1] * n
        dist[goal] = 0
        queue = deque([goal])
        while queue:
            v = queue.popleft()
            for u in parents[v]:
                if dist[u] < 0:
                    dist[u] = dist[v] + 1
                    queue.append(u)

        names, first, edge = self._names, FIRST_VERTEX, self.index[EDGE]
        reading = [
            Fact((first + label[u], edge, first + label[v]), EDGE_TEXT.format(names[label[u]], names[label[v]]))
            for u, v in edges
        ]
        self._children, self._dist, self._label, self._goal = children, dist, label, goal
        self._inverse = [0] * n
        for u, k in enumerate(label):
            self._inverse[k] = u
        self._edge_step = {e: i for i, e in enumerate(edges)}
        self._current, self._at_goal = start, False
        info = {
            "lookahead": dist[start] if lookahead is None else lookahead,
            "path_length": dist[start],
            "num_edges": len(edges),
            "num_start_children": len(children[start]),
            "start": names[label[start]],
            "goal": names[label[goal]],
        }
        return Episode(reading, [self._question(start)], info)

    def _question(self, u: int) -> Question:
        """The question at vertex ``u``: useful out-neighbours accepted, the shortest-path one canonical."""
        dist, label, names, first = self._dist, self._label, self._names, FIRST_VERTEX
        useful = [w for w in self._children[u] if dist[w] >= 0]
        supporting: list[int] = []
        if useful:
            best = min(useful, key=lambda w: (dist[w], label[w]))
            answer = first + label[best]
            v = u  # the supporting facts are the edges of the oracle's shortest path to the goal
            while v != self._goal:
                w = min((w for w in self._children[v] if dist[w] == dist[v] - 1), key=lambda w: label[w])
                supporting.append(self._edge_step[(v, w)])
                v = w
        else:  # stranded (walk mode, after a wrong turn): nothing is correct any more
            answer = 0
        goal_id = first + label[self._goal]
        return Question(
            ids=(first + label[u], goal_id, self.index[QUERY]),
            text=QUESTION_TEXT.format(names[label[u]], names[label[self._goal]]),
            answer=(answer,),
            accept=(frozenset(first + label[w] for w in useful),),
            supporting=tuple(supporting),
        )

    def _on_answer(self, action: int, correct: bool) -> None:
        if self.mode != "walk":
            return
        k = action - FIRST_VERTEX
        if 0 <= k < self.num_vertices and self._inverse[k] in self._children[self._current]:
            self._current = self._inverse[k]
        if self._current == self._goal:
            self._at_goal = True
        elif self._n_answered < self.max_walk_steps:
            self._episode.questions.append(self._question(self._current))

    def _success(self) -> bool:
        if self.mode == "walk":
            return self._at_goal
        return super()._success()
