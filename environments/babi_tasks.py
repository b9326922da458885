"""Procedural bAbI stories (Weston et al. 2015, "Towards AI-Complete Question Answering").

One generator per bAbI task family, named by its bAbI number, modelled on the task files of
facebookarchive/bAbI-tasks (``lua/babi/tasks/*.lua``) and the sentence templates of the released
data (v1.2). Each takes a :class:`Draws` and a story length and returns a :class:`Story`: reading
facts as ``(subject, relation, object, sentence)`` with symbol names, then one question. Answers
come from simulating the world (who is where, who holds what, what the reader has been told), never
from the templates. Pure Python: generation runs once per episode, so it must be cheap.

Symbols are lowercase words; multi-word names join with ``_`` (``box_of_chocolates``, ``red_square``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------- the bAbI worlds (world_basic.txt etc.)
ACTORS = ("mary", "john", "daniel", "sandra")
PRONOUN = {"mary": "she", "john": "he", "daniel": "he", "sandra": "she"}
LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
NUMBERS = ("none", "one", "two", "three")  # bAbI task 7 answers "none" for zero
GO_VERBS = ("moved", "went", "journeyed", "travelled", "went back")
GET_VERBS = ("got", "grabbed", "picked up", "took")
DROP_VERBS = ("dropped", "discarded", "put down", "left")
GIVE_VERBS = ("gave", "handed", "passed")
ADVERBS = ("After that", "Afterwards", "Then", "Following that")  # task 11's coreference openers

ANIMALS_15 = {"mouse": "mice", "sheep": "sheep", "wolf": "wolves", "cat": "cats"}
NAMES_15 = ("gertrude", "winona", "jessica", "emily")
ANIMALS_16 = ("swan", "lion", "frog", "rhino")
COLORS_16 = ("gray", "white", "yellow", "green")
NAMES_16 = ("lily", "bernhard", "greg", "julius", "brian")
# Task 17: coloured shapes and plain ones ("the triangle"); a plain shape is never shown with a
# coloured shape of the same kind, which would make "the triangle" ambiguous.
SHAPE_KINDS = ("square", "rectangle", "triangle", "sphere")
SHAPES_17 = tuple(f"{c}_{s}" for s in SHAPE_KINDS for c in ("red", "blue", "pink", "yellow")) + SHAPE_KINDS
POSITIONS = {"above": "below", "below": "above", "left_of": "right_of", "right_of": "left_of"}
POSITION_WORDS = {"above": "above", "below": "below", "left_of": "to the left of", "right_of": "to the right of"}
# Task 18: the four containers have random sizes in [1, 2]; the box of chocolates is 1, the chocolate 0.5.
CONTAINERS_18 = ("box", "chest", "container", "suitcase")
# Tasks 4 and 19: compass directions (n, s, e, w are also task 19's answer symbols).
DIRECTIONS = {"n": (0, 1), "s": (0, -1), "e": (1, 0), "w": (-1, 0)}
OPPOSITE = {"n": "s", "s": "n", "e": "w", "w": "e"}
DIR_WORD = {"n": "north", "s": "south", "e": "east", "w": "west"}
DIR_REL = {d: f"{w}_of" for d, w in DIR_WORD.items()}

ANSWER_WORDS = ("yes", "no", "nothing", *NUMBERS, *DIRECTIONS)
# Relation symbols. World: go, get, drop, given_to (object, given_to, recipient; the giver is the
# object's holder), is_in / not_in (task 9 statements). Questions: is_in, how_many, holding; task 3
# puts the reference location and task 19 the destination in the relation slot.
RELATIONS = ("go", "get", "drop", "given_to", "is_in", "not_in", "how_many", "holding",
             *DIR_REL.values(), "afraid_of", "is_a", "has_color", *POSITIONS, "bigger_than", "fits_in")
ENTITIES = (*ACTORS, "he", "she", *LOCATIONS, *OBJECTS, *ANIMALS_15, *NAMES_15, *ANIMALS_16,
            *COLORS_16, *NAMES_16, *SHAPES_17, "box_of_chocolates", "chocolate", *CONTAINERS_18)
SYMBOLS = ANSWER_WORDS + RELATIONS + ENTITIES  # the env puts <none> and ? in front


class Story(NamedTuple):
    """One generated episode in symbol names; ``supporting`` indexes ``facts``."""

    facts: list  # [(subject, relation, object, sentence)]
    question: tuple  # (subject, relation, object) with "?" in the unknown slot
    text: str
    answer: tuple  # one symbol per answer step
    unordered: bool
    supporting: tuple


class Draws:
    """Uniform floats from the env's ``np_random``, fetched in blocks: one numpy call per draw would
    cost more than the rest of the episode."""

    __slots__ = ("_rng", "_buf", "_i")

    def __init__(self, rng: np.random.Generator, block: int = 64):
        self._rng, self._buf, self._i = rng, rng.random(block).tolist(), 0

    def random(self) -> float:
        if self._i == len(self._buf):
            self._buf, self._i = self._rng.random(len(self._buf)).tolist(), 0
        self._i += 1
        return self._buf[self._i - 1]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def other(self, seq, x):
        """A uniform element of ``seq`` other than ``x`` (which must occur in ``seq``)."""
        i = int(self.random() * (len(seq) - 1))
        return seq[i + (i >= seq.index(x))]

    def shuffle(self, xs: list) -> list:
        for i in range(len(xs) - 1, 0, -1):
            j = int(self.random() * (i + 1))
            xs[i], xs[j] = xs[j], xs[i]
        return xs


def _name(symbol: str) -> str:
    return symbol.capitalize()


def _the(symbol: str) -> str:
    return "the " + symbol.replace("_", " ")


def _shuffled(d: Draws, facts: list, supporting) -> tuple[list, tuple]:
    """Shuffle the story (as bAbI does for tasks 4, 15, 16, 18, 19) and re-index the support."""
    order = d.shuffle(list(range(len(facts))))
    where = {old: new for new, old in enumerate(order)}
    return [facts[i] for i in order], tuple(sorted(where[i] for i in supporting))


# ---------------------------------------------------------------- tasks 1 2 3 6 7 8 9 11: the world
GO, GET, DROP, GIVE, SAY = range(5)
WORLD_ACTIONS = {1: (GO,), 2: (GO, GET, DROP), 3: (GO, GET, DROP), 6: (GO, GET, DROP),
                 7: (GO, GET, DROP, GIVE), 8: (GO, GET, DROP, GIVE), 9: (GO, SAY), 11: (GO,)}


class World:
    """bAbI's world simulation: four actors and three objects in six rooms, plus what the reader knows.

    True state: ``at`` (actor -> room), ``holder`` (object -> actor or None), ``floor`` (object -> room
    when not held). Initial rooms are random and untold, as in bAbI. The reader's knowledge follows
    bAbI's ``Knowledge``: an actor's room is known after a move (``where``: support of that), an
    object's room is known while its holder's room is known, or after a drop by an actor whose room
    was known (``dropped``). Nothing is inferred backwards (a get does not reveal the actor's room).
    """

    def __init__(self, d: Draws, task: int):
        self.d, self.task = d, task
        self.at = {a: d.choice(LOCATIONS) for a in ACTORS}
        self.floor = {o: d.choice(LOCATIONS) for o in OBJECTS}
        self.holder = dict.fromkeys(OBJECTS)
        self.where: dict[str, tuple] = {}  # actor -> support of its known room
        self.acquired: dict[str, int] = {}  # object -> fact of its latest get/give
        self.dropped: dict[str, tuple] = {}  # object -> (room, support) known after a drop
        self.events = {a: [] for a in ACTORS}  # facts that changed an actor's inventory
        self.said: dict[str, tuple] = {}  # task 9: actor -> (room, truth, support) last told
        self.history = {o: [] for o in OBJECTS}  # task 3: distinct known rooms, with support
        self.facts: list = []
        self.last_actor = ""

    def known_room(self, o: str):
        """``(room, support)`` of object ``o`` if the story so far tells it, else None."""
        h = self.holder[o]
        if h is None:
            return self.dropped.get(o)
        if h not in self.where:
            return None
        return self.at[h], tuple(sorted((self.acquired[o], *self.where[h])))

    def act(self, kinds) -> None:
        """Append one random valid action; as bAbI, pick the kind first, then a valid clause."""
        d, i, facts = self.d, len(self.facts), self.facts
        while True:
            kind = d.choice(kinds)
            if kind == GO:
                prev = facts[-1] if facts else None
                # Task 11: a named move is followed by a pronoun move of the same actor.
                coref = self.task == 11 and prev is not None and prev[0] in ACTORS
                a = self.last_actor if coref else d.choice(ACTORS)
                room, verb = d.other(LOCATIONS, self.at[a]), d.choice(GO_VERBS)
                self.at[a], self.last_actor = room, a
                if coref:
                    self.where[a] = (i - 1, i)  # the antecedent sentence supports the pronoun
                    text = f"{d.choice(ADVERBS)} {PRONOUN[a]} {verb} to {_the(room)}."
                    facts.append((PRONOUN[a], "go", room, text))
                else:
                    self.where[a] = (i,)
                    facts.append((a, "go", room, f"{_name(a)} {verb} to {_the(room)}."))
                self.said[a] = (room, True, self.where[a])
                break
            if kind == GET:
                options = [(a, o) for o in OBJECTS if self.holder[o] is None
                           for a in ACTORS if self.at[a] == self.floor[o]]
                if not options:
                    continue
                a, o = d.choice(options)
                self.holder[o], self.acquired[o] = a, i
                self.dropped.pop(o, None)
                self.events[a].append(i)
                facts.append((a, "get", o, f"{_name(a)} {d.choice(GET_VERBS)} {_the(o)} there."))
                break
            if kind == DROP:
                options = [o for o in OBJECTS if self.holder[o] is not None]
                if not options:
                    continue
                o = d.choice(options)
                a = self.holder[o]
                self.holder[o], self.floor[o] = None, self.at[a]
                if a in self.where:
                    self.dropped[o] = (self.at[a], tuple(sorted((*self.where[a], i))))
                else:
                    self.dropped.pop(o, None)
                self.events[a].append(i)
                facts.append((a, "drop", o, f"{_name(a)} {d.choice(DROP_VERBS)} {_the(o)}."))
                break
            if kind == GIVE:
                options = [(self.holder[o], o, b) for o in OBJECTS if self.holder[o] is not None
                           for b in ACTORS if b != self.holder[o] and self.at[b] == self.at[self.holder[o]]]
                if not options:
                    continue
                a, o, b = d.choice(options)
                self.holder[o], self.acquired[o] = b, i
                self.events[a].append(i)
                self.events[b].append(i)
                facts.append((o, "given_to", b, f"{_name(a)} {d.choice(GIVE_VERBS)} {_the(o)} to {_name(b)}."))
                break
            # SAY (task 9): "Mary is in the kitchen." (true) or "Mary is not in the office." (a
            # wrong room); like bAbI's set, it replaces what the reader knows of her room.
            a = d.choice(ACTORS)
            if d.random() < 0.5:
                room = self.at[a]
                facts.append((a, "is_in", room, f"{_name(a)} is in {_the(room)}."))
                self.said[a] = (room, True, (i,))
            else:
                room = d.other(LOCATIONS, self.at[a])
                neg = "not" if d.random() < 0.5 else "no longer"
                facts.append((a, "not_in", room, f"{_name(a)} is {neg} in {_the(room)}."))
                self.said[a] = (room, False, (i,))
            break
        if self.task == 3:
            for o in OBJECTS:
                known = self.known_room(o)
                if known is not None and (not self.history[o] or self.history[o][-1][0] != known[0]):
                    self.history[o].append(known)

    def ask(self):
        """The task's question about a random entity the story lets one answer, or None."""
        d, task = self.d, self.task
        if task in (1, 6, 11):
            known = [a for a in ACTORS if a in self.where]
            if not known:
                return None
            a = d.choice(known)
            room, support = self.at[a], self.where[a]
            if task != 6:
                return (a, "is_in", "?"), f"Where is {_name(a)}?", (room,), False, support
            asked = room if d.random() < 0.5 else d.other(LOCATIONS, room)
            yes = "yes" if asked == room else "no"
            return (a, "is_in", asked), f"Is {_name(a)} in {_the(asked)}?", (yes,), False, support
        if task == 2:
            known = [(o, k) for o in OBJECTS if (k := self.known_room(o)) is not None]
            if not known:
                return None
            o, (room, support) = d.choice(known)
            return (o, "is_in", "?"), f"Where is {_the(o)}?", (room,), False, support
        if task == 3:
            known = [o for o in OBJECTS if len(self.history[o]) > 1]
            if not known:
                return None
            o = d.choice(known)
            (before, s1), (now, s2) = self.history[o][-2:]
            q = f"Where was {_the(o)} before {_the(now)}?"
            return (o, now, "?"), q, (before,), False, tuple(sorted(set(s1) | set(s2)))
        if task in (7, 8):
            known = [a for a in ACTORS if self.events[a]]
            if not known:
                return None
            a = d.choice(known)
            held = sorted((o for o in OBJECTS if self.holder[o] == a), key=self.acquired.__getitem__)
            support = tuple(self.events[a])
            if task == 7:
                q = f"How many objects is {_name(a)} carrying?"
                return (a, "how_many", "?"), q, (NUMBERS[len(held)],), False, support
            q = f"What is {_name(a)} carrying?"
            return (a, "holding", "?"), q, tuple(held) or ("nothing",), True, support
        # task 9: ask about the last thing said of a random actor (bAbI's Negation task)
        known = [a for a in ACTORS if a in self.said]
        a = d.choice(known)
        room, truth, support = self.said[a]
        asked = d.other(LOCATIONS, room) if truth and d.random() < 0.5 else room
        yes = "yes" if truth and asked == room else "no"
        return (a, "is_in", asked), f"Is {_name(a)} in {_the(asked)}?", (yes,), False, support


def world_story(d: Draws, n: int, task: int) -> Story:
    """Tasks 1, 2, 3, 6, 7, 8, 9, 11: ``n`` random actions, then a question the story answers."""
    kinds = WORLD_ACTIONS[task]
    for _ in range(10_000):  # rejection: some short stories answer nothing (e.g. task 3, n=3)
        w = World(d, task)
        for _ in range(n):
            w.act(kinds)
        q = w.ask()
        if q is not None:
            return Story(w.facts, *q)
    raise RuntimeError(f"bAbI task {task}: no answerable story of length {n} found")


# ---------------------------------------------------------------- task 4: two-argument relations
def _compass_fact(d: Draws, a: str, dr: str, b: str) -> tuple:
    """Room a is `dr` of room b, said either way round as bAbI does ("the b is south of the a")."""
    if d.random() < 0.5:
        a, dr, b = b, OPPOSITE[dr], a
    return a, DIR_REL[dr], b, f"The {a} is {DIR_WORD[dr]} of the {b}."


def task4(d: Draws, n: int) -> Story:
    """Rooms in a line (bAbI: three), each next one north (or east) of the last; ask about one pair."""
    rooms = d.shuffle(list(LOCATIONS))[: n + 1]
    line = d.choice(("n", "e"))  # rooms[i + 1] is `line` of rooms[i]
    facts = [_compass_fact(d, rooms[i + 1], line, rooms[i]) for i in range(n)]
    k = d.below(n)
    a, dr, b = rooms[k + 1], line, rooms[k]  # a is directly `dr` of b
    form = d.below(4)
    op = OPPOSITE[dr]
    q, text, ans = [  # bAbI's four phrasings of the one relation
        (("?", DIR_REL[dr], b), f"What is {DIR_WORD[dr]} of the {b}?", a),
        (("?", DIR_REL[op], a), f"What is {DIR_WORD[op]} of the {a}?", b),
        ((a, DIR_REL[dr], "?"), f"What is the {a} {DIR_WORD[dr]} of?", b),
        ((b, DIR_REL[op], "?"), f"What is the {b} {DIR_WORD[op]} of?", a),
    ][form]
    facts, support = _shuffled(d, facts, (k,))
    return Story(facts, q, text, (ans,), False, support)


# ---------------------------------------------------------------- task 15: basic deduction
def task15(d: Draws, n: int) -> Story:
    """Each species fears another; ``n - 4`` named animals (bAbI: 4, one per species)."""
    species = list(ANIMALS_15)
    fears = {s: d.other(species, s) for s in species}
    names = d.shuffle(list(NAMES_15))[: n - 4]
    kinds = d.shuffle(list(species))
    facts = [(s, "afraid_of", f, f"{_name(ANIMALS_15[s])} are afraid of {ANIMALS_15[f]}.")
             for s, f in fears.items()]
    facts += [(x, "is_a", k, f"{_name(x)} is a {k}.") for x, k in zip(names, kinds)]
    j = d.below(len(names))
    x, kind = names[j], kinds[j]
    facts, support = _shuffled(d, facts, (species.index(kind), 4 + j))
    return Story(facts, (x, "afraid_of", "?"), f"What is {_name(x)} afraid of?", (fears[kind],), False, support)


# ---------------------------------------------------------------- task 16: basic induction
def task16(d: Draws, n: int) -> Story:
    """Five named animals; all of a species share its colour; the asked one's colour is untold."""
    color = dict(zip(ANIMALS_16, d.shuffle(list(COLORS_16))))
    kind = {x: d.choice(ANIMALS_16) for x in NAMES_16}
    x = d.choice(NAMES_16)
    while sum(k == kind[x] for k in kind.values()) < 2:  # bAbI: someone else must be of x's species
        kind[x] = d.choice(ANIMALS_16)
    facts, support = [], []
    for y in NAMES_16:
        if y == x or kind[y] == kind[x]:
            support.append(len(facts))
        facts.append((y, "is_a", kind[y], f"{_name(y)} is a {kind[y]}."))
        if y != x:
            if kind[y] == kind[x]:
                support.append(len(facts))
            facts.append((y, "has_color", color[kind[y]], f"{_name(y)} is {color[kind[y]]}."))
    facts, support = _shuffled(d, facts, support)
    return Story(facts, (x, "has_color", "?"), f"What color is {_name(x)}?", (color[kind[x]],), False, support)


# ---------------------------------------------------------------- task 17: positional reasoning
def task17(d: Draws, n: int) -> Story:
    """``n + 1`` shapes on a grid, each next to the last (bAbI: 3 shapes, 2 statements); yes/no."""
    shapes: list = []
    for tries in range(10_000):  # as bAbI: draw, keep what does not clash
        if len(shapes) == n + 1:
            break
        s = d.choice(SHAPES_17)
        if s not in shapes and all(_distinct(s, t) for t in shapes):
            shapes.append(s)
        elif tries % 100 == 99:
            shapes = []  # stuck (four plain shapes leave no room for a seventh): start over
    pos, facts = [(0, 0)], []
    while len(pos) < n + 1:  # a self-avoiding random walk, as bAbI fills its grid
        (x, y), (dx, dy) = pos[-1], DIRECTIONS[d.choice("nsew")]
        if (x + dx, y + dy) in pos:
            continue
        pos.append((x + dx, y + dy))
        new, old = shapes[len(pos) - 1], shapes[len(pos) - 2]
        rel = {(1, 0): "right_of", (-1, 0): "left_of", (0, 1): "above", (0, -1): "below"}[(dx, dy)]
        if d.random() < 0.5:  # "the new shape is above the old one" or "the old one is below the new"
            new, rel, old = old, POSITIONS[rel], new
        facts.append((new, rel, old, f"{_the(new).capitalize()} is {POSITION_WORDS[rel]} {_the(old)}."))
    i, j = d.shuffle(list(range(n + 1)))[:2]
    dx, dy = pos[i][0] - pos[j][0], pos[i][1] - pos[j][1]
    horizontal = dy == 0 or (dx != 0 and d.random() < 0.5)  # an axis on which the two differ
    true_rel = ("right_of" if dx > 0 else "left_of") if horizontal else ("above" if dy > 0 else "below")
    yes = d.random() < 0.5
    rel = true_rel if yes else POSITIONS[true_rel]
    a, b = shapes[i], shapes[j]
    text = f"Is {_the(a)} {POSITION_WORDS[rel]} {_the(b)}?"
    support = tuple(range(min(i, j), max(i, j)))  # the statements linking the two along the chain
    return Story(facts, (a, rel, b), text, ("yes" if yes else "no",), False, support)


def _distinct(s: str, t: str) -> bool:
    """Whether shapes s and t can share a story: "the triangle" clashes with "the red triangle"."""
    return s.rsplit("_", 1)[-1] != t.rsplit("_", 1)[-1] or ("_" in s and "_" in t)


# ---------------------------------------------------------------- task 18: size reasoning
def task18(d: Draws, n: int) -> Story:
    """Bigger-than facts over six objects; ask a pair two steps apart (bAbI's ``steps=2``)."""
    for _ in range(1000):
        objs = [*d.shuffle(list(CONTAINERS_18)), "box_of_chocolates", "chocolate"]  # biggest first
        out = [0] * 6  # bitmask of the objects stated smaller than objs[u]
        chain = sorted(d.shuffle(list(range(6)))[:3])
        edges = [(chain[0], chain[1]), (chain[1], chain[2])]
        for u, v in edges:
            out[u] |= 1 << v
        while len(edges) < n:
            for _ in range(100):
                u, v = sorted(d.shuffle(list(range(6)))[:2])
                if out[u] >> v & 1:
                    continue
                out[u] |= 1 << v
                if _two_step_pairs(out):
                    edges.append((u, v))
                    break
                out[u] &= ~(1 << v)
            else:
                break
        if len(edges) == n:
            break
    else:
        raise RuntimeError(f"bAbI task 18: no story of length {n} found")
    u, v, w = d.choice(_two_step_pairs(out))
    support = (edges.index((u, w)), edges.index((w, v)))
    facts = []
    for x, y in edges:
        X, Y = objs[x].replace("_", " "), objs[y].replace("_", " ")
        if d.random() < 0.5:
            facts.append((objs[x], "bigger_than", objs[y], f"The {X} is bigger than the {Y}."))
        else:
            facts.append((objs[y], "fits_in", objs[x], f"The {Y} fits inside the {X}."))
    big, small = objs[u], objs[v]
    B, S = big.replace("_", " "), small.replace("_", " ")
    q, text, ans = [
        ((big, "bigger_than", small), f"Is the {B} bigger than the {S}?", "yes"),
        ((big, "fits_in", small), f"Does the {B} fit in the {S}?", "no"),
        ((small, "bigger_than", big), f"Is the {S} bigger than the {B}?", "no"),
        ((small, "fits_in", big), f"Does the {S} fit in the {B}?", "yes"),
    ][d.below(4)]
    facts, support = _shuffled(d, facts, support)
    return Story(facts, q, text, (ans,), False, support)


def _two_step_pairs(out: list) -> list:
    """(u, v, w): v is two facts below u via w, and no fact compares u and v directly."""
    pairs = []
    for u in range(6):
        for v in range(u + 2, 6):
            if not out[u] >> v & 1 and (w := _via(out, u, v)) >= 0:
                pairs.append((u, v, w))
    return pairs


def _via(out: list, u: int, v: int) -> int:
    """The first object w with u > w > v stated, or -1."""
    for w in range(u + 1, v):
        if out[u] >> w & 1 and out[w] >> v & 1:
            return w
    return -1


# ---------------------------------------------------------------- task 19: path finding
def task19(d: Draws, n: int) -> Story:
    """Rooms on a grid, a two-step path plus ``n - 2`` decoy rooms; the path is the only one."""
    rooms = d.shuffle(list(LOCATIONS))
    while True:
        cells, facts, path = [(0, 0)], [], []  # cells[k]: where rooms[k] is
        for k in range(1, n + 1):
            for _ in range(100):
                src = k - 1 if k <= 2 else d.below(k)  # the path extends the last room; decoys hang anywhere
                at, dr = cells[src], d.choice("nsew")
                p = (at[0] + DIRECTIONS[dr][0], at[1] + DIRECTIONS[dr][1])
                # Free, and next to no other room: so every adjacency is stated and paths are unique.
                if p not in cells and sum((p[0] + x, p[1] + y) in cells for x, y in DIRECTIONS.values()) == 1:
                    break
            else:
                break
            cells.append(p)
            if k <= 2:
                path.append(dr)
            facts.append(_compass_fact(d, rooms[k], dr, rooms[src]))
        if len(facts) == n:
            break
    facts, support = _shuffled(d, facts, (0, 1))
    src, dst = rooms[0], rooms[2]
    text = f"How do you go from the {src} to the {dst}?"
    return Story(facts, (src, dst, "?"), text, tuple(path), False, support)


# ---------------------------------------------------------------- the table the env reads
# task -> (generator, story_length range allowed, bAbI-like default range drawn when story_length=None)
TASKS = {
    1: (world_story, (1, 100), (2, 10)),
    2: (world_story, (2, 100), (4, 12)),
    3: (world_story, (3, 100), (6, 16)),
    4: (task4, (1, 5), (2, 2)),
    6: (world_story, (1, 100), (2, 10)),
    7: (world_story, (1, 100), (2, 10)),
    8: (world_story, (1, 100), (2, 10)),
    9: (world_story, (1, 100), (2, 10)),
    11: (world_story, (1, 100), (2, 10)),
    15: (task15, (5, 8), (8, 8)),
    16: (task16, (9, 9), (9, 9)),
    17: (task17, (2, 6), (2, 2)),
    18: (task18, (2, 9), (4, 9)),
    19: (task19, (2, 5), (4, 5)),
}


def generate(task: int, d: Draws, n: int) -> Story:
    gen = TASKS[task][0]
    return gen(d, n, task) if gen is world_story else gen(d, n)


def max_text_length() -> int:
    """An upper bound on every generated sentence: each template with its longest fillers."""
    longest = lambda words: max(words, key=len)  # noqa: E731
    actor, room, obj = _name(longest(ACTORS)), longest(LOCATIONS), longest(OBJECTS)
    shape = longest(SHAPES_17).replace("_", " ")
    thing = "box of chocolates"
    pos, dirw = longest(POSITION_WORDS.values()), longest(DIR_WORD.values())
    texts = [
        f"{longest(ADVERBS)} she {longest(GO_VERBS)} to the {room}.",
        f"{actor} {longest(GIVE_VERBS)} the {obj} to {actor}.",
        f"{actor} {longest(GET_VERBS)} the {obj} there.",
        f"{actor} is no longer in the {room}.",
        f"Where was the {obj} before the {room}?",
        f"How many objects is {actor} carrying?",
        f"How do you go from the {room} to the {room}?",
        f"What is the {room} {dirw} of?",
        f"{_name(longest(ANIMALS_15.values()))} are afraid of {longest(ANIMALS_15.values())}.",
        f"What is {_name(longest(NAMES_15))} afraid of?",
        f"What color is {_name(longest(NAMES_16))}?",
        f"The {shape} is {pos} the {shape}.",
        f"Is the {shape} {pos} the {shape}?",
        f"The {thing} fits inside the {thing}.",
        f"Does the {thing} fit in the {thing}?",
        f"Is the {thing} bigger than the {thing}?",
    ]
    return max(map(len, texts))
