"""Every numeric setting with a valid range is checked when its object is built (issue 8, item 4).

tests/test_configs.py composes and instantiates every env x agent option with its defaults. This file walks
every option of configs/cogarch/*/, configs/agent/ and configs/env/, finds its numeric settings (the option's
numeric YAML keys and the numeric keyword arguments of the class it builds: any of them can be set from a
config), and for each one either

- builds the option with out-of-range values (below, above, NaN, a fraction for an int where it matters) and
  expects a ValueError whose message names the key and says what is allowed, or
- lists it in ``FREE`` with the reason it has no range to check (a seed torch accepts whole, an index).

A numeric setting in neither table fails ``test_every_numeric_setting_is_classified``, so a new one cannot
slip in unchecked. Settings whose constructor does not validate them, in files this change could not edit,
are ``xfail(strict=True)``: they fail loudly (XPASS) once the constructor checks them.
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import get_method, get_object, instantiate
from omegaconf import OmegaConf

import environments  # noqa: F401
from environments.story_qa import StoryQAEnv

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DIM = 16
NAN, INF = math.nan, math.inf

# (option, key) -> out-of-range values. ``option`` is the config path without .yaml.
BAD = {
    # cogarch parts (dim = 16 here)
    **{(f"cogarch/bottleneck/{o}", k): v for o in ("k4", "all") for k, v in {
        "dim": [0, -1], "k": [0, -2], "conscious_dim": [0, DIM + 1], "temperature": [0.0, -1.0, NAN]}.items()},
    **{("cogarch/episodic/em_llm", k): v for k, v in {
        "dim": [0], "capacity": [31],  # < 2 * max_event_len (16 in the YAML)
        "window": [1, 0], "gamma": [-1.0, INF, NAN], "top_k_events": [0, 10**6], "neighbours": [-1],
        "min_event_len": [0, 17], "max_event_len": [0], "max_events": [1, 0]}.items()},
    **{("cogarch/long_term/outer_product", k): v for k, v in {
        "dim": [0], "decay": [-0.1, 1.0, NAN], "capacity": [0, -5, NAN], "rate": [0.0, -1.0, NAN]}.items()},
    **{("cogarch/long_term/triple", k): v for k, v in {
        "dim": [0], "key_dim": [0, -1], "decay": [-0.1, 1.0, NAN], "capacity": [0, -5, NAN],
        "min_match": [-0.1, 1.0, NAN]}.items()},
    **{("cogarch/long_term/spreading", k): v for k, v in {
        "dim": [0], "capacity": [0, -5, NAN], "hops": [0, 2.5], "decay": [0.0, 1.0, NAN]}.items()},
    **{("cogarch/relational/relation_network", k): v for k, v in {
        "dim": [0], "hidden": [0, 2.5], "capacity": [0, -5, NAN]}.items()},
    **{("cogarch/long_term/neural", k): v for k, v in {
        "dim": [0], "hidden": [0], "depth": [0], "chunk_size": [0], "lr": [-0.1, INF, NAN],
        "momentum": [-0.1, 1.5, NAN], "decay": [-0.1, 1.5, NAN], "max_norm": [0.0, -1.0, NAN]}.items()},
    **{("cogarch/working/slots", k): v for k, v in {
        "dim": [0], "slots": [0], "top_k": [0, 9], "temperature": [0.0, NAN], "usage_penalty": [0.0, NAN],
        "match_threshold": [-0.1, 1.0, NAN]}.items()},
    **{("cogarch/language/smollm2", k): v for k, v in {
        "dim": [0], "cache_size": [-1], "token_budget": [0], "prune": [0]}.items()},
    # agents
    **{("agent/workspace", k): v for k, v in {"dim": [0, -1], "cycles_per_step": [0], "answer_cycles": [0, -2], "bptt_steps": [0],
                                              "decode_loss": [-1.0, NAN, INF]}.items()},
    **{("agent/transformer", k): v for k, v in {
        "dim": [0, 6],  # 6: not a multiple of heads=4
        "layers": [0], "heads": [0, -1], "max_context": [0], "target_parameters": [0, -1]}.items()},
    **{("agent/llm", k): v for k, v in {"max_context_tokens": [15, 0], "max_context_lines": [0]}.items()},
    ("agent/random", "seed"): [-1],
    # envs (tests/test_fuzz.py fuzzes these ranges; here each key is checked once from its YAML)
    **{("env/graph_search", k): v for k, v in {
        "num_vertices": [2, 10_001, NAN, 20.5], "max_lookahead": [0, 10, NAN], "num_paths": [0, 20],
        "max_walk_steps": [1, 10**6 + 1]}.items()},
    **{("env/graph_trace", k): v for k, v in {
        "size": [1, 12, NAN], "walk_length": [1, 100_001, 64.5], "warmup": [-1, 64, NAN]}.items()},
    **{("env/story_qa", k): v for k, v in {"task": [0, 5, 20], "story_length": [0, 101, 3.5, NAN]}.items()},
    **{("env/passkey", k): v for k, v in {
        "key_len": [0, 17], "context_tokens": [64 * 6 - 1, 10**12 + 1], "chunk_tokens": [0, 4097],
        "depth": [-0.1, 1.1, NAN]}.items()},
    **{("env/scene_graph_qa", k): v for k, v in {
        "num_objects": [2, 21], "num_relations": [1, 15], "max_hops": [0, 4], "hops": [0, 4],
        "p_verify": [-0.1, 1.1, NAN]}.items()},
}
# Numeric settings with no range to check, and why.
FREE = {
    ("agent/workspace", "seed"): "any integer torch.manual_seed accepts",
    ("agent/transformer", "seed"): "any integer torch.manual_seed accepts",
    ("agent/llm", "seed"): "unused by the LLM agent (it decodes greedily)",
    ("agent/oracle", "seed"): "unused by the oracle",
    ("cogarch/language/smollm2", "layer"): "an index into the LM's hidden states; negative counts from the end",
}
# Out-of-range values the constructor accepts today, in files outside this change (issue 8, item 4).
UNCHECKED: dict[tuple[str, str, str], str] = {}  # none left: every listed setting is checked
THIRD_PARTY = {"env/gym"}  # gymnasium.make: its kwargs belong to whichever env the id names


def options() -> list[str]:
    paths = [*sorted(CONFIGS.glob("cogarch/*/*.yaml")), *sorted(CONFIGS.glob("agent/*.yaml")),
             *sorted(CONFIGS.glob("env/*.yaml"))]
    return [str(p.relative_to(CONFIGS).with_suffix("")) for p in paths]


def target_of(option: str):
    cfg = OmegaConf.load(CONFIGS / f"{option}.yaml")
    target = cfg.get("_target_")
    if target is None:
        return None
    try:
        return get_object(target)
    except Exception:
        return get_method(target)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_settings(option: str) -> set[str]:
    """The option's numeric YAML keys and its target's keyword arguments annotated or defaulting to a number."""
    cfg = OmegaConf.load(CONFIGS / f"{option}.yaml")
    node = OmegaConf.to_container(OmegaConf.create({"dim": DIM, "node": cfg}), resolve=True)["node"]
    keys = {k for k, v in node.items() if k != "defaults" and is_number(v)}
    target = target_of(option)
    if target is not None:
        fn = target.__init__ if inspect.isclass(target) else target
        for name, p in inspect.signature(fn).parameters.items():
            if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
            if is_number(p.default) or re.search(r"\b(int|float)\b", str(annotation)):
                keys.add(name)
    return keys


def tiny_language_model():
    from test_language import tiny_model  # the 2-layer random GPT-2 of tests/test_language.py (offline)

    return tiny_model()


def build(option: str, **override):
    """Instantiate one option with ``override`` applied, the way the CLI would (agents bound to StoryQA)."""
    group = option.split("/")[0]
    if group == "agent":
        name = option.split("/")[1]
        sets = [f"++agent.{k}={'null' if v is None else v}" for k, v in override.items()]
        with initialize_config_module(config_module="configs", version_base="1.3"):
            cfg = compose(config_name="run", overrides=[f"agent={name}", "env=story_qa", f"dim={DIM}", *sets])
        env = StoryQAEnv()
        extra = dict(action_space=env.action_space, observation_space=env.observation_space, vocab=env.vocab)
        if name != "pretrained":
            extra["seed"] = cfg.agent.get("seed", 0)
        return instantiate(cfg.agent, **extra)
    node = OmegaConf.create({"dim": DIM, "node": OmegaConf.load(CONFIGS / f"{option}.yaml")})
    for k, v in override.items():
        node.node[k] = v
    kwargs = {}
    if option == "cogarch/language/smollm2":
        model, tokenizer = tiny_language_model()
        kwargs = dict(model=model, tokenizer=tokenizer)
    return instantiate(node.node, **kwargs)


def cases():
    for (option, key), values in sorted(BAD.items()):
        for value in values:
            reason = UNCHECKED.get((option, key, str(value)))
            marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
            yield pytest.param(option, key, value, marks=marks, id=f"{option}-{key}={value}")


def test_every_numeric_setting_is_classified():
    missing = []
    for option in options():
        if option in THIRD_PARTY:
            continue
        for key in numeric_settings(option):
            if (option, key) not in BAD and (option, key) not in FREE:
                missing.append(f"{option}: {key}")
    assert not missing, f"numeric settings with neither bad values (BAD) nor a reason to be free (FREE): {missing}"
    stale = [k for k in [*BAD, *FREE] if k[0] not in options() or k[1] not in numeric_settings(k[0])]
    assert not stale, f"BAD/FREE name settings that no longer exist: {stale}"


@pytest.mark.parametrize("option", [o for o in options() if o not in THIRD_PARTY and target_of(o) is not None])
def test_each_option_builds_with_its_defaults(option):
    assert build(option) is not None  # so that the errors below come from the values, not from the builder


@pytest.mark.parametrize("option, key, value", list(cases()))
def test_out_of_range_setting_raises_naming_key_and_range(option, key, value):
    try:
        build(option, **{key: value})
    except Exception as err:  # hydra wraps the constructor's error; find the ValueError in the chain
        chain, e = [], err
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__
        errors = [e for e in chain if isinstance(e, ValueError)]
        assert errors, f"{option}: {key}={value!r} raised {type(err).__name__}, not ValueError: {err}"
        message = str(errors[0])
        assert re.search(rf"\b{key}\b", message), f"{option}: the error does not name {key}: {message}"
        assert re.search(r"allowed|must|need|>=|<=|>|<| in \[|in \(|multiple|choose", message), message
        return
    raise AssertionError(f"{option}: {key}={value!r} was accepted")
