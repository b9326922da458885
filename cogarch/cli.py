"""The `cogarch` command: the composition root (the only module that wires envs, agents and configs).

    cogarch run env=story_qa agent=oracle episodes=200 seed=0
    cogarch run env=graph_search env.num_vertices=50 agent=random
    cogarch run env=gym env.id=CartPole-v1 agent=random
    cogarch run -m env=story_qa,passkey agent=random,oracle      # a hydra sweep
    cogarch train env=story_qa agent=workspace train.updates=2000 # imitation training, checkpoints
    cogarch eval env=story_qa 'runs=[runs/train/<folder>]' baselines=[random,oracle]
    cogarch experiment experiment=story_qa                         # train every agent, then eval them all
    cogarch view runs/<run folder>                                 # a static HTML report of a run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMMANDS = ("run", "train", "eval", "experiment", "view")
USAGE = f"usage: cogarch {{{','.join(COMMANDS)}}} [hydra overrides...]   (try: cogarch run --help)"


def _run(cfg) -> dict:
    import hydra.utils
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    import environments  # noqa: F401  (registers the cogarch/* ids for env=gym)
    from cogarch.runner import format_table, run_episodes

    _check_seed(cfg)
    _check_flags(cfg, "trace", "snapshots", "progress", "resume")
    _library_progress(cfg.progress)
    if not isinstance(cfg.episodes, int) or cfg.episodes < 1:
        raise ValueError(f"episodes={cfg.episodes!r} must be an integer >= 1")
    resume = bool(cfg.get("resume", False))
    if resume:
        _check_resumable(cfg, RESUME_KEYS, "resume=true")
    else:
        _check_fresh(cfg)
    out = _run_dir(cfg)
    hc = HydraConfig.get()

    env = hydra.utils.instantiate(cfg.env)
    if not cfg.agent._target_.startswith("agents.baselines."):  # seed the initial weights of learned agents
        import torch

        torch.manual_seed(cfg.seed)
    # Agents see the env's spaces and, for fact-stream envs, its vocabulary (the names of the symbols).
    agent = hydra.utils.instantiate(
        cfg.agent, action_space=env.action_space, observation_space=env.observation_space, seed=cfg.seed,
        vocab=getattr(env.unwrapped, "vocab", None),
    )
    _check_trained_dim(cfg, agent, hc.overrides.task)
    num_envs = _num_envs(cfg)
    if num_envs > 1:  # N envs stepped together, the agent's cycles batched over them
        from cogarch.vector import run_episodes_vectorized

        summary = run_episodes_vectorized(lambda: hydra.utils.instantiate(cfg.env), agent, cfg.episodes, cfg.seed,
                                          num_envs, out, trace=cfg.trace, progress=cfg.progress,
                                          max_steps=cfg.max_steps, snapshots=bool(cfg.get("snapshots", False)),
                                          resume=resume)
    else:
        summary = run_episodes(
            env, agent, cfg.episodes, cfg.seed, out, trace=cfg.trace, progress=cfg.progress, max_steps=cfg.max_steps,
            snapshots=bool(cfg.get("snapshots", False)), resume=resume,
        )
    env.close()
    env_name = hc.runtime.choices.get("env")
    if env_name == "gym":
        env_name = f"gym:{cfg.env.id}"
    row = {"env": env_name, "agent": hc.runtime.choices.get("agent"), **summary}
    (out / "summary.json").write_text(json.dumps(row, indent=2) + "\n")
    print(format_table([row]))
    print(f"run directory: {out}" + (f" (trace: {out / 'trace.jsonl'})" if cfg.trace else ""))
    return row


def _num_envs(cfg) -> int:
    num_envs = cfg.get("num_envs", 1)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is out of range; allowed: integer >= 1")
    return num_envs


# What must not change between a run and its resumption (the episodes it already wrote depend on them)
RESUME_KEYS = ("env", "agent", "seed", "dim", "max_steps")
# What a training run resumed from its checkpoint must keep (the checkpoint's shapes and vocabulary depend on them)
TRAIN_RESUME_KEYS = ("env", "agent", "dim")


def _check_resumable(cfg, keys: tuple[str, ...], flag: str, folder: Path | None = None,
                     checkpointed: bool = False) -> None:
    """``flag`` continues the run in ``folder`` (default: hydra's run folder): refuse, before anything is written
    there, if that run had another configuration. With ``checkpointed`` (training) only a run that saved a
    checkpoint is there to continue."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    folder = Path(HydraConfig.get().runtime.output_dir) if folder is None else folder
    saved = folder / "config.yaml"
    if not saved.is_file():
        return  # nothing to resume: a fresh run
    if checkpointed and not any((folder / f"checkpoint{end}" / "state.json").is_file() for end in ("", ".tmp", ".old")):
        return  # a training run that never checkpointed (e.g. one refused before training): nothing to keep
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    new = OmegaConf.to_container(cfg, resolve=True)
    for key in keys:
        if old.get(key) != new.get(key):
            where, was, now = _first_difference(key, old.get(key), new.get(key))
            raise ValueError(f"{flag}: the run in {saved.parent} was made with {where}={was!r}, this "
                             f"command has {where}={now!r}; the same {', '.join(keys)} are needed "
                             "to continue it (or choose another hydra.run.dir)")


def _first_difference(key: str, old, new) -> tuple[str, object, object]:
    """The first setting (dotted path under ``key``) where two config values differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted({*old, *new}, key=lambda k: (k != "_target_", k)):  # which class first
            if old.get(k, "<not set>") != new.get(k, "<not set>"):
                return _first_difference(f"{key}.{k}", old.get(k, "<not set>"), new.get(k, "<not set>"))
    return key, old, new


def _occupied_run_dir(command: str, overrides: list[str]) -> str | None:
    """Before hydra starts (it writes ``.hydra/`` into the run folder first): the refusal of a ``cogarch run``
    whose ``hydra.run.dir=`` names a folder holding a run, without ``resume=true``; None otherwise. The task's own
    check (_check_fresh) still covers every other way of naming the folder."""
    if command != "run":
        return None
    given = _override_values(overrides)
    folder, resume = given.get("hydra.run.dir"), given.get("resume", "false").strip().lower()
    if folder is None or resume == "true":
        return None
    return _fresh_refusal(Path(folder))


def _override_values(overrides) -> dict[str, str]:
    """``key=value`` command-line overrides (hydra's ``+``/``++`` prefixes dropped; deletions ``~key`` left out) as
    a dict of the raw value strings."""
    pairs = (str(o).lstrip("+").split("=", 1) for o in overrides if "=" in str(o) and not str(o).startswith("~"))
    return dict(pairs)


def _fresh_refusal(folder: Path) -> str | None:
    episodes = folder / "episodes.jsonl"
    if episodes.is_file() and episodes.stat().st_size > 0:
        return (f"{folder} already holds a run (its episodes.jsonl is not empty): resume=true continues it; for a "
                "new run choose another hydra.run.dir (or delete that folder)")
    return None


def _check_fresh(cfg) -> None:
    """A run without ``resume`` starts its files afresh: refuse a folder that already holds a run rather than mix
    the two (a shorter new run would leave the old run's later snapshots, and its summary would replace the old)."""
    from hydra.core.hydra_config import HydraConfig

    refusal = _fresh_refusal(Path(HydraConfig.get().runtime.output_dir))
    if refusal:
        raise ValueError(refusal)


def _check_seed(cfg) -> None:
    """The settings every command shares: ``seed`` and ``dim``."""
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed={cfg.seed!r} must be an integer >= 0")
    dim = cfg.get("dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim={dim!r} is out of range; allowed: integer >= 1 (the model dimension)")


def _check_trained_dim(cfg, agent, overrides) -> None:
    """A trained agent (agent=pretrained) keeps the dimension it was trained at: refuse a ``dim=`` on the command
    line that differs from it, rather than ignore it."""
    trained, run_dir = getattr(agent, "dim", None), getattr(agent, "run_dir", None)
    if run_dir is not None and trained is not None and "dim" in _override_values(overrides) and cfg.dim != trained:
        raise ValueError(f"dim={cfg.dim} does not apply to the trained agent of {run_dir}, trained at dim={trained}; "
                         f"allowed: leave dim out, or dim={trained}")


def _check_flags(cfg, *keys: str) -> None:
    """Refuse a switch that is neither true nor false (``trace=maybe`` would otherwise count as on)."""
    from omegaconf import OmegaConf

    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is not allowed; allowed: true or false")


def _library_progress(progress: bool) -> None:
    """``progress=false`` also turns off the bars of the libraries an agent loads with (transformers' "Loading
    weights" of the language model): through huggingface_hub's switch, which transformers reads when imported."""
    if progress:
        return
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.disable_progress_bar()


def _run_dir(cfg) -> Path:
    """The hydra run folder, with the resolved config written into it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return out


def _train(cfg) -> dict:
    from hydra.core.hydra_config import HydraConfig

    _check_seed(cfg)
    _check_flags(cfg, "progress", "train.resume")
    _library_progress(cfg.progress)
    if cfg.train.resume:  # before _run_dir rewrites config.yaml: a refused resume leaves the folder as it was
        _check_resumable(cfg, TRAIN_RESUME_KEYS, "train.resume=true", checkpointed=True)
    choices = HydraConfig.get().runtime.choices
    return _train_from(cfg, _run_dir(cfg), {"env": choices.get("env"), "agent": choices.get("agent")})


def _train_from(cfg, out: Path, names: dict) -> dict:
    """Train the agent of a `train` config into ``out`` (resuming from its checkpoint if there is one)."""
    import hydra.utils
    from omegaconf import OmegaConf

    import environments  # noqa: F401
    from agents.data import union_vocab
    from agents.train import train
    from cogarch.runner import format_table, run_episodes

    t = cfg.train
    eval_episodes = cfg.get("eval_episodes", 0)
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, int) or eval_episodes < 0:
        raise ValueError(f"eval_episodes={eval_episodes!r} is out of range; allowed: integer >= 0 (0: no evaluation "
                         "after training)")
    mix = [dict(m) for m in OmegaConf.to_container(t.mix, resolve=True)] or [{}]
    envs = [hydra.utils.instantiate(cfg.env, **m) for m in mix]
    vocab = union_vocab(e.unwrapped.vocab for e in envs)
    import torch

    torch.manual_seed(cfg.seed)
    # trainable agents learn from whole episodes (episode_logits); the others (random, oracle, llm, pretrained) take
    # other arguments, so the class is checked before it is built
    target = hydra.utils.get_object(cfg.agent._target_)
    if not (isinstance(target, type) and hasattr(target, "episode_logits")):
        raise ValueError(f"agent={names['agent']!r} cannot be trained; allowed: workspace, transformer")
    agent = hydra.utils.instantiate(cfg.agent, vocab=envs[0].unwrapped.vocab, agent_vocab=vocab, seed=cfg.seed)
    print(f"{type(agent).__name__}: {agent.num_parameters():,} parameters; run folder {out}")
    result = train(agent, envs, out, updates=t.updates, batch_size=t.batch_size, lr=t.lr,
                   weight_decay=t.weight_decay, aux_weight=t.aux_weight, grad_clip=t.grad_clip, seed=cfg.seed,
                   checkpoint_every=t.checkpoint_every, log_every=t.log_every, max_minutes=t.max_minutes,
                   resume=t.resume, progress=cfg.progress, lr_schedule=t.get("lr_schedule", "constant"),
                   decay_fraction=t.get("decay_fraction", 0.2))
    result["parameters"] = agent.num_parameters()
    if result["already_done"]:  # a reused run folder: its checkpoint is used as it is
        print(f"{out} already holds a finished training run (update {result['updates_done']}; train.updates="
              f"{t.updates}, train.max_minutes={t.max_minutes}): nothing trained. Raise either to train on, or "
              "pick a new hydra.run.dir for a new run.")
    print(f"checkpoint: {result['checkpoint']}  log: {result['log']}  last: {result['last']}")
    if cfg.eval_episodes:
        agent.bind_env(envs[0].unwrapped.vocab)
        summary = run_episodes(envs[0], agent, cfg.eval_episodes, cfg.seed, out / "eval", trace=False,
                               progress=cfg.progress)
        row = {"env": names["env"], "agent": names["agent"], **summary}
        print(format_table([row]))
        result["eval"] = row
    return result


def _eval(cfg) -> list:
    from hydra.core.hydra_config import HydraConfig

    _check_seed(cfg)
    _check_flags(cfg, "trace", "progress")
    _library_progress(cfg.progress)
    return _eval_in(cfg, _run_dir(cfg), HydraConfig.get().runtime.choices.get("env"))


def _eval_in(cfg, out: Path, env_name: str) -> list:
    """Evaluate the runs and baselines of an `eval` config into ``out``."""
    import hydra.utils
    from omegaconf import OmegaConf

    import environments  # noqa: F401
    from agents.checkpoint import load_agent, resolve_run
    from agents.evaluate import evaluate, markdown_table, write_report

    if not isinstance(cfg.episodes, int) or cfg.episodes < 1:
        raise ValueError(f"episodes={cfg.episodes!r} must be an integer >= 1")
    out.mkdir(parents=True, exist_ok=True)
    key, values = cfg.sweep.key, list(cfg.sweep["values"]) or [None]
    if key is None and values != [None]:
        raise ValueError(f"sweep.values={values} needs sweep.key (the env kwarg to vary)")
    if key is not None and values == [None]:
        raise ValueError(f"sweep.key={key} needs sweep.values (the values of {key} to evaluate at)")
    make_env = lambda v: hydra.utils.instantiate(cfg.env, **({key: v} if key else {}))
    runs, labels = list(cfg.runs), list(cfg.labels)
    if labels and len(labels) != len(runs):
        raise ValueError(f"labels has {len(labels)} names for {len(runs)} runs; give one per run or none")
    agents = {}
    for i, run in enumerate(runs):
        folder = resolve_run(run)
        label = labels[i] if labels else folder.name
        agents[label] = lambda env, run=run: load_agent(run, vocab=env.unwrapped.vocab)
    configs = Path(__file__).resolve().parents[1] / "configs" / "agent"
    for name in cfg.baselines:
        path = configs / f"{name}.yaml"
        if not path.is_file():
            allowed = sorted(p.stem for p in configs.glob("*.yaml"))
            raise ValueError(f"baseline {name!r} is not an agent config; allowed: {allowed}")
        node = OmegaConf.load(path)
        agents[name] = lambda env, node=node: hydra.utils.instantiate(
            node, action_space=env.action_space, observation_space=env.observation_space, seed=cfg.seed,
            vocab=getattr(env.unwrapped, "vocab", None))
    if not agents:
        raise ValueError("nothing to evaluate: give runs=[...] and/or baselines=[...]")
    rows = evaluate(make_env, agents, values, cfg.episodes, cfg.seed, out, trace=cfg.trace, progress=cfg.progress,
                    key=key, num_envs=_num_envs(cfg))
    paths = write_report(rows, out, key, f"{env_name}: {cfg.episodes} held-out episodes (seeds {cfg.seed}..)")
    import pandas as pd

    print(markdown_table(pd.read_csv(paths["csv"])))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return rows


def _experiment(cfg) -> list:
    """Train each agent of ``cfg.agents`` (label -> hydra overrides of train.yaml, one of them ``agent=...``; a
    transformer is matched to the first agent's parameter count), then evaluate them with the baselines;
    everything lands in one folder."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    _library_progress(cfg.progress)
    out = _run_dir(cfg)
    choices = HydraConfig.get().runtime.choices
    env_overrides = [f"env={choices.get('env')}"]
    runs, labels, params = [], [], None
    if not cfg.get("agents"):
        raise ValueError("an experiment needs `agents` (label -> overrides, e.g. {workspace: [agent=workspace]}); "
                         "choose one with experiment=<name> (configs/experiment/)")
    for label, overrides in cfg.agents.items():
        overrides = list(overrides)
        if not any(o.startswith("agent=") for o in overrides):
            raise ValueError(f"agents.{label}: its overrides must choose an agent (agent=workspace|transformer), "
                             f"got {overrides}")
        name = next(o.split("=", 1)[1] for o in overrides if o.startswith("agent="))
        sub = compose(config_name="train", overrides=[*env_overrides, *overrides])
        with open_dict(sub):
            sub.seed, sub.dim, sub.progress, sub.eval_episodes = cfg.seed, cfg.dim, cfg.progress, 0
            sub.env, sub.train = cfg.env, cfg.train
            own = [o for o in overrides if o.startswith(("env.", "train.", "seed=", "dim="))]
            if own:  # an agent's own env / train settings, seed and dim (e.g. env.task=3: one agent per task) win
                sub.merge_with(OmegaConf.from_dotlist(own))
            if name == "transformer" and params is not None and sub.agent.get("target_parameters") is None:
                sub.agent.target_parameters = params  # the baseline gets the workspace agent's parameter count
        run = out / f"train_{label}"
        if sub.train.resume:  # before its config.yaml is rewritten (as in `cogarch train`)
            _check_resumable(sub, TRAIN_RESUME_KEYS, "train.resume=true", run, checkpointed=True)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(OmegaConf.to_yaml(sub, resolve=True))
        print(f"== training {label} ({' '.join(overrides)}) in {run}")
        result = _train_from(sub, run, {"env": choices.get("env"), "agent": label})
        params = params if params is not None else result["parameters"]
        runs.append(str(run))
        labels.append(label)
    ev = compose(config_name="eval", overrides=env_overrides)
    with open_dict(ev):
        ev.seed, ev.dim, ev.progress, ev.episodes, ev.trace = cfg.seed, cfg.dim, cfg.progress, cfg.episodes, False
        ev.env = cfg.env
        ev.runs, ev.labels, ev.baselines, ev.sweep = runs, labels, cfg.baselines, cfg.sweep
        ev.num_envs = cfg.get("num_envs", 1)
    print("== evaluating")
    return _eval_in(ev, out / "eval", choices.get("env"))


# What hydra and _run_dir put in a run folder before a command does any work
BOOKKEEPING = {".hydra", "cli.log", "config.yaml"}


def _remove_bookkeeping_only(folder: Path) -> None:
    """Remove ``folder`` if it holds nothing but BOOKKEEPING (a command that failed before writing results)."""
    import shutil

    if folder.is_dir() and {p.name for p in folder.iterdir()} <= BOOKKEEPING:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"cogarch: unknown command {argv[0]!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, rest = argv[0], argv[1:]
    if command == "view":  # no hydra config: a run folder in, an HTML file out
        from cogarch.inspect.report import main as view

        sys.exit(view(rest))
    refusal = _occupied_run_dir(command, rest)
    if refusal:
        print(f"cogarch {command}: {refusal}", file=sys.stderr)
        sys.exit(1)
    import hydra

    config = {"experiment": "experiments"}.get(command, command)
    job = {"run": _run, "train": _train, "eval": _eval, "experiment": _experiment}[command]

    def tidy(cfg):  # a command refused before it wrote anything takes hydra's empty run folder with it
        from hydra.core.hydra_config import HydraConfig

        from cogarch.runtime import keep_freed_memory

        keep_freed_memory()  # here, in the job's own process (a joblib or submitit sweep runs jobs elsewhere)
        folder = Path(HydraConfig.get().runtime.output_dir)
        try:
            return job(cfg)
        except BaseException:
            _remove_bookkeeping_only(folder)
            raise

    task = hydra.main(config_path="pkg://configs", config_name=config, version_base="1.3")(tidy)
    sys.argv = [f"cogarch {command}", *rest]
    task()


if __name__ == "__main__":
    main()
