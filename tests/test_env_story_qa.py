"""StoryQA (bAbI): every task's answer re-derived from the streamed triples alone and again from
its supporting facts alone; story lengths, vocabulary, arguments, and the bAbI-file reader."""

from collections import defaultdict, deque

import gymnasium as gym
import pytest

import environments  # noqa: F401  (registers the ids)
from environments.babi_tasks import SHAPE_KINDS, TASKS
from environments.story_qa import read_babi_file

ID = "cogarch/StoryQA-v0"
NUMBERS = ("none", "one", "two", "three")


def play(env, seed=None, answers=None):
    """One episode with the oracle (or with the given answer names); the stream as symbol names."""
    obs, info = env.reset(seed=seed)
    vocab = env.unwrapped.vocab
    names = lambda o: tuple(vocab[i] for i in o["fact"])  # noqa: E731
    ep = {"facts": [], "texts": [], "oracle": [], "rewards": [], "info": info}
    done = False
    while not done:
        if info["phase"] == 0:
            ep["facts"].append(names(obs))
            ep["texts"].append(obs["text"])
            action = 0
        else:
            ep["question"], ep["qtext"], ep["support"] = names(obs), obs["text"], info["supporting_facts"]
            ep["oracle"].append(vocab[info["oracle_action"]])
            action = info["oracle_action"] if answers is None else vocab.index(answers[len(ep["oracle"]) - 1])
        obs, r, done, _, info = env.step(action)
        ep["rewards"].append(r)
    ep["success"] = info["success"]
    return ep


# ---------------------------------------------------------------- independent checkers, from triples
def replay_world(facts):
    """What the triples of tasks 1-3, 6-9, 11 tell: rooms, holders, inventories, statements."""
    room, holder, floor, said = {}, {}, {}, {}
    inv, history = defaultdict(list), defaultdict(list)  # history: object -> distinct known rooms
    held_by = defaultdict(set)  # object -> every actor that held it
    involved, prev = [], None  # involved: per fact, who and what it is about
    for s, r, o in facts:
        if s in ("he", "she"):
            s = prev  # a pronoun stands for the actor of the sentence before
        if r == "go":
            room[s], said[s] = o, (o, True)
            involved.append({s, o})
        elif r == "get":
            holder[o] = s
            inv[s].append(o)
            involved.append({s, o})
        elif r == "drop":
            holder[o], floor[o] = None, room.get(s)
            if o in inv[s]:  # (a drop's support need not include the get)
                inv[s].remove(o)
            involved.append({s, o})
        elif r == "given_to":  # (object, given_to, recipient); the giver is whoever held it
            giver = holder.get(s)
            if giver is not None:
                inv[giver].remove(s)
            holder[s] = o
            inv[o].append(s)
            involved.append({giver, s, o})
        else:  # task 9: is_in / not_in
            said[s] = (o, r == "is_in")
            involved.append({s, o})
        prev = s
        for obj, h in holder.items():
            held_by[obj].add(h)
        for obj in set(holder) | set(floor):
            h = holder.get(obj)
            known = room.get(h) if h is not None else floor.get(obj)
            if known is not None and (not history[obj] or history[obj][-1] != known):
                history[obj].append(known)
    return {"room": room, "holder": holder, "floor": floor, "said": said, "inv": inv,
            "history": history, "involved": involved, "held_by": held_by}


def world_answer(task, facts, q):
    w = replay_world(facts)
    s, r, o = q
    if task in (1, 11):
        return [w["room"][s]]
    if task == 2:
        h = w["holder"].get(s)
        return [w["room"][h] if h is not None else w["floor"][s]]
    if task == 3:
        assert w["history"][s][-1] == r, "the reference room is where the object is now"
        return [w["history"][s][-2]]
    if task == 6:
        return ["yes" if w["room"][s] == o else "no"]
    if task == 7:
        return [NUMBERS[len(w["inv"][s])]]
    if task == 8:
        return sorted(w["inv"][s]) or ["nothing"]
    room, true = w["said"][s]  # task 9
    assert true or room == o, "a 'no' from negation must be about the negated room"
    return ["yes" if true and room == o else "no"]


def dir_edges(facts):
    """Task 4 and 19 facts as moves: (a, north_of, b) means from b go n to a (and s back)."""
    opp = {"n": "s", "s": "n", "e": "w", "w": "e"}
    moves = defaultdict(dict)
    for a, r, b in facts:
        d = r[0]  # north_of -> n
        moves[b][a], moves[a][b] = d, opp[d]
    return moves


def answer_4(facts, q):
    moves = dir_edges(facts)
    s, r, o = q  # (?, D_of, b): what is D of b;  (a, D_of, ?): what is a D of
    if s == "?":
        found = [a for a, d in moves[o].items() if d == r[0]]
    else:
        found = [b for b, d in moves[s].items() if {"n": "s", "s": "n", "e": "w", "w": "e"}[d] == r[0]]
    assert len(found) == 1
    return found


def answer_19(facts, q):
    moves = dir_edges(facts)
    src, dst = q[0], q[1]
    assert len(moves) == len(facts) + 1, "the rooms form a tree, so the path is unique"
    back = {src: None}
    todo = deque([src])
    while todo:
        u = todo.popleft()
        for v in moves[u]:
            if v not in back:
                back[v] = u
                todo.append(v)
    path, v = [], dst
    while back[v] is not None:
        path.append(moves[back[v]][v])
        v = back[v]
    return path[::-1]


def answer_15(facts, q):
    kind = {s: o for s, r, o in facts if r == "is_a"}
    fear = {s: o for s, r, o in facts if r == "afraid_of"}
    return [fear[kind[q[0]]]]


def answer_16(facts, q):
    kind = {s: o for s, r, o in facts if r == "is_a"}
    color = {s: o for s, r, o in facts if r == "has_color"}
    seen = {color[y] for y in color if kind.get(y) == kind[q[0]]}
    assert len(seen) == 1 and q[0] not in color
    return list(seen)


def answer_17(facts, q):
    step = {"above": (0, 1), "below": (0, -1), "left_of": (-1, 0), "right_of": (1, 0)}
    pos = {facts[0][2]: (0, 0)}
    while len(pos) < len({x for f in facts for x in (f[0], f[2])}):
        for a, r, b in facts:  # a = b + step[r]
            if b in pos and a not in pos:
                pos[a] = (pos[b][0] + step[r][0], pos[b][1] + step[r][1])
            elif a in pos and b not in pos:
                pos[b] = (pos[a][0] - step[r][0], pos[a][1] - step[r][1])
    (xa, ya), (xb, yb) = pos[q[0]], pos[q[2]]
    holds = {"above": ya > yb, "below": ya < yb, "left_of": xa < xb, "right_of": xa > xb}[q[1]]
    return ["yes" if holds else "no"]


def answer_18(facts, q):
    bigger = {(a, b) if r == "bigger_than" else (b, a) for a, r, b in facts}
    a, r, b = q
    assert (a, b) not in bigger and (b, a) not in bigger, "no fact compares the pair directly"
    closure = set(bigger)
    while True:
        more = {(x, z) for x, y in closure for y2, z in closure if y == y2} - closure
        if not more:
            break
        closure |= more
    big, small = (a, b) if r == "bigger_than" else (b, a)
    assert (big, small) in closure or (small, big) in closure
    return ["yes" if (big, small) in closure else "no"]


ANSWER = {4: answer_4, 15: answer_15, 16: answer_16, 17: answer_17, 18: answer_18, 19: answer_19}


def derive(task, facts, q):
    return world_answer(task, facts, q) if task not in ANSWER else ANSWER[task](facts, q)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_answers_follow_from_the_triples_and_from_the_supporting_facts_alone(task):
    _, (lo, hi), _ = TASKS[task]
    runs = [(gym.make(ID, task=task), range(200))]  # default lengths, then the shortest and a long one
    runs += [(gym.make(ID, task=task, story_length=n), range(30)) for n in {lo, min(hi, 30)}]
    for env, seed in ((env, seed) for env, seeds in runs for seed in seeds):
        ep = play(env, seed)
        assert ep["success"] and sum(ep["rewards"]) == len(ep["oracle"])
        given = sorted(ep["oracle"]) if task == 8 else ep["oracle"]
        assert derive(task, ep["facts"], ep["question"]) == given, ep
        support = [ep["facts"][i] for i in ep["support"]]
        assert derive(task, support, ep["question"]) == given, ep


@pytest.mark.parametrize("task", (1, 2, 3, 6, 7, 8, 9, 11))
def test_supporting_facts_are_about_the_questions_entity(task):
    env = gym.make(ID, task=task)
    for seed in range(100):
        ep = play(env, seed)
        w = replay_world(ep["facts"])
        subject = ep["question"][0]
        related = {subject} | w["held_by"][subject]  # an object's room is told by its holders' moves
        assert ep["support"], ep
        for i in ep["support"]:
            assert w["involved"][i] & related, (i, ep)
        if task in (1, 6, 11):
            assert len(ep["support"]) in (1, 2)


# ---------------------------------------------------------------- arguments, lengths, vocabulary
def test_unsupported_task_and_bad_story_length_are_refused():
    with pytest.raises(ValueError, match=r"task.*1, 2, 3, 4, 6, 7, 8, 9, 11, 15, 16, 17, 18, 19"):
        gym.make(ID, task=25)
    for task, n in ((1, 0), (1, 101), (16, 8), (17, 7), (19, 6), (3, 2)):
        with pytest.raises(ValueError, match="story_length"):
            gym.make(ID, task=task, story_length=n)
    with pytest.raises(ValueError, match="story_length"):
        gym.make(ID, task=1, story_length=2.5)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_story_length_sets_the_reading_steps(task):
    _, (lo, hi), (dlo, dhi) = TASKS[task]
    for n in {lo, hi}:
        env = gym.make(ID, task=task, story_length=n)
        for seed in range(5):
            ep = play(env, seed)
            assert len(ep["facts"]) == n == ep["info"]["story_length"]
            assert ep["info"]["task"] == task and ep["info"]["num_supporting"] == len(ep["support"])
    lengths = {len(play(gym.make(ID, task=task), seed)["facts"]) for seed in range(60)}
    assert lengths == set(range(dlo, dhi + 1))


def test_vocabulary_does_not_depend_on_the_task():
    vocabs = {gym.make(ID, task=t).unwrapped.vocab for t in TASKS}
    assert len(vocabs) == 1
    vocab = vocabs.pop()
    assert vocab[:2] == ("<none>", "?") and len(set(vocab)) == len(vocab)


@pytest.mark.parametrize("task", (3, 8, 17, 19))
def test_same_seed_same_story(task):
    a, b = gym.make(ID, task=task), gym.make(ID, task=task)
    for seed in range(20):
        ea, eb = play(a, seed), play(b, seed)
        assert ea["texts"] == eb["texts"] and ea["facts"] == eb["facts"] and ea["oracle"] == eb["oracle"]


# ---------------------------------------------------------------- task-specific properties
def test_task8_accepts_the_objects_in_any_order():
    env = gym.make(ID, task=8, story_length=10)
    seen = 0
    for seed in range(300):
        ep = play(env, seed)
        if len(ep["oracle"]) > 1:
            seen += 1
            rev = play(env, seed, answers=ep["oracle"][::-1])
            assert rev["success"] and sum(rev["rewards"]) == len(ep["oracle"])
        assert ep["oracle"] == ["nothing"] or "nothing" not in ep["oracle"]
    assert seen > 10


def test_task11_pronouns_follow_a_named_sentence_of_the_same_actor():
    env = gym.make(ID, task=11, story_length=8)
    for seed in range(50):
        ep = play(env, seed)
        for i, ((s, r, o), text) in enumerate(zip(ep["facts"], ep["texts"])):
            named = s not in ("he", "she")
            assert named == (i % 2 == 0)  # bAbI's pairs: named, then pronoun
            if not named:
                assert text.startswith(("After that ", "Afterwards ", "Then ", "Following that "))
                assert f" {s} " in text and ep["facts"][i - 1][0] in ("mary", "john", "daniel", "sandra")
                assert s == ("he" if ep["facts"][i - 1][0] in ("john", "daniel") else "she")
        if ep["support"][-1] % 2 == 1:
            assert ep["support"] == (ep["support"][-1] - 1, ep["support"][-1])


def test_task17_shapes_are_never_ambiguous():
    env = gym.make(ID, task=17, story_length=6)
    for seed in range(100):
        shapes = {x for f in play(env, seed)["facts"] for x in (f[0], f[2])}
        assert len(shapes) == 7
        for kind in SHAPE_KINDS:
            assert kind not in shapes or not any(s.endswith("_" + kind) for s in shapes)


def test_generated_stories_written_as_a_babi_file_read_back_the_same(tmp_path):
    """The file parser covers every template the generators use, and gives the same triples."""
    lines, expected = [], []
    for task in TASKS:
        env = gym.make(ID, task=task)
        for seed in range(30):
            ep = play(env, seed)
            for text in ep["texts"] + [ep["qtext"]]:
                assert text[0].isupper() and text[-1] in ".?" and "_" not in text
            lines += [f"{i + 1} {text}" for i, text in enumerate(ep["texts"])]
            ids = " ".join(str(i + 1) for i in ep["support"])
            lines.append(f"{len(ep['texts']) + 1} {ep['qtext']} \t{','.join(ep['oracle'])}\t{ids}")
            expected.append(ep)
    path = tmp_path / "generated.txt"
    path.write_text("\n".join(lines) + "\n")
    read = read_babi_file(path)
    assert len(read) == len(expected)
    for (facts, q, text, answer, unordered, support, _), ep in zip(read, expected):
        assert [f[:3] for f in facts] == ep["facts"] and [f[3] for f in facts] == ep["texts"]
        assert q == ep["question"] and text == ep["qtext"] and list(answer) == ep["oracle"]
        assert support == ep["support"] and unordered == (ep["question"][1] == "holding")


# ---------------------------------------------------------------- reading real bAbI files
BABI = (  # stories in the format of the bAbI v1.2 files (tasks 1, 2, 8 and 19), the second one verbatim
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Daniel went back to the hallway.\n"
    "5 Sandra moved to the garden.\n"
    "6 Where is Daniel? \thallway\t4\n"
    "1 Mary got the milk there.\n"
    "2 John moved to the bedroom.\n"
    "3 Sandra went back to the kitchen.\n"
    "4 Mary travelled to the hallway.\n"
    "5 Where is the milk? \thallway\t1 4\n"
    "6 John got the football there.\n"
    "7 John went to the hallway.\n"
    "8 Where is the football? \thallway\t6 7\n"
    "9 John put down the football.\n"
    "10 Mary went to the garden.\n"
    "11 Where is the football? \thallway\t9 7\n"
    "1 Fred picked up the football there.\n"
    "2 Fred took the apple there.\n"
    "3 What is Fred carrying? \tfootball,apple\t1 2\n"
    "1 The office is east of the hallway.\n"
    "2 The kitchen is north of the office.\n"
    "3 The office is west of the garden.\n"
    "4 How do you go from the kitchen to the garden? \ts,e\t2 3\n"
)


def read_all(path):
    """Every episode of the file, by its question's line number (resets draw them at random)."""
    env = gym.make(ID, data_path=path)
    episodes = {}
    for seed in range(200):
        ep = play(env, seed)
        assert ep["success"]
        episodes[ep["info"]["line"]] = ep
    return env, episodes


def test_a_babi_file_is_read_and_answered(tmp_path):
    path = tmp_path / "qa_mixed.txt"
    path.write_text(BABI)
    env, episodes = read_all(str(path))
    base = gym.make(ID).unwrapped.vocab
    vocab = env.unwrapped.vocab
    assert vocab[: len(base)] == base and vocab[len(base):] == ("fred",)  # new words appended
    assert sorted(episodes) == [3, 6, 11, 14, 17, 20, 24]  # every question is an episode
    mary = episodes[3]
    assert mary["facts"] == [("mary", "go", "bathroom"), ("john", "go", "hallway")]
    assert mary["question"] == ("mary", "is_in", "?") and mary["oracle"] == ["bathroom"] and mary["support"] == (0,)
    daniel = episodes[6]  # earlier questions are not reading facts; supporting ids are re-indexed
    assert len(daniel["facts"]) == 4 and daniel["support"] == (2,)
    milk = episodes[11]
    assert milk["facts"][0] == ("mary", "get", "milk") and milk["support"] == (0, 3)
    dropped = episodes[17]
    assert dropped["facts"][6] == ("john", "drop", "football") and dropped["support"] == (5, 6)
    for ep in (milk, episodes[14], dropped):  # the file's answers agree with the replay checker
        assert world_answer(2, ep["facts"], ep["question"]) == ep["oracle"]
        assert world_answer(2, [ep["facts"][i] for i in ep["support"]], ep["question"]) == ep["oracle"]
    fred = episodes[20]
    assert fred["question"] == ("fred", "holding", "?") and fred["oracle"] == ["football", "apple"]
    path_q = episodes[24]
    assert path_q["question"] == ("kitchen", "garden", "?") and path_q["oracle"] == ["s", "e"]
    assert answer_19(path_q["facts"], path_q["question"]) == ["s", "e"]


def test_list_answers_from_a_file_are_unordered_but_paths_are_not(tmp_path):
    path = tmp_path / "qa.txt"
    path.write_text(BABI)
    env, episodes = read_all(path)
    seeds = {}
    for seed in range(100):
        seeds.setdefault(play(env, seed)["info"]["line"], seed)
    assert play(env, seeds[20], answers=["apple", "football"])["success"]
    assert not play(env, seeds[24], answers=["e", "s"])["success"]


@pytest.mark.parametrize("line, why", [
    ("3 Mary and John went to the kitchen.", "statement"),
    ("3 Where is Mary?\tkitchen", "question line"),
    ("3 Where is Mary?\tkitchen\t7", "supporting id"),
    ("x Mary moved to the kitchen.", "line number"),
])
def test_unreadable_babi_lines_name_the_file_and_line(tmp_path, line, why):
    path = tmp_path / "bad.txt"
    path.write_text("1 Mary moved to the bathroom.\n2 John went to the hallway.\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"bad\.txt, line 3: .*{why}"):
        gym.make(ID, data_path=str(path))


def test_a_missing_babi_file_names_the_setting(tmp_path):
    for path in (tmp_path / "qa2_train.txt", tmp_path):  # not there; a folder
        with pytest.raises(FileNotFoundError, match=rf"data_path='{path}' is not a file; allowed: a bAbI-format"):
            gym.make(ID, data_path=str(path))
