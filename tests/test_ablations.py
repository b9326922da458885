"""The cross-env ablation table (agents.ablations) built from experiments' results.csv files."""

import pandas as pd
import pytest

from agents.ablations import ablation_frame, ablation_table, main


def write(folder, rows):
    (folder / "eval").mkdir(parents=True)
    pd.DataFrame(rows, columns=["agent", "value", "answer_accuracy"]).to_csv(folder / "eval" / "results.csv", index=False)


def test_table_holds_each_variant_and_its_change_from_the_whole_agent(tmp_path):
    write(tmp_path / "a", [("full", None, 0.8), ("no_working", None, 0.5), ("random", None, 0.01)])
    write(tmp_path / "b", [("full", None, 0.6), ("no_working", None, 0.7), ("no_episodic", None, 0.65)])
    frame = ablation_frame({"env_a": tmp_path / "a", "env_b": tmp_path / "b"})
    assert list(frame.index) == ["full", "no_working", "random", "no_episodic"]
    table = ablation_table(frame).splitlines()
    assert table[0] == "| agent | env_a | env_b |"
    assert table[2] == "| full | 0.800 | 0.600 |"
    assert table[3] == "| no_working | 0.500 (-0.300) | 0.700 (+0.100) |"
    assert table[4] == "| random | 0.010 | n/a |"
    assert table[5] == "| no_episodic | n/a | 0.650 (+0.050) |"
    main([str(tmp_path / "t.md"), f"env_a={tmp_path / 'a'}", f"env_b={tmp_path / 'b'}"])
    assert (tmp_path / "t.md").read_text().count("\n| ") == 5 and (tmp_path / "t.png").stat().st_size > 0


def test_missing_results_and_sweeps_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment=ablations"):
        ablation_frame({"x": tmp_path})
    write(tmp_path / "s", [("full", 1, 0.8), ("full", 2, 0.7)])
    with pytest.raises(ValueError, match="several rows per agent"):
        ablation_frame({"x": tmp_path / "s"})
    write(tmp_path / "n", [("no_working", None, 0.8)])
    with pytest.raises(ValueError, match="no 'full' row"):
        ablation_table(ablation_frame({"x": tmp_path / "n"}))
