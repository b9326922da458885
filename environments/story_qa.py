"""StoryQA: bAbI-style stories streamed as facts, then one question (Weston et al. 2015).

Stories are generated procedurally by :mod:`environments.babi_tasks` (task families by bAbI number)
or read from a real bAbI file (``data_path``), whose sentences a rule-based parser turns into
(subject, relation, object) triples.
"""

from __future__ import annotations

import os
import re

from environments import babi_tasks as bt
from environments.core import (CHARSET, NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_choice,
                               check_range)

SUPPORTED_TASKS = tuple(bt.TASKS)

# ---------------------------------------------------------------- the bAbI-file parser
# Each rule: a regex on the lowercased sentence without its final "." or "?", and how its groups
# make a triple. Noun phrases keep their words joined by "_" ("box of chocolates" -> box_of_chocolates).
_GO = r"(?:moved|went back|went|journeyed|travelled)"
_POS = r"(above|below|to the left of|to the right of)"
_DIR = r"(north|south|east|west)"
_ADVERB = r"(?:after that|afterwards|then|following that)"
_STATEMENTS = (
    (rf"{_ADVERB} (he|she|they) (?:then )?{_GO} to the (.+)", lambda g: (g[0], "go", g[1])),
    (rf"(he|she|they) then {_GO} to the (.+)", lambda g: (g[0], "go", g[1])),
    (rf"(\w+) {_GO} to the (.+)", lambda g: (g[0], "go", g[1])),
    (r"(\w+) (?:got|grabbed|picked up|took) the (.+?)(?: there)?", lambda g: (g[0], "get", g[1])),
    (r"(\w+) (?:dropped|discarded|put down|left|let go of) the (.+?)(?: there)?", lambda g: (g[0], "drop", g[1])),
    (r"(\w+) (?:gave|handed|passed) the (.+) to (\w+)", lambda g: (g[1], "given_to", g[2])),
    (r"(\w+) is in the (.+)", lambda g: (g[0], "is_in", g[1])),
    (r"(\w+) is (?:not|no longer) in the (.+)", lambda g: (g[0], "not_in", g[1])),
    (rf"the (.+) is {_DIR} of the (.+)", lambda g: (g[0], g[1] + "_of", g[2])),
    (rf"the (.+) is {_POS} the (.+)", lambda g: (g[0], _position(g[1]), g[2])),
    (r"the (.+) is bigger than the (.+)", lambda g: (g[0], "bigger_than", g[1])),
    (r"the (.+) fits (?:inside|in) the (.+)", lambda g: (g[0], "fits_in", g[1])),
    (r"(\w+) are afraid of (\w+)", lambda g: (_singular(g[0]), "afraid_of", _singular(g[1]))),
    (r"(\w+) is an? (\w+)", lambda g: (g[0], "is_a", g[1])),
    (rf"(\w+) is ({'|'.join(bt.COLORS_16)})", lambda g: (g[0], "has_color", g[1])),
)
# Questions: (regex, triple maker, unordered answer?)
_QUESTIONS = (
    (r"where is (?:the )?(.+)", lambda g: (g[0], "is_in", QUERY), False),
    (r"where was (?:the )?(.+) before the (.+)", lambda g: (g[0], g[1], QUERY), False),
    (rf"is the (.+) {_POS} the (.+)", lambda g: (g[0], _position(g[1]), g[2]), False),
    (r"is the (.+) bigger than (?:the )?(.+)", lambda g: (g[0], "bigger_than", g[1]), False),
    (r"does the (.+) fit in the (.+)", lambda g: (g[0], "fits_in", g[1]), False),
    (r"is (?:the )?(.+) in the (.+)", lambda g: (g[0], "is_in", g[1]), False),
    (r"how many objects is (\w+) carrying", lambda g: (g[0], "how_many", QUERY), False),
    (r"what is (\w+) carrying", lambda g: (g[0], "holding", QUERY), True),
    (r"what is (\w+) afraid of", lambda g: (g[0], "afraid_of", QUERY), False),
    (r"what color is (\w+)", lambda g: (g[0], "has_color", QUERY), False),
    (rf"what is {_DIR} of the (.+)", lambda g: (QUERY, g[0] + "_of", g[1]), False),
    (rf"what is the (.+) {_DIR} of", lambda g: (g[0], g[1] + "_of", QUERY), False),
    (r"how do you go from the (.+) to the (.+)", lambda g: (g[0], g[1], QUERY), False),
)
_STATEMENTS = tuple((re.compile(p), f) for p, f in _STATEMENTS)
_QUESTIONS = tuple((re.compile(p), f, u) for p, f, u in _QUESTIONS)
_PLURALS = {plural: single for single, plural in bt.ANIMALS_15.items()}


def _position(words: str) -> str:
    return words.replace("to the ", "").replace(" ", "_")


def _singular(word: str) -> str:
    return _PLURALS.get(word, word[:-1] if word.endswith("s") else word)


def _parse(rules, sentence: str):
    """The first rule that matches the whole sentence, with symbols normalised; None if none does."""
    s = sentence.lower().rstrip(" .?")
    for rule in rules:
        m = rule[0].fullmatch(s)
        if m:
            return tuple(w.replace(" ", "_") for w in rule[1](m.groups())), *rule[2:]
    return None


def read_babi_file(path) -> list[tuple]:
    """Every question of a bAbI-format file as ``(facts, question, text, answer, unordered, support, line)``.

    ``facts`` are the story's statements before the question as ``(s, r, o, sentence)``; ``support``
    indexes them. Raises ``ValueError`` naming the file and line of anything it cannot read.
    """
    out, facts, where = [], [], {}  # where: story line id -> index in facts
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data_path={os.fspath(path)!r} is not a file; allowed: a bAbI-format .txt file, or "
                                "null to generate stories")
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            head, _, rest = line.partition(" ")
            fail = lambda why: ValueError(f"{os.fspath(path)}, line {n}: {why}: {line!r}")  # noqa: E731
            if not head.isdigit():
                raise fail("a line must start with its story line number")
            if head == "1":
                facts, where = [], {}
            parts = rest.split("\t")
            text = parts[0].strip()
            if not set(text) <= CHARSET:
                raise fail(f"characters outside CHARSET: {sorted(set(text) - CHARSET)}")
            if len(parts) == 1:
                parsed = _parse(_STATEMENTS, text)
                if parsed is None:
                    raise fail("no bAbI statement template of the supported tasks matches")
                where[head] = len(facts)
                facts.append((*parsed[0], text))
                continue
            if len(parts) != 3:
                raise fail("a question line needs 'question<TAB>answer<TAB>supporting ids'")
            parsed = _parse(_QUESTIONS, text)
            if parsed is None:
                raise fail("no bAbI question template of the supported tasks matches")
            triple, unordered = parsed
            answer = tuple(a.strip().lower().replace(" ", "_") for a in parts[1].split(","))
            if not all(answer):
                raise fail("empty answer")
            try:
                support = tuple(sorted(where[i] for i in parts[2].split()))
            except KeyError as e:
                raise fail(f"supporting id {e} is not a statement of this story before the question") from None
            out.append((list(facts), triple, text, answer, unordered, support, n))
    if not out:
        raise ValueError(f"{os.fspath(path)}: no questions found")
    return out


class StoryQAEnv(FactStreamEnv):
    """bAbI question answering: read a story's sentences as triples, then answer one question.

    ## Description

    The bAbI tasks of Weston et al. (2015), "Towards AI-Complete Question Answering: A Set of
    Prerequisite Toy Tasks", as used by PMI. Stories are simulated like bAbI's generator
    (facebookarchive/bAbI-tasks): actors Mary, John, Daniel and Sandra move between six rooms
    (kitchen, garden, office, hallway, bathroom, bedroom) and get, drop and give the apple, football
    and milk; other tasks state facts about animals, shapes, sizes and room layouts. Each sentence
    is one reading step; then one question, answered by simulating the world. Supported tasks:

    | task | name | question triple | answer |
    |---|---|---|---|
    | 1 | single supporting fact | (mary, is_in, ?) "Where is Mary?" | room |
    | 2 | two supporting facts | (football, is_in, ?) | room |
    | 3 | three supporting facts | (football, kitchen, ?) "Where was the football before the kitchen?" | room |
    | 4 | two-argument relations | (?, north_of, kitchen) or (kitchen, north_of, ?) | room |
    | 6 | yes/no questions | (john, is_in, garden) "Is John in the garden?" | yes / no |
    | 7 | counting | (mary, how_many, ?) "How many objects is Mary carrying?" | none, one, two, three |
    | 8 | lists / sets | (daniel, holding, ?) "What is Daniel carrying?" | objects, any order, or nothing |
    | 9 | simple negation | (mary, is_in, kitchen) | yes / no |
    | 11 | basic coreference | (mary, is_in, ?) | room |
    | 15 | basic deduction | (gertrude, afraid_of, ?) | animal |
    | 16 | basic induction | (greg, has_color, ?) | colour |
    | 17 | positional reasoning | (red_square, left_of, triangle) | yes / no |
    | 18 | size reasoning | (box, fits_in, chest) or (box, bigger_than, chest) | yes / no |
    | 19 | path finding | (kitchen, garden, ?) "How do you go from the kitchen to the garden?" | two of n, s, e, w |

    Facts are triples of symbols: world actions use the relations ``go``, ``get``, ``drop`` and
    ``given_to`` ("Mary gave the milk to John." -> (milk, given_to, john): the giver is whoever held
    it), task 9 adds ``is_in`` / ``not_in``, task 11 has the pronouns ``he`` / ``she`` as subjects
    ("Afterwards she went to the garden." -> (she, go, garden)); the others ``north_of`` ...
    ``west_of``, ``afraid_of``, ``is_a``, ``has_color``, ``above``, ``below``, ``left_of``,
    ``right_of``, ``bigger_than``, ``fits_in``. Two question conventions: task 3 puts the reference
    room in the relation slot, task 19 the destination. Task 4 asks about rooms directly next to each
    other. ``info["supporting_facts"]`` (answering phase) lists the reading steps bAbI names as
    support: the move that put an actor in a room; the get/give and holder's move (or the drop) for
    an object; for a pronoun also the sentence naming its antecedent; for counts and lists every
    fact that changed the actor's inventory; for task 17 the statements linking the two shapes
    (bAbI lists both of its two even when one suffices).

    ## Action Space

    ``Discrete(V)``: a symbol of ``vocab``. While reading, 0 (``<none>``) is expected and not scored.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``: the sentence's triple of
    symbol ids and the sentence; in the answering phase the question with ``?`` in the unknown slot.

    ## Rewards

    1 for each answer step whose symbol is accepted, else 0 (task 8 accepts its objects in any order).

    ## Starting State

    A new story per reset, drawn from ``np_random`` (or a question of the bAbI file). ``info`` at
    reset holds ``task``, ``story_length`` and ``num_supporting`` (and ``line``, the question's line
    number, for file episodes).

    ## Episode End

    Terminates after the last answer step; ``info["success"]`` says whether every step was right.
    Never truncates.

    ## Arguments

    - ``task`` (int, default 1): the bAbI task number, one of 1, 2, 3, 4, 6, 7, 8, 9, 11, 15, 16,
      17, 18, 19. Recorded as ``info["task"]``; with ``data_path`` it does not pick the stories.
    - ``story_length`` (int or None, default None): sentences before the question. None draws it
      per episode from bAbI-like ranges: tasks 1, 6, 7, 8, 9, 11: 2..10; task 2: 4..12; task 3:
      6..16; task 4: 2; task 15: 8; task 16: 9; task 17: 2; task 18: 4..9; task 19: 4..5. Allowed
      values: tasks 1, 6, 7, 8, 9, 11: 1..100; task 2: 2..100; task 3: 3..100; task 4: 1..5 (rooms
      in a line, one statement per neighbouring pair); task 15: 5..8 (four fears plus 1..4 named
      animals); task 16: 9 only; task 17: 2..6 (a chain of story_length + 1 shapes); task 18:
      2..9; task 19: 2..5 (the two-step path plus story_length - 2 decoy rooms).
    - ``data_path`` (str or path or None, default None): a bAbI-format file (``N sentence`` lines,
      numbering restarting at 1 for each story; question lines ``N question?<TAB>answer<TAB>ids``).
      Read whole in ``__init__``: every question becomes an episode (the story's statements before
      it, then the question; comma answers take one step per symbol, unordered for "What is X
      carrying?"). Each reset draws one of them uniformly with ``np_random``. Words the built-in
      vocabulary lacks are appended to it (sorted), so V depends on the file. A line no template of
      the supported tasks parses raises ``ValueError`` naming the file and line.
    - ``render_mode`` (None or "ansi", default None): "ansi" makes ``render()`` return the step's
      sentence and triple.
    """

    def __init__(self, task: int = 1, story_length: int | None = None, data_path=None, render_mode: str | None = None):
        check_choice("task", task, SUPPORTED_TASKS)
        self.task = int(task)
        lo, hi = bt.TASKS[self.task][1]
        if story_length is not None:
            try:
                check_range("story_length", story_length, lo, hi, integer=True)
            except ValueError as e:
                raise ValueError(f"{e} for task={self.task}") from None
            story_length = int(story_length)
        self.story_length = story_length
        vocab = (NONE, QUERY, *bt.SYMBOLS)
        max_len = bt.max_text_length()
        self._file = None
        if data_path is not None:
            items = read_babi_file(data_path)
            words = {w for it in items for f in it[0] for w in f[:3]}
            words |= {w for it in items for w in (*it[1], *it[3])}
            vocab += tuple(sorted(words - set(vocab)))
            max_len = max(max_len, *(len(t) for it in items for t in (it[2], *(f[3] for f in it[0]))))
        super().__init__(vocab, max_len, render_mode)
        if data_path is not None:
            # Episodes are immutable here, so each file question is built once and reused.
            self._file = [self._episode_of(*it[:6], {"task": self.task, "line": it[6]}) for it in items]

    def _episode_of(self, facts, q, text, answer, unordered, support, info) -> Episode:
        ix = self.index
        reading = [Fact((ix[s], ix[r], ix[o]), t) for s, r, o, t in facts]
        info["story_length"], info["num_supporting"] = len(reading), len(support)
        question = Question((ix[q[0]], ix[q[1]], ix[q[2]]), text, tuple(ix[a] for a in answer),
                            unordered=unordered, supporting=support)
        return Episode(reading, [question], info)

    def _generate(self) -> Episode:
        if self._file is not None:
            return self._file[int(self.np_random.integers(len(self._file)))]
        d = bt.Draws(self.np_random)
        n = self.story_length
        if n is None:
            lo, hi = bt.TASKS[self.task][2]
            n = lo + d.below(hi - lo + 1)
        return self._episode_of(*bt.generate(self.task, d, n), {"task": self.task})
