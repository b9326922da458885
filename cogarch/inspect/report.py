"""``cogarch view <run dir>``: a static HTML report of a run, written next to it (``<run>/report.html``).

One self-contained file (no server, no scripts, no files beside it): the run's summary and episodes as
tables, and for the first few episodes the cycle table and the plots of :mod:`cogarch.inspect.plots`
embedded as base64 PNG images; the memory snapshot's tables where the run wrote one.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from html import escape
from pathlib import Path

from cogarch.inspect import load_run
from cogarch.inspect.html import STYLE, episode_table, episodes_table, snapshot_html, summary_table, table


def figure_png(fig) -> str:
    """A matplotlib figure as a base64 PNG string."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{figure_png(fig)}" style="max-width:100%"></p>'


def render(run, episodes: int = 3) -> str:
    """The report of a loaded :class:`cogarch.inspect.Run` as an HTML string (``episodes`` shown in detail)."""
    from cogarch.inspect import plots

    parts = [f"<h1>cogarch run: {escape(run.path.name)}</h1>", f"<p>{escape(str(run.path.resolve()))}</p>",
             "<h2>Summary</h2>", summary_table(run), "<h2>Episodes</h2>", episodes_table(run)]
    for ep in run.episodes[:episodes]:
        parts += [f"<h2>Episode {ep.index}</h2>",
                  f"<p>seed {ep.seed}, {ep.steps} steps, reward {ep.reward}, success {ep.success}, answers {escape(str(ep.answers))}</p>",
                  episode_table(ep, max_rows=60)]
        if not ep.records:
            continue
        shown = [("workspace competition", plots.plot_competition), ("working memory", plots.plot_working_memory),
                 ("long-term memory (broadcast triples)", plots.plot_long_term_graph), ("surprise", plots.plot_surprise)]
        for name, plot in shown:
            try:
                fig, _ = plot(ep)
            except ValueError as err:  # e.g. a baseline's trace has no candidates
                parts.append(f"<p>({escape(name)}: {escape(str(err))})</p>")
                continue
            parts += [f"<h3>{escape(name)}</h3>", _img(fig, name)]
        if ep.snapshot_path is not None:
            parts += ["<h3>memory snapshot at the end of the episode</h3>", snapshot_html(ep.snapshot)]
    df = run.to_dataframe()
    if len(df):
        parts += ["<h2>Cycles (first 20 rows of the DataFrame)</h2>",
                  table(list(df.columns), df.head(20).astype(object).where(df.head(20).notna(), None).values.tolist())]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(run.path.name)}</title>{STYLE}"
            f"</head><body class='cogarch' style='font-family:sans-serif'>{''.join(parts)}</body></html>")


def write_report(path: str | Path, out: str | Path | None = None, episodes: int = 3) -> Path:
    """Load the run folder ``path`` and write its report to ``out`` (default ``<path>/report.html``).

    Output: the report's path. Errors of :func:`cogarch.inspect.load_run` (naming the path) pass through."""
    run = load_run(path)
    out = Path(out) if out is not None else run.path / "report.html"
    out.write_text(render(run, episodes))
    return out


def main(argv: list[str] | None = None) -> int:
    """``cogarch view <run dir> [--out FILE] [--episodes N]``; returns the exit status (2 on a bad run folder)."""
    parser = argparse.ArgumentParser(prog="cogarch view", description="Write a static HTML report of a run.")
    parser.add_argument("run", help="a run folder written by `cogarch run`")
    parser.add_argument("--out", default=None, help="the HTML file (default: <run>/report.html)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes shown with cycle tables and plots")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.episodes < 0:
        parser.error(f"--episodes={args.episodes} must be >= 0")
    try:
        out = write_report(args.run, args.out, args.episodes)
    except (FileNotFoundError, ValueError) as err:
        print(f"cogarch view: {err}", file=sys.stderr)
        return 2
    print(f"report: {out} (open it in a browser: file://{out.resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
