"""One agent per task family (bAbI's per-task setting): join experiments into the per-family table.

    python -m agents.per_task OUT_DIR RUN_DIR [RUN_DIR ...] [--key task] [--replace]

Each RUN_DIR is a ``cogarch experiment`` folder (e.g. ``experiment=story_qa_per_task``, split over two processes):
its ``eval/results.csv`` holds every agent on every family of the sweep, and each ``train_<label>/config.yaml``
names the family (``env.<key>``) that agent trained on. With ``--replace`` a later RUN_DIR may train some
families again: its agents replace the earlier runs' agents of the same label. Writes to OUT_DIR:

- ``results.csv``: every row of the runs, joined;
- ``results.md``: each family by its own agent (the diagonal), the mean error over the families (1 - answer
  accuracy, bAbI's per-question error) and the number of failed families (error > 5%, bAbI's threshold), then
  every agent's answer accuracy on every family;
- ``transfer.png``: that agents x families matrix as a heatmap, each agent's own family boxed;
- ``train_<label>.csv``: each agent's training log.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from agents.ablations import results_file
from agents.evaluate import markdown_table

FAILED = 0.05  # bAbI: a task is failed when its error is above 5%
DIAGONAL_COLUMNS = ["agent", "episodes", "success_rate", "answer_accuracy", "parameters"]


def trained_family(run: Path, label: str, key: str):
    """The ``env.<key>`` value agent ``label`` of experiment folder ``run`` trained on (its train config)."""
    from omegaconf import OmegaConf

    path = run / f"train_{label}" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: agent {label!r} of {run} has no training config to say which "
                                f"{key} it trained on")
    value = OmegaConf.load(path).get("env", {}).get(key)
    if value is None:
        raise ValueError(f"{path} sets no env.{key}: agent {label!r} was not trained on one {key}")
    return value


def join(runs: list[str | Path], key: str = "task", replace: bool = False) -> tuple[pd.DataFrame, dict[str, object]]:
    """All rows of the runs' results and, per agent label, the family it trained on. With ``replace`` an agent
    label of a later run replaces the same label of the earlier runs (some families trained again, joined with
    the rest); without it a label in two runs is an error."""
    frames, family = [], {}
    for run in map(Path, runs):
        path = results_file(run, "story_qa_per_task")
        df = pd.read_csv(path)
        if "agent" not in df or key not in df or "answer_accuracy" not in df:
            raise ValueError(f"{path} has no 'agent', {key!r} and 'answer_accuracy' columns (a sweep "
                             f"over {key} is needed)")
        for label in df["agent"].unique():
            if label in family:
                if not replace:
                    raise ValueError(f"agent {label!r} appears in more than one run ({run}); labels must be unique "
                                     "(or --replace: a later run's agent replaces the earlier one)")
                frames = [f[f["agent"] != label] for f in frames]
                print(f"agent {label!r}: the run {run} replaces the earlier one")
            family[label] = trained_family(run, label, key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True), family


def diagonal(df: pd.DataFrame, family: dict[str, object], key: str = "task") -> pd.DataFrame:
    """One row per family: its own agent's results there, families in ascending order."""
    own = df[[family.get(a) == v for a, v in zip(df["agent"], df[key])]]
    own = own.drop_duplicates(subset=[key]).sort_values(key)
    return own[[key] + [c for c in DIAGONAL_COLUMNS if c in own]].reset_index(drop=True)


def matrix(df: pd.DataFrame, family: dict[str, object], key: str = "task") -> pd.DataFrame:
    """Answer accuracy of each agent (rows, ordered by the family it trained on) on each family (columns)."""
    grid = df.pivot_table(index="agent", columns=key, values="answer_accuracy", aggfunc="mean")
    return grid.loc[sorted(grid.index, key=lambda a: (family[a], a))]


def plot_transfer(grid: pd.DataFrame, family: dict[str, object], path: str | Path,
                  key: str = "task") -> list[tuple[int, int]]:
    """Heatmap of the agents x families matrix, values written in, each agent's own family boxed; returns the
    boxed cells as (row, column) positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 0.55 * grid.shape[1]), max(3.5, 1.0 + 0.4 * grid.shape[0])))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    columns, boxed = list(grid.columns), []
    for i, agent in enumerate(grid.index):
        for j in range(len(columns)):
            v = grid.iat[i, j]
            label = "" if v != v else f"{v:.0f}" if v == 1 else f"{v:.2f}".lstrip("0")  # .73, 1
            ax.text(j, i, label, ha="center", va="center", fontsize=7, color="black" if v > 0.6 else "white")
        if family[agent] in columns:
            j = columns.index(family[agent])
            boxed.append((i, j))
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(grid.index)), list(grid.index))
    ax.set_xlabel(f"evaluated on {key}")
    ax.set_ylabel("agent (trained on one family)")
    ax.set_title("answer accuracy; each agent's own family boxed")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return boxed


def write(out: str | Path, runs: list[str | Path], key: str = "task", title: str | None = None,
          replace: bool = False) -> str:
    """Join the runs and write results.csv, results.md, transfer.png and the training logs to ``out`` (a log of a
    replaced agent is overwritten by the later run's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df, family = join(runs, key, replace)
    own = diagonal(df, family, key)
    # rounded: accuracies are ratios of counts, and 1 - 0.95 is 0.05000000000000004 in floating point, while an
    # error of exactly 5% is not a failure (bAbI: above 5%)
    error = (1.0 - own["answer_accuracy"]).round(9)
    failed = [str(v) for v, e in zip(own[key], error) if e > FAILED]
    grid = matrix(df, family, key)
    text = [f"# {title or out.name}: one agent per {key}, each evaluated on every {key}\n",
            f"Each {key} by its own agent (the diagonal of results.csv):\n", markdown_table(own), "",
            f"Mean error over the {len(own)} families: {100 * error.mean():.1f}%; failed families (error > "
            f"{100 * FAILED:.0f}%): {len(failed)} of {len(own)}{' (' + ', '.join(failed) + ')' if failed else ''}.\n",
            f"Answer accuracy of every agent on every {key} (rows: agents; `transfer.png`):\n",
            markdown_table(grid.map(lambda v: "n/a" if v != v else f"{v:.2f}").reset_index())]
    df.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text("\n".join(text) + "\n")
    plot_transfer(grid, family, out / "transfer.png", key)
    for run in map(Path, runs):
        for log in run.glob("train_*/train.csv"):
            shutil.copyfile(log, out / f"{log.parent.name}.csv")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write results.md, results.csv, transfer.png and the logs to")
    parser.add_argument("runs", nargs="+", help="cogarch experiment folders (each with eval/results.csv)")
    parser.add_argument("--key", default="task", help="the env setting each agent trained on one value of")
    parser.add_argument("--title", default=None)
    parser.add_argument("--replace", action="store_true",
                        help="an agent label of a later run replaces the same label of the earlier runs")
    args = parser.parse_args(argv)
    print(write(args.out, args.runs, args.key, args.title, args.replace))


if __name__ == "__main__":
    main()
