"""The ablation table across envs: one row per workspace-agent variant, one column per env.

Each column comes from the ``results.csv`` of one ``cogarch experiment experiment=ablations env=<name>`` (its
``eval/results.csv``, or a results folder holding the copied file). A cell is the variant's answer accuracy and,
beside it, its change from the whole agent (``full``), the effect of removing or swapping that part.

    python -m agents.ablations results/ablations.md story_qa=results/ablations_story_qa \
        graph_trace=results/ablations_graph_trace ...

writes the markdown table and a heatmap of the changes (``<name>.png`` beside it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from agents.evaluate import markdown_table

BOUNDS = ("random", "oracle")  # baselines: rows of their own, no change column


def results_file(folder: str | Path, experiment: str = "ablations env=<name>") -> Path:
    """The results.csv of an experiment folder (``eval/results.csv``) or of a results folder; ``experiment``
    names the run that makes it, for the error."""
    folder = Path(folder)
    for path in (folder / "eval" / "results.csv", folder / "results.csv", folder):
        if path.is_file():
            return path
    raise FileNotFoundError(f"no results.csv in {folder} (nor in {folder / 'eval'}); run "
                            f"`cogarch experiment experiment={experiment}` first")


def ablation_frame(columns: dict[str, str | Path], metric: str = "answer_accuracy") -> pd.DataFrame:
    """``metric`` of each agent (rows, in first-seen order) on each env (columns, in the given order)."""
    series = {}
    for env, folder in columns.items():
        df = pd.read_csv(results_file(folder))
        if "agent" not in df or metric not in df:
            raise ValueError(f"{results_file(folder)} has no 'agent' and {metric!r} columns")
        if df["agent"].duplicated().any():
            raise ValueError(f"{results_file(folder)} holds several rows per agent (a sweep); an ablation column "
                             "needs one setting per env")
        series[env] = df.set_index("agent")[metric]
    order = list(dict.fromkeys(a for s in series.values() for a in s.index))
    return pd.DataFrame(series).reindex(order)


def ablation_table(frame: pd.DataFrame, reference: str = "full") -> str:
    """Markdown: each cell ``value (change from the reference row)``; baselines without the change."""
    if reference not in frame.index:
        raise ValueError(f"no {reference!r} row to compare with; rows: {list(frame.index)}")
    cells = frame.map(lambda v: "n/a" if v != v else f"{v:.3f}")
    for agent in frame.index:
        if agent in BOUNDS or agent == reference:
            continue
        delta = frame.loc[agent] - frame.loc[reference]
        cells.loc[agent] = [c if d != d else f"{c} ({d:+.3f})" for c, d in zip(cells.loc[agent], delta)]
    return markdown_table(cells.reset_index(names="agent"))


def plot_changes(frame: pd.DataFrame, path: str | Path, reference: str = "full") -> Path:
    """Heatmap of each variant's change from the reference row (variants x envs), values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [a for a in frame.index if a not in BOUNDS and a != reference]
    delta = (frame.loc[rows] - frame.loc[reference]).astype(float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(frame.columns), 0.9 + 0.45 * len(rows)))
    limit = max(float(delta.abs().max().max()), 0.05) if delta.notna().any().any() else 1.0
    image = ax.imshow(delta.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(frame.columns)):
            v = delta.iat[i, j]
            dark = v == v and abs(v) > 0.6 * limit  # white writing on the deep colours
            ax.text(j, i, "n/a" if v != v else f"{v:+.2f}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(frame.columns)), list(frame.columns), rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(f"answer accuracy: change from '{reference}'")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not all("=" in a for a in argv[1:]):
        raise SystemExit("usage: python -m agents.ablations OUT.md ENV=FOLDER [ENV=FOLDER ...]")
    out = Path(argv[0])
    frame = ablation_frame(dict(a.split("=", 1) for a in argv[1:]))
    table = ablation_table(frame)
    out.write_text("# Ablations: answer accuracy (change from the whole agent)\n\n" + table + "\n")
    plot_changes(frame, out.with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    main()
