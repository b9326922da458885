"""Every config option composes and instantiates; env YAMLs only name real constructor kwargs."""

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

import environments  # noqa: F401

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LEARNED = ("workspace", "transformer", "pretrained")  # agents that need the env's vocabulary


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_every_registered_env_has_a_config():
    targets = {OmegaConf.load(p)["_target_"] for p in (CONFIGS / "env").glob("*.yaml")}
    for env_id in environments.ENV_IDS:
        import gymnasium as gym

        assert gym.spec(env_id).entry_point.replace(":", ".") in targets


@pytest.mark.parametrize("env", options("env"))
@pytest.mark.parametrize("agent", options("agent"))
def test_compose_and_instantiate(env, agent):
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="run", overrides=[f"env={env}", f"agent={agent}"])
    e = instantiate(cfg.env)
    if agent in LEARNED and getattr(e.unwrapped, "vocab", None) is None:  # they need a fact-stream env
        with pytest.raises(InstantiationException, match="fact-stream env"):
            instantiate(cfg.agent, action_space=e.action_space, vocab=None)
        return
    if agent == "pretrained" and env != "story_qa":  # the shipped checkpoint knows StoryQA's symbols only
        with pytest.raises(InstantiationException, match="does not know"):
            instantiate(cfg.agent, vocab=e.unwrapped.vocab)
        return
    a = instantiate(cfg.agent, action_space=e.action_space, observation_space=e.observation_space, seed=cfg.seed,
                    vocab=getattr(e.unwrapped, "vocab", None))
    obs, info = e.reset(seed=0)
    state = a.initial_state(seed=0)
    if agent != "oracle" or "oracle_action" in info:
        action, state, records = a.act(obs, state, info)
        assert e.action_space.contains(action)


@pytest.mark.parametrize("env", [o for o in options("env") if o != "gym"])
def test_env_yaml_keys_are_constructor_kwargs_with_their_defaults(env):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "env" / f"{env}.yaml"))
    params = inspect.signature(get_class(cfg.pop("_target_")).__init__).parameters
    for key, value in cfg.items():
        assert key in params, f"{env}.yaml: {key} is not a constructor argument"
        assert params[key].default == value, f"{env}.yaml: {key}={value!r} differs from the default {params[key].default!r}"
