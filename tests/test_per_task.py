"""The per-family table (agents.per_task) joined from experiments split over processes."""

import pandas as pd
import pytest

from agents.per_task import diagonal, join, main, matrix, plot_transfer


def experiment(folder, agents: dict[str, int], accuracy):
    """An experiment folder: each agent trained on one task, evaluated on tasks 1-3 (accuracy(agent, task))."""
    (folder / "eval").mkdir(parents=True)
    rows = []
    for label, task in agents.items():
        (folder / f"train_{label}").mkdir()
        (folder / f"train_{label}" / "config.yaml").write_text(f"env:\n  task: {task}\n")
        (folder / f"train_{label}" / "train.csv").write_text("update,loss\n1,0.5\n")
        rows += [(label, t, 100, accuracy(task, t), accuracy(task, t), 1000) for t in (1, 2, 3)]
    pd.DataFrame(rows, columns=["agent", "task", "episodes", "success_rate", "answer_accuracy", "parameters"]
                 ).to_csv(folder / "eval" / "results.csv", index=False)


def accuracy(trained, evaluated):
    return {1: 0.99, 2: 0.9, 3: 0.5}[trained] if trained == evaluated else 0.1 * evaluated


def test_the_diagonal_is_each_family_by_its_own_agent(tmp_path):
    experiment(tmp_path / "a", {"task3": 3, "task1": 1}, accuracy)
    experiment(tmp_path / "b", {"task2": 2}, accuracy)
    df, family = join([tmp_path / "a", tmp_path / "b"])
    assert family == {"task3": 3, "task1": 1, "task2": 2} and len(df) == 9
    own = diagonal(df, family)
    assert list(own["task"]) == [1, 2, 3] and list(own["agent"]) == ["task1", "task2", "task3"]
    assert list(own["answer_accuracy"]) == [0.99, 0.9, 0.5]
    grid = matrix(df, family)
    assert list(grid.index) == ["task1", "task2", "task3"] and grid.loc["task3", 1] == pytest.approx(0.1)
    assert plot_transfer(grid, family, tmp_path / "t.png") == [(0, 0), (1, 1), (2, 2)]
    main([str(tmp_path / "out"), str(tmp_path / "a"), str(tmp_path / "b")])
    text = (tmp_path / "out" / "results.md").read_text()
    # errors 0.01, 0.10, 0.50: mean 20.3%, two above 5%
    assert "Mean error over the 3 families: 20.3%; failed families (error > 5%): 2 of 3 (2, 3)." in text
    assert "| task3 | 0.10 | 0.20 | 0.50 |" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "results.csv", "results.md", "train_task1.csv", "train_task2.csv", "train_task3.csv", "transfer.png"]


def test_unlabelled_agents_and_repeated_labels_are_refused(tmp_path):
    experiment(tmp_path / "a", {"task1": 1}, accuracy)
    (tmp_path / "a" / "train_task1" / "config.yaml").write_text("env:\n  name: story_qa\n")
    with pytest.raises(ValueError, match="sets no env.task"):
        join([tmp_path / "a"])
    experiment(tmp_path / "b", {"task1": 1}, accuracy)
    experiment(tmp_path / "c", {"task1": 1}, accuracy)
    with pytest.raises(ValueError, match="more than one run"):
        join([tmp_path / "b", tmp_path / "c"])
    (tmp_path / "d" / "eval").mkdir(parents=True)
    pd.DataFrame({"agent": ["x"], "task": [1], "answer_accuracy": [0.5]}).to_csv(tmp_path / "d" / "eval" / "results.csv")
    with pytest.raises(FileNotFoundError, match="train_x/config.yaml is missing"):
        join([tmp_path / "d"])


def test_a_folder_without_results_names_the_experiment_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment=story_qa_per_task"):
        join([tmp_path])


def test_an_error_of_exactly_five_percent_is_not_a_failed_family(tmp_path):
    """95 right answers of 100: 1 - 0.95 is 0.05000000000000004 in floating point, not above bAbI's 5%."""
    experiment(tmp_path / "a", {"task1": 1, "task2": 2, "task3": 3},
               lambda trained, evaluated: {1: 95 / 100, 2: 0.95, 3: 0.94}[trained])
    main([str(tmp_path / "out"), str(tmp_path / "a")])
    assert "failed families (error > 5%): 1 of 3 (3)." in (tmp_path / "out" / "results.md").read_text()


def test_a_later_run_replaces_an_agent_only_when_asked(tmp_path):
    experiment(tmp_path / "a", {"task1": 1, "task2": 2}, accuracy)
    experiment(tmp_path / "b", {"task2": 2}, lambda trained, evaluated: 0.97 if trained == evaluated else 0.0)
    with pytest.raises(ValueError, match="'task2' appears in more than one run"):
        join([tmp_path / "a", tmp_path / "b"])
    df, family = join([tmp_path / "a", tmp_path / "b"], replace=True)
    assert len(df) == 6 and family == {"task1": 1, "task2": 2}
    assert list(diagonal(df, family)["answer_accuracy"]) == [0.99, 0.97]
    assert matrix(df, family).loc["task2", 1] == 0.0  # every row of the replaced agent is the later run's
