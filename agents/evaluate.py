"""Side-by-side evaluation: every agent on the same held-out episodes, over a sweep of one difficulty knob.

:func:`evaluate` plays each (agent, difficulty value) pair through :func:`cogarch.runner.run_episodes` (so each
pair leaves its own run folder with episodes.jsonl, and trace.jsonl if asked) and returns one row per pair;
:func:`write_report` writes results.csv, results.md and the plots (success and answer accuracy against the
swept value, one line per agent).

Episode seeds are ``seed, seed + 1, ...`` for every agent and value: the same episodes for every agent, and
disjoint from the training seeds (``agents.train.TRAIN_SEED_BASE`` and up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cogarch.runner import run_episodes
from cogarch.vector import run_episodes_vectorized

COLUMNS = ("agent", "value", "episodes", "success_rate", "answer_accuracy", "mean_reward", "parameters",
           "steps_per_s", "wall_s")


def evaluate(make_env: Callable[[Any], Any], agents: dict[str, Callable[[Any], Any]], values: Sequence[Any],
             episodes: int, seed: int, out_dir: str | Path, trace: bool = False, progress: bool = True,
             key: str | None = None, num_envs: int = 1) -> list[dict[str, Any]]:
    """Rows of results. ``make_env(value)`` builds the env at one difficulty value; ``agents[label](env)`` builds
    (or binds) an agent for that env. Results of each pair go to ``out_dir/<label>/<key>=<value>/``. With
    ``num_envs`` > 1 the episodes run on that many envs at once (:mod:`cogarch.vector`; the same results)."""
    out = Path(out_dir)
    rows = []
    for value in values:
        env = make_env(value)
        for label, build in agents.items():
            agent = build(env)
            folder = out / _safe(label) / (f"{key}={value}" if key else "default")
            if num_envs > 1:
                summary = run_episodes_vectorized(lambda: make_env(value), agent, episodes, seed, num_envs, folder,
                                                  trace=trace, progress=progress)
            else:
                summary = run_episodes(env, agent, episodes, seed, folder, trace=trace, progress=progress)
            params = agent.num_parameters() if hasattr(agent, "num_parameters") else None
            rows.append({"agent": label, "value": value, **summary, "parameters": params})
        env.close()
    return rows


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, key: str | None, title: str) -> dict[str, Path]:
    """results.csv, results.md and one PNG per metric (success, answer accuracy, and the accuracy on each tagged
    subset of answer steps when the env tags questions); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    # accuracy on tagged subsets of the answer steps (e.g. GraphTrace's edges_twice), after answer_accuracy
    tagged = [c for c in frame.columns if c.startswith(("answer_steps_", "answer_accuracy_"))]
    at = COLUMNS.index("answer_accuracy") + 1
    df = frame[[*COLUMNS[:at], *tagged, *COLUMNS[at:]]].rename(columns={"value": key or "value"})
    paths = {"csv": out / "results.csv", "md": out / "results.md"}
    df.to_csv(paths["csv"], index=False)
    paths["md"].write_text(f"# {title}\n\n" + markdown_table(df) + "\n")
    if key:
        # The swept values are evenly spaced categories in sweep order (sizes that span decades, task numbers)
        order = {v: i for i, v in enumerate(dict.fromkeys(df[key].astype(str)))}
        markers = "osD^vP*X"
        for metric in ("success_rate", "answer_accuracy", *(c for c in tagged if c.startswith("answer_accuracy_"))):
            fig, ax = plt.subplots(figsize=(6, 4))
            for i, (label, part) in enumerate(df.groupby("agent", sort=False)):
                # the bounds (random, oracle) dashed and thin, drawn first, so an agent at 0 or 1 stays visible
                bound = label in ("random", "oracle")
                ax.plot([order[v] for v in part[key].astype(str)], part[metric], label=label,
                        marker=markers[i % len(markers)], linestyle="--" if bound else "-",
                        linewidth=1.0 if bound else 2.0, alpha=0.6 if bound else 1.0, zorder=1 if bound else 2)
            ax.set_xticks(range(len(order)), list(order))
            ax.set_xlabel(key)
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            paths[metric] = out / f"{metric}_vs_{key}.png"
            fig.savefig(paths[metric], dpi=100)
            plt.close(fig)
    return paths


def markdown_table(df) -> str:
    def cell(v):
        if v is None or v != v:  # None or NaN
            return "n/a"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"
        if isinstance(v, int) and v >= 10_000:
            return f"{v:,}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])
