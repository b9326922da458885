"""Passkey: the key is streamed where info says, the filler is exact, and memory is O(chunk)."""

import math
import re
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import environments  # noqa: F401  (registers the ids)
from environments.passkey import FILLER

ID = "cogarch/Passkey-v0"
KEY = re.compile(r"The pass key digit (\d+) is (\d)\.")
CONFIGS = [
    {},
    dict(key_len=1, context_tokens=100, chunk_tokens=3),  # chunks shorter than a key sentence
    dict(key_len=16, context_tokens=5000, chunk_tokens=100, depth=1.0),
    dict(key_len=3, context_tokens=1000, chunk_tokens=64, depth=0.0),  # 1000 = 15 * 64 + 40
    dict(key_len=2, context_tokens=70, chunk_tokens=7),
]


def reading_of(env, seed):
    _, info = env.reset(seed=seed)
    return info, env.unwrapped._episode.reading


@pytest.mark.parametrize("kw", CONFIGS)
def test_streamed_key_facts_equal_the_answer(kw):
    env = gym.make(ID, **kw)
    V = env.unwrapped.vocab
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        first, key_step, key_len = info, info["key_step"], info["key_len"]
        streamed, answers, t = [], [], 0
        while True:
            s, r, o = (V[i] for i in obs["fact"])
            if obs["phase"] == 0:
                if s == "pass_key":
                    assert t == key_step + len(streamed) and r == f"digit{len(streamed) + 1}"
                    assert KEY.findall(obs["text"]) == [(str(len(streamed) + 1), o)]
                    streamed.append(o)
                else:
                    assert KEY.search(obs["text"]) is None
                t += 1
            else:
                j = len(answers) + 1
                assert (s, r, o) == ("pass_key", f"digit{j}", "?")
                assert obs["text"] == f"What is digit {j} of the pass key?"
                assert info["supporting_facts"] == (key_step + j - 1,)
                answers.append(V[info["oracle_action"]])
            obs, _, term, _, info = env.step(info["oracle_action"])
            if term:
                break
        assert info["success"] and len(streamed) == key_len and streamed == answers
        assert t == first["num_steps"] == math.ceil(first["context_tokens"] / first["chunk_tokens"])


@pytest.mark.parametrize("kw", CONFIGS)
def test_chunks_have_chunk_tokens_words_and_the_filler_is_seamless(kw):
    env = gym.make(ID, **kw).unwrapped
    for seed in range(3):
        info, reading = reading_of(env, seed)
        chunk, texts = info["chunk_tokens"], [f.text for f in reading]
        counts = [len(x.split()) for x in texts]
        last = info["context_tokens"] - (len(texts) - 1) * chunk
        want = [chunk] * (len(texts) - 1) + [last]
        for t in range(info["key_step"], info["key_step"] + info["key_len"]):
            want[t] = max(want[t], 7)  # a key sentence is never cut
        assert counts == want
        if chunk >= 7 and last >= 7:
            assert sum(counts) == info["context_tokens"]
        # Without the key sentences, the stream is the classic filler repeated, cut anywhere.
        filler = KEY.sub(" ", " ".join(texts)).split()
        assert filler == [FILLER[i % len(FILLER)] for i in range(len(filler))]


def test_key_sits_between_filler_sentences_and_filler_facts_match_the_text():
    env = gym.make(ID, chunk_tokens=64, context_tokens=4096).unwrapped
    V = env.vocab
    for seed in range(5):
        info, reading = reading_of(env, seed)
        for t, fact in enumerate(reading):
            s, r, o = (V[i] for i in fact.ids)
            if s == "pass_key":
                at = fact.text.index("The pass key")
                assert at == 0 or fact.text[:at].endswith(". ")  # inserted at a sentence boundary
            else:
                assert r == "is" and (s, o) in {("grass", "green"), ("sky", "blue"), ("sun", "yellow")}
                assert f"The {s} is {o}." in fact.text


def test_depth_places_the_key_at_the_start_or_the_end():
    for depth, where in ((0.0, 0), (1.0, None), (0.5, None)):
        env = gym.make(ID, depth=depth, context_tokens=64 * 21)
        for seed in range(3):
            _, info = env.reset(seed=seed)
            span = info["num_steps"] - info["key_len"]
            assert info["key_step"] == round(depth * span) and info["depth"] == info["key_step"] / span
    info, reading = reading_of(gym.make(ID, depth=1.0, key_len=4), 0)
    assert [reading[t].ids[0] for t in range(-4, 0)] == [gym.make(ID).unwrapped.index["pass_key"]] * 4
    # Uniform depth: every possible key position occurs.
    env = gym.make(ID, context_tokens=64 * 8, key_len=5)  # key_step in 0..3
    assert {env.reset(seed=s)[1]["key_step"] for s in range(100)} == {0, 1, 2, 3}


def test_a_million_tokens_is_lazy_and_small():
    env = gym.make(ID, context_tokens=1_000_000)
    obs, info = env.reset(seed=0)
    reading = env.unwrapped._episode.reading
    assert len(reading) == 1_000_000 // 64 == info["num_steps"]
    for t in (0, 1, 7_777, len(reading) - 1, -1, info["key_step"]):
        assert len(reading[t].text.split()) == 64
    # Longer still: 10**12 tokens is just arithmetic.
    huge = gym.make(ID, context_tokens=10**12, depth=0.7).unwrapped
    _, info = huge.reset(seed=0)
    r = huge._episode.reading
    assert len(r) == 10**12 // 64 and len(r[info["key_step"]].text.split()) == 64
    assert huge.vocab[r[info["key_step"]].ids[0]] == "pass_key" and len(r[len(r) // 3].text.split()) == 64

    tracemalloc.start()
    obs, info = env.reset(seed=1)
    ended = 0
    for _ in range(20_000):  # crosses one episode end (15,625 reading + 5 answer steps)
        obs, _, term, _, info = env.step(info["oracle_action"])
        if term:
            ended += 1
            assert info["success"]
            obs, info = env.reset()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ended == 1 and peak < 200_000, peak  # a list of 15,625 Facts alone would take megabytes


def test_random_digits_succeed_about_a_tenth_per_digit():
    env = gym.make(ID, key_len=1, context_tokens=128, chunk_tokens=64)
    digits = [env.unwrapped.index[str(d)] for d in range(10)]
    rng = np.random.default_rng(0)
    wins = 0
    for seed in range(1000):
        obs, info = env.reset(seed=seed)
        while True:
            action = int(rng.choice(digits)) if info["phase"] == 1 else 0
            obs, _, term, _, info = env.step(action)
            if term:
                wins += info["success"]
                break
    assert 60 < wins < 140  # Binomial(1000, 0.1): 100 +- 9.5
    env = gym.make(ID, key_len=3, context_tokens=256, chunk_tokens=64)
    wins = 0
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        while True:
            obs, _, term, _, info = env.step(int(rng.choice(digits)) if info["phase"] else 0)
            if term:
                wins += info["success"]
                break
    assert wins <= 3  # 0.001 per episode


def test_vocab_depends_on_nothing_but_the_fixed_maximum():
    a = gym.make(ID).unwrapped.vocab
    assert a == gym.make(ID, key_len=16, chunk_tokens=7, context_tokens=500).unwrapped.vocab
    assert len(a) == 36 and {str(d) for d in range(10)} | {"pass_key", "digit16"} <= set(a)


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(key_len=17), "key_len"),
        (dict(chunk_tokens=0), "chunk_tokens"),
        (dict(chunk_tokens=4097, context_tokens=10**6), "chunk_tokens"),
        (dict(context_tokens=64 * 5), "context_tokens"),  # no room for filler beside a 5-step key
        (dict(depth=1.5), "depth"),
        (dict(depth="deep"), "depth"),
    ],
)
def test_bad_kwargs_are_refused(kw, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ID, **kw)
