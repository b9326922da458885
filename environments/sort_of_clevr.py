"""Sort-of-CLEVR as a fact stream: six coloured squares and circles, then one question about them.

The scene of Santoro et al. (2017) is read as 18 facts (shape, column and row of each object); an
optional 75x75 RGB image of the same scene rides along in the observation for pixel-based agents.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from environments.core import NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_choice

COLOURS = ("red", "green", "blue", "orange", "gray", "yellow")
# The RGB values of the Relation Networks generator (sort_of_clevr_generator.py).
RGB = np.array(
    [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 156, 0), (128, 128, 128), (255, 255, 0)], dtype=np.uint8
)
SHAPES = ("square", "circle")
GRID = 6  # objects sit on a GRID x GRID board of cells, one object per cell
IMAGE_SIZE = 75
CELL_PX = IMAGE_SIZE / GRID  # 12.5
HALF = 5  # objects are 2 * HALF = 10 px wide, so neighbouring objects never touch
CENTRES = tuple(int(round(CELL_PX * (i + 0.5))) for i in range(GRID))  # pixel centre of each row/col

NON_RELATIONAL = ("shape", "horizontal", "vertical")
RELATIONAL = ("closest_shape", "furthest_shape", "same_shape_count")
QUESTION_FAMILIES = {
    "all": NON_RELATIONAL + RELATIONAL,
    "relational": RELATIONAL,
    "non_relational": NON_RELATIONAL,
    **{kind: (kind,) for kind in NON_RELATIONAL + RELATIONAL},  # one question type alone (e.g. to evaluate it)
}
QUESTION_TEXT = {
    "shape": "What is the shape of the {} object?",
    "horizontal": "Is the {} object on the left or right?",
    "vertical": "Is the {} object on the top or bottom?",
    "closest_shape": "What is the shape of the object closest to the {} object?",
    "furthest_shape": "What is the shape of the object furthest from the {} object?",
    "same_shape_count": "How many objects have the same shape as the {} object?",
}
FACT_TEXT = {
    "shape": "The {} object is a {}.",
    "column": "The {} object is in column {}.",
    "row": "The {} object is in row {}.",
}
COLS = tuple(f"col{i}" for i in range(GRID))
ROWS = tuple(f"row{i}" for i in range(GRID))
COUNTS = tuple(str(i) for i in range(1, len(COLOURS) + 1))
VOCAB = (
    (NONE, QUERY)
    + COLOURS
    + ("shape", "column", "row")
    + NON_RELATIONAL[1:]
    + RELATIONAL
    + SHAPES
    + COLS
    + ROWS
    + ("left", "right", "top", "bottom")
    + COUNTS
)


def _stamps() -> np.ndarray:
    """Boolean masks (2, 2*HALF, 2*HALF) of a filled square and a filled circle of diameter 2*HALF."""
    yy, xx = np.mgrid[-HALF:HALF, -HALF:HALF] + 0.5  # pixel centres relative to the object centre
    return np.stack([np.ones_like(yy, dtype=bool), yy**2 + xx**2 <= HALF**2])


STAMPS = _stamps()


def render_scene(objects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Draw ``objects`` (colour index, shape index, row, col) on a white 75x75 RGB canvas."""
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.uint8)
    for colour, shape, row, col in objects:
        y, x = CENTRES[row] - HALF, CENTRES[col] - HALF
        image[y : y + 2 * HALF, x : x + 2 * HALF][STAMPS[shape]] = RGB[colour]
    return image


class SortOfClevrEnv(FactStreamEnv):
    """Six coloured objects on a grid, streamed as facts; then one relational or non-relational question.

    ## Description

    Sort-of-CLEVR from "A simple neural network module for relational reasoning" (Santoro et al., 2017),
    as used by PMI. Each scene holds six objects, one of each colour (red, green, blue, orange, gray,
    yellow), each a square or a circle, at distinct cells of a 6x6 grid over a 75x75 image (cell 12.5 px,
    object centre at the rounded cell centre, objects 10 px wide). Column < 3 is "left", row < 3 is "top".
    Questions name an object by colour:

    - non-relational: its shape; left or right; top or bottom;
    - relational: the shape of the object closest to it; of the object furthest from it (Euclidean
      distance between cell centres); how many objects share its shape (counting itself, 1..6).

    When several objects tie for closest/furthest and their shapes differ, every tied shape is accepted;
    the oracle answers the shape of the tied object whose colour comes first in the list above.

    ## Action Space

    ``Discrete(V)`` over the fixed vocabulary ``env.unwrapped.vocab``: ``<none>``, ``?``, the six colours,
    the relations ``shape column row horizontal vertical closest_shape furthest_shape same_shape_count``,
    then the values ``square circle col0..col5 row0..row5 left right top bottom 1..6``. While reading, the
    expected action is 0 (``<none>``); the one answer is a single symbol.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``. Reading facts are
    ``(red, shape, circle)`` "The red object is a circle.", ``(red, column, col3)`` "The red object is in
    column 3.", ``(red, row, row1)`` "The red object is in row 1." (three per object, objects in random
    order). The question is ``(red, <question type>, ?)``, e.g. ``(red, closest_shape, ?)`` "What is the
    shape of the object closest to the red object?". With ``obs_mode="image"`` the dict also holds
    ``image``: ``Box(0, 255, (75, 75, 3), uint8)``, the scene on a white background, the same picture at
    every step of the episode.

    ## Rewards

    0 while reading; 1 for a correct answer, else 0.

    ## Starting State

    Object cells, shapes and stream order, the question type (uniform within the chosen family) and the
    colour it asks about are drawn from ``np_random``. ``reset`` info adds ``question_type``,
    ``relational`` and ``objects``: ``[[colour, shape, row, col], ...]`` in colour order.

    ## Episode End

    Terminates after the answer (19 steps); never truncates. ``info["success"]`` is whether it was right.

    ## Arguments

    - ``questions`` (str, default ``"all"``): ``"all"``, ``"relational"`` or ``"non_relational"``, the
      family the question type is drawn from (uniformly), or one question type alone (``"shape"``,
      ``"horizontal"``, ``"vertical"``, ``"closest_shape"``, ``"furthest_shape"``, ``"same_shape_count"``).
    - ``obs_mode`` (str, default ``"facts"``): ``"facts"`` or ``"image"``; ``"image"`` adds the ``image`` key.
    - ``render_mode`` (str or None, default None): None or ``"ansi"``.
    """

    def __init__(self, questions: str = "all", obs_mode: str = "facts", render_mode: str | None = None):
        check_choice("questions", questions, tuple(QUESTION_FAMILIES))
        check_choice("obs_mode", obs_mode, ("facts", "image"))
        self.questions = questions
        self.obs_mode = obs_mode
        self._types = QUESTION_FAMILIES[questions]
        # Every sentence is precomputed: generation only picks among them, which keeps reset cheap.
        self._fact_text = {
            (c, rel): [FACT_TEXT[rel].format(c, v) for v in (SHAPES if rel == "shape" else range(GRID))]
            for c in COLOURS
            for rel in FACT_TEXT
        }
        self._question_text = {(c, t): QUESTION_TEXT[t].format(c) for c in COLOURS for t in QUESTION_TEXT}
        longest = max(len(s) for texts in self._fact_text.values() for s in texts)
        longest = max(longest, *(len(s) for s in self._question_text.values()))
        super().__init__(VOCAB, longest, render_mode)
        self._colour_ids = self.ids(*COLOURS)
        self._rel_ids = {r: self.index[r] for r in ("shape", "column", "row", *QUESTION_TEXT)}
        self._shape_ids = self.ids(*SHAPES)
        self._col_ids, self._row_ids, self._count_ids = self.ids(*COLS), self.ids(*ROWS), self.ids(*COUNTS)
        self._side_ids = self.ids("left", "right", "top", "bottom")
        self._image: np.ndarray | None = None
        if obs_mode == "image":
            self.observation_space = spaces.Dict(
                {
                    **self.observation_space.spaces,
                    "image": spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
                }
            )

    def _generate(self) -> Episode:
        rng = self.np_random
        n = len(COLOURS)
        cells = rng.choice(GRID * GRID, size=n, replace=False)
        rows, cols = (cells // GRID).tolist(), (cells % GRID).tolist()
        shapes = rng.integers(0, 2, size=n).tolist()
        order = rng.permutation(n).tolist()
        qtype = self._types[int(rng.integers(len(self._types)))]
        target = int(rng.integers(n))

        reading, at = [], {}  # at[(object, relation)] = reading index, for `supporting`
        for o in order:
            c, cid = COLOURS[o], self._colour_ids[o]
            for rel, value_id, value in (
                ("shape", self._shape_ids[shapes[o]], shapes[o]),
                ("column", self._col_ids[cols[o]], cols[o]),
                ("row", self._row_ids[rows[o]], rows[o]),
            ):
                at[o, rel] = len(reading)
                reading.append(Fact((cid, self._rel_ids[rel], value_id), self._fact_text[c, rel][value]))

        accept = None
        if qtype == "shape":
            answer, support = self._shape_ids[shapes[target]], (at[target, "shape"],)
        elif qtype == "horizontal":
            answer, support = self._side_ids[cols[target] >= GRID // 2], (at[target, "column"],)
        elif qtype == "vertical":
            answer, support = self._side_ids[2 + (rows[target] >= GRID // 2)], (at[target, "row"],)
        elif qtype == "same_shape_count":
            count = sum(s == shapes[target] for s in shapes)
            answer, support = self._count_ids[count - 1], tuple(sorted(at[o, "shape"] for o in range(n)))
        else:  # closest / furthest: squared grid distance orders like the Euclidean pixel distance
            others = [o for o in range(n) if o != target]
            d = {o: (rows[o] - rows[target]) ** 2 + (cols[o] - cols[target]) ** 2 for o in others}
            best = (min if qtype == "closest_shape" else max)(d.values())
            tied = [o for o in sorted(d) if d[o] == best]
            answer = self._shape_ids[shapes[tied[0]]]
            accept = (frozenset(self._shape_ids[shapes[o]] for o in tied),)
            positions = [at[o, rel] for o in range(n) for rel in ("column", "row")]
            support = tuple(sorted(positions + [at[tied[0], "shape"]]))

        question = Question(
            ids=(self._colour_ids[target], self._rel_ids[qtype], self.index[QUERY]),
            text=self._question_text[COLOURS[target], qtype],
            answer=(answer,),
            accept=accept,
            supporting=support,
        )
        objects = [[COLOURS[o], SHAPES[shapes[o]], rows[o], cols[o]] for o in range(n)]
        if self.obs_mode == "image":
            self._image = render_scene([(o, shapes[o], rows[o], cols[o]) for o in range(n)])
        info = {"question_type": qtype, "relational": qtype in RELATIONAL, "objects": objects}
        return Episode(reading, [question], info)

    def _observe(self) -> tuple[dict, dict]:
        obs, info = super()._observe()
        if self.obs_mode == "image":
            obs["image"] = self._image.copy()  # a fresh array per step: callers may keep or modify it
        return obs, info
