"""SceneGraphQA-v0: every hop's answer follows, uniquely, from the streamed triples."""

import re
import warnings
from collections import Counter

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import environments  # noqa: F401  (registers the ids)
from environments.scene_graph_qa import CATEGORIES, FAMILIES, PHRASE, RELATIONS, VALUE_FAMILY, _group

ID = "cogarch/SceneGraphQA-v0"
REL_FACT = re.compile(r"The (\w+) is ([\w ]+) the (\w+)\.")
ATTR_FACT = re.compile(r"The (\w+) is (\w+)\.")
PHRASE_TO_REL = {p: r for r, p in PHRASE.items()}


def play(env, seed):
    """Read an episode, parsing each sentence back into a triple; then answer every hop with a checker
    that follows the chain through those triples alone. Returns what the test needs to inspect."""
    obs, info = env.reset(seed=seed)
    start = info
    vocab = env.unwrapped.vocab
    facts = []
    while obs["phase"] == 0:
        triple = tuple(vocab[i] for i in obs["fact"])
        if m := REL_FACT.fullmatch(obs["text"]):
            assert triple == (m[1], PHRASE_TO_REL[m[2]], m[3]), obs["text"]
        else:
            m = ATTR_FACT.fullmatch(obs["text"])
            assert m and triple == (m[1], VALUE_FAMILY[m[2]], m[2]), obs["text"]
        facts.append(triple)
        obs, _, _, _, info = env.step(0)
    hops, previous = [], None
    while True:
        raw = s, r, o = tuple(vocab[i] for i in obs["fact"])
        assert (s, o).count("it") == (previous is not None), "hops after the first refer to 'it'"
        s, o = (previous if x == "it" else x for x in (s, o))
        if o == "?":
            matches = [f for f in facts if f[:2] == (s, r)]
            answer = matches[0][2] if len(matches) == 1 else None
        elif s == "?":
            matches = [f for f in facts if f[1:] == (r, o)]
            answer = matches[0][0] if len(matches) == 1 else None
        else:  # a yes/no check of the statement itself, closed world
            matches = [f for f in facts if f == (s, r, o)]
            answer = "yes" if matches else "no"
        assert answer is not None, f"hop ({s}, {r}, {o}) has {len(matches)} answers"
        assert {vocab[a] for a in info["accepted_actions"]} == {answer}
        assert vocab[info["oracle_action"]] == answer
        support = info["supporting_facts"]
        hops.append(dict(raw=raw, fact=(s, r, o), text=obs["text"], answer=answer, support=support))
        previous = answer
        obs, reward, terminated, _, info = env.step(vocab.index(answer))
        assert reward == 1.0
        if terminated:
            assert info["success"]
            return start, facts, hops


def test_every_hop_follows_uniquely_from_the_facts():
    env = gym.make(ID, p_verify=0.3)
    kinds = Counter()
    for seed in range(300):
        info, facts, hops = play(env, seed)
        assert len(hops) == info["hops"]
        first = hops[0]["fact"]
        anchor = first[2] if first[0] == "?" else first[0]
        nodes = [anchor] + [h["answer"] for h in hops if h["answer"] in CATEGORIES]
        assert len(set(nodes)) == len(nodes), "the chain revisits an object"
        # info["chain"] names each hop's fact; a yes/no hop names the statement checked.
        for hop, named in zip(hops, info["chain"]):
            s, r, o = hop["fact"]
            assert [hop["answer"] if x == "?" else x for x in (s, r, o)] == named
        for h, hop in enumerate(hops):  # supporting: the chain's facts so far
            wanted = info["chain"][: h + 1]
            got = [list(facts[i]) for i in hop["support"]]
            for s, r, o in wanted:
                if r in FAMILIES:  # the value stated for that family, whether or not it is o
                    assert any(g[:2] == [s, r] for g in got)
                elif (s, r, o) in facts:  # a false relation has no fact to support it
                    assert [s, r, o] in got
        kinds[info["final"], info["verify"], hops[-1]["answer"] if info["verify"] else "-"] += 1
    assert all(kinds[f, False, "-"] > 50 for f in ("attribute", "relation")), kinds
    assert all(kinds[f, True, a] > 5 for f in ("attribute", "relation") for a in ("yes", "no")), kinds


def test_question_text_composes_the_chain_without_giving_answers_away():
    env = gym.make(ID)
    for seed in range(200):
        info, _, hops = play(env, seed)
        anchor = hops[0]["fact"][0] if hops[0]["fact"][0] != "?" else hops[0]["fact"][2]
        text = hops[0]["text"]
        assert f"the {anchor}" in text and text[0].isupper() and text.endswith("?")
        for hop in hops:  # every relation on the chain is spelled out in the first hop's text
            if hop["raw"][1] in PHRASE:
                assert PHRASE[hop["raw"][1]] in text
        for hop in hops[:-1]:  # intermediate answers stay hidden: "the thing that ..."
            assert not re.search(rf"\b{hop['answer']}\b", text), text
        for hop in hops[1:]:
            assert " it" in hop["text"] and "thing" not in hop["text"] and "it" in hop["raw"]


def test_hops_are_uniform_and_fixable():
    env = gym.make(ID)
    counts = Counter(env.reset(seed=seed)[1]["hops"] for seed in range(600))
    assert set(counts) == {1, 2, 3} and min(counts.values()) > 150, counts
    for k in (1, 2, 3):
        env = gym.make(ID, hops=k)
        assert all(env.reset(seed=seed)[1]["hops"] == k for seed in range(30))
    env = gym.make(ID, max_hops=1)
    assert all(env.reset(seed=seed)[1]["hops"] == 1 for seed in range(30))


def test_p_verify_sets_the_share_of_yes_no_hops():
    for p, low, high in ((0.0, 0, 0), (0.2, 0.12, 0.28), (1.0, 1, 1)):
        env = gym.make(ID, p_verify=p)
        share = sum(env.reset(seed=seed)[1]["verify"] for seed in range(400)) / 400
        assert low <= share <= high, (p, share)


@pytest.mark.parametrize("n, m", [(3, 2), (8, 8), (20, 38)])
def test_scenes_are_plausible(n, m):
    env = gym.make(ID, num_objects=n, num_relations=m)
    for seed in range(50):
        _, facts, _ = play(env, seed)
        objects = {f[0] for f in facts if f[1] in FAMILIES}
        assert len(objects) == n, "every object has an attribute; categories are distinct"
        relations = [f for f in facts if f[1] in RELATIONS]
        assert len(relations) == m
        assert len({frozenset((s, o)) for s, _, o in relations}) == m, "one relation per pair"
        for s, r, o in relations:
            assert any(s in _group(a) and o in _group(b) for a, b in RELATIONS[r][1]), (s, r, o)
        for c in objects:
            families = [f for s, f, v in facts if s == c and f in FAMILIES]
            assert 1 <= len(families) <= 2 and len(set(families)) == len(families)
            values = CATEGORIES[c][1].split()
            assert all(v in values for s, _, v in facts if s == c and _ in FAMILIES)


def test_check_env_non_default_kwargs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ID, num_objects=4, num_relations=3, hops=2, p_verify=1.0).unwrapped)
        check_env(gym.make(ID, num_objects=20, num_relations=30, max_hops=2).unwrapped)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_objects": 2}, "num_objects"),
        ({"num_objects": 21}, "num_objects"),
        ({"max_hops": 4}, "max_hops"),
        ({"hops": 3, "max_hops": 2}, "hops"),
        ({"num_objects": 3, "num_relations": 3}, "num_relations"),
        ({"num_relations": 1, "max_hops": 3}, "num_relations"),
        ({"p_verify": 1.5}, "p_verify"),
    ],
)
def test_bad_kwargs_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ID, **kwargs)
