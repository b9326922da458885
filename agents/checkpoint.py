"""Build a trained agent from a run folder of ``cogarch train``: its config.yaml and checkpoint/model.safetensors.

A checkpoint is data, never code: weights are safetensors (no pickle), and the saved config is instantiated
only if every ``_target_`` in it names something under an allowed package prefix (:data:`ALLOWED_TARGETS`);
anything else (``os.system``, ``builtins.eval``, ...) is refused with an error naming it.

The shipped checkpoints live in ``agents/pretrained/<name>/`` (package data): ``cogarch run agent=pretrained``
plays the StoryQA one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ALLOWED_TARGETS = ("cogarch.", "agents.", "environments.", "torch.nn.", "torch.optim.")
PRETRAINED = Path(__file__).resolve().parent / "pretrained"


def check_targets(node: Any, where: str) -> None:
    """Raise ValueError if any ``_target_`` in a (nested) config is outside :data:`ALLOWED_TARGETS`."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not (isinstance(target, str) and target.startswith(ALLOWED_TARGETS)):
            raise ValueError(f"{where}: refusing to instantiate _target_={target!r}; "
                             f"allowed prefixes: {', '.join(ALLOWED_TARGETS)}")
        for value in node.values():
            check_targets(value, where)
    elif isinstance(node, list):
        for value in node:
            check_targets(value, where)


def resolve_run(path: str | Path | None) -> Path:
    """A run folder from a path, or a shipped checkpoint's name (``None`` = the default, ``story_qa``)."""
    if path is None:
        path = "story_qa"
    p = Path(path)
    if not p.exists() and (PRETRAINED / str(path)).is_dir():
        p = PRETRAINED / str(path)
    if not (p / "config.yaml").is_file():
        shipped = sorted(d.name for d in PRETRAINED.iterdir() if d.is_dir()) if PRETRAINED.is_dir() else []
        raise FileNotFoundError(f"{p} is not a `cogarch train` run folder (no config.yaml); "
                                f"give a run folder or one of the shipped checkpoints: {shipped}")
    return p


def load_agent(path: str | Path | None = None, vocab=None, compile: bool = False, **cli_kwargs: Any):
    """The agent of a run folder with its trained weights, bound to an env with ``vocab`` (the CLI passes it).

    ``compile=True`` makes a workspace agent act through the compiled workspace cycle (WorkspaceAgent's
    ``compile``; how it acts, not what it learned). Extra keyword arguments from the CLI (action_space, seed,
    ...) are accepted and unused: the agent is exactly the one trained."""
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r} is not allowed; allowed: true or false")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from agents.learned import WEIGHTS

    if vocab is None and cli_kwargs.get("action_space") is not None:
        raise ValueError("a trained agent needs a fact-stream env (one with a vocab, e.g. env=story_qa); this env has none")
    run = resolve_run(path)
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    except Exception as err:  # yaml errors, interpolation errors
        raise ValueError(f"{run / 'config.yaml'} is not a readable config: {err}") from err
    if not isinstance(cfg, dict) or not isinstance(cfg.get("agent"), dict):
        raise ValueError(f"{run / 'config.yaml'} has no agent section")
    check_targets(cfg["agent"], str(run / "config.yaml"))
    weights = run / "checkpoint" / WEIGHTS
    agent_vocab = _saved_vocab(weights)
    agent_cfg = {**cfg["agent"], "checkpoint": None}
    agent = instantiate(agent_cfg, vocab=agent_vocab, agent_vocab=agent_vocab)
    agent.load(weights)
    if compile:
        from agents.workspace import WorkspaceAgent

        if not isinstance(agent, WorkspaceAgent):
            raise ValueError(f"compile=true applies to workspace agents; {run} holds a {type(agent).__name__}")
        agent.compile = True
    if vocab is not None:
        agent.bind_env(vocab)
    agent.run_dir = run
    return agent


def _saved_vocab(weights: Path) -> tuple[str, ...]:
    from cogarch.trace import read_safetensors

    _, meta = read_safetensors(weights, "checkpoint", tensors=False)
    try:
        return tuple(json.loads(meta["vocab"]))
    except (KeyError, ValueError) as err:
        raise ValueError(f"checkpoint {weights} has no vocabulary in its metadata: {err}") from err
