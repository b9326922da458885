"""SortOfClevr-v0: answers follow from the streamed facts; the image draws the same scene."""

import math
import re
import warnings
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import environments  # noqa: F401  (registers the ids)
from environments.sort_of_clevr import CENTRES, COLOURS, RGB

ID = "cogarch/SortOfClevr-v0"
FACT = re.compile(r"The (\w+) object is (?:a (square|circle)|in column (\d)|in row (\d))\.")
QUESTION = {
    re.compile(r"What is the shape of the (\w+) object\?"): "shape",
    re.compile(r"Is the (\w+) object on the left or right\?"): "horizontal",
    re.compile(r"Is the (\w+) object on the top or bottom\?"): "vertical",
    re.compile(r"What is the shape of the object closest to the (\w+) object\?"): "closest_shape",
    re.compile(r"What is the shape of the object furthest from the (\w+) object\?"): "furthest_shape",
    re.compile(r"How many objects have the same shape as the (\w+) object\?"): "same_shape_count",
}


def play(env, seed=None):
    """Read one episode; return the parsed scene, the question's text and ids, and the answer-step info."""
    obs, info = env.reset(seed=seed)
    vocab, scene = env.unwrapped.vocab, {}
    while obs["phase"] == 0:
        m = FACT.fullmatch(obs["text"])
        assert m, obs["text"]
        colour, shape, col, row = m.groups()
        s, r, o = (vocab[i] for i in obs["fact"])
        assert s == colour
        item = scene.setdefault(colour, {})
        if shape:
            assert (r, o) == ("shape", shape)
            item["shape"] = shape
        elif col:
            assert (r, o) == ("column", f"col{col}")
            item["col"] = int(col)
        else:
            assert (r, o) == ("row", f"row{row}")
            item["row"] = int(row)
        obs, _, _, _, info = env.step(0)
    return scene, obs, info


def expected(scene, qtype, colour):
    """Every correct answer symbol, recomputed from the parsed facts with pixel-space distances."""
    me = scene[colour]
    if qtype == "shape":
        return {me["shape"]}
    if qtype == "horizontal":
        return {"left" if me["col"] < 3 else "right"}
    if qtype == "vertical":
        return {"top" if me["row"] < 3 else "bottom"}
    if qtype == "same_shape_count":
        return {str(sum(o["shape"] == me["shape"] for o in scene.values()))}
    centre = {c: (12.5 * (o["row"] + 0.5), 12.5 * (o["col"] + 0.5)) for c, o in scene.items()}
    dist = {c: math.dist(centre[c], centre[colour]) for c in scene if c != colour}
    best = (min if qtype == "closest_shape" else max)(dist.values())
    return {scene[c]["shape"] for c, d in dist.items() if math.isclose(d, best)}


def test_answers_follow_from_the_facts():
    env = gym.make(ID)
    seen, ties = Counter(), 0
    for seed in range(600):
        scene, obs, info = play(env, seed)
        assert sorted(scene) == sorted(COLOURS) and all(len(o) == 3 for o in scene.values())
        cells = {(o["row"], o["col"]) for o in scene.values()}
        assert len(cells) == 6, "objects must sit in distinct cells"
        (qtype, colour), = [(t, m.group(1)) for p, t in QUESTION.items() if (m := p.fullmatch(obs["text"]))]
        vocab = env.unwrapped.vocab
        assert tuple(vocab[i] for i in obs["fact"]) == (colour, qtype, "?")
        want = expected(scene, qtype, colour)
        assert {vocab[a] for a in info["accepted_actions"]} == want
        assert vocab[info["oracle_action"]] in want
        ties += len(want) > 1
        seen[qtype] += 1
        _, reward, terminated, _, end = env.step(info["oracle_action"])
        assert terminated and reward == 1.0 and end["success"]
    assert len(seen) == 6 and min(seen.values()) > 60, seen
    assert ties > 0, "closest/furthest ties between shapes should occur and be accepted"


@pytest.mark.parametrize(
    "family, types",
    [
        ("relational", {"closest_shape", "furthest_shape", "same_shape_count"}),
        ("non_relational", {"shape", "horizontal", "vertical"}),
        *((kind, {kind}) for kind in ("shape", "vertical", "closest_shape", "same_shape_count")),
    ],
)
def test_question_family(family, types):
    env = gym.make(ID, questions=family)
    got = set()
    for seed in range(60):
        _, info = env.reset(seed=seed)
        got.add(info["question_type"])
        assert info["relational"] == (family in ("relational", "closest_shape", "same_shape_count"))
    assert got == types


def test_image_draws_the_scene():
    env = gym.make(ID, obs_mode="image")
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        image = obs["image"]
        assert image.shape == (75, 75, 3) and image.dtype == np.uint8
        white = np.array([255, 255, 255], dtype=np.uint8)
        for colour, shape, row, col in info["objects"]:
            y, x = CENTRES[row], CENTRES[col]
            rgb = RGB[COLOURS.index(colour)]
            assert (image[y, x] == rgb).all()
            corners = [image[y + dy, x + dx] for dy in (-5, 4) for dx in (-5, 4)]
            for corner in corners:
                assert (corner == (rgb if shape == "square" else white)).all(), (colour, shape)
        painted = (image != 255).any(axis=2).sum()
        assert 6 * 60 < painted <= 6 * 100  # six 10x10 objects at most, circles cover ~80 px
        # The same picture at every step, as a fresh array each time.
        obs2, *_ = env.step(0)
        assert np.array_equal(obs2["image"], image) and obs2["image"] is not image


def test_check_env_image_mode_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ID, obs_mode="image", questions="relational").unwrapped)


def test_facts_mode_has_no_image():
    obs, _ = gym.make(ID).reset(seed=0)
    assert "image" not in obs


@pytest.mark.parametrize(
    "kwargs, name", [({"questions": "counting"}, "questions"), ({"obs_mode": "pixels"}, "obs_mode")]
)
def test_bad_kwargs_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ID, **kwargs)
