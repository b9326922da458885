"""The `cogarch` command: the composition root (the only module that wires envs, agents and configs).

    cogarch run env=story_qa agent=oracle episodes=200 seed=0
    cogarch run env=graph_search env.num_vertices=50 agent=random
    cogarch run env=gym env.id=CartPole-v1 agent=random
    cogarch run -m env=story_qa,passkey agent=random,oracle      # a hydra sweep
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMMANDS = ("run",)
USAGE = f"usage: cogarch {{{','.join(COMMANDS)}}} [hydra overrides...]   (try: cogarch run --help)"


def _run(cfg) -> dict:
    import hydra.utils
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    import environments  # noqa: F401  (registers the cogarch/* ids for env=gym)
    from cogarch.runner import format_table, run_episodes

    if not isinstance(cfg.episodes, int) or cfg.episodes < 1:
        raise ValueError(f"episodes={cfg.episodes!r} must be an integer >= 1")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed={cfg.seed!r} must be an integer >= 0")
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    env = hydra.utils.instantiate(cfg.env)
    # Agents see the env's spaces and, for fact-stream envs, its vocabulary (the names of the symbols).
    agent = hydra.utils.instantiate(
        cfg.agent, action_space=env.action_space, observation_space=env.observation_space, seed=cfg.seed,
        vocab=getattr(env.unwrapped, "vocab", None),
    )
    summary = run_episodes(
        env, agent, cfg.episodes, cfg.seed, out, trace=cfg.trace, progress=cfg.progress, max_steps=cfg.max_steps
    )
    env.close()
    env_name = hc.runtime.choices.get("env")
    if env_name == "gym":
        env_name = f"gym:{cfg.env.id}"
    row = {"env": env_name, "agent": hc.runtime.choices.get("agent"), **summary}
    (out / "summary.json").write_text(json.dumps(row, indent=2) + "\n")
    print(format_table([row]))
    print(f"run directory: {out}")
    return row


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    import hydra

    command, rest = argv[0], argv[1:]
    task = hydra.main(config_path="pkg://configs", config_name="run", version_base="1.3")({"run": _run}[command])
    sys.argv = [f"cogarch {command}", *rest]
    task()


if __name__ == "__main__":
    main()
