"""cogarch.inspect: a run loads, its DataFrame has one row per cycle, every plot draws what the trace holds,
the counterfactual ranking finds the cycles that carry the answer, and the HTML report holds the tables."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import environments  # noqa: F401
from agents.checkpoint import load_agent
from agents.workspace import WorkspaceAgent
from cogarch.bottleneck import Bottleneck
from cogarch.inspect import COLUMNS, load_run, snapshot_of
from cogarch.inspect import plots
from cogarch.inspect.anchors import (anchor_hit, answer_kl, counterfactual_importance, fact_pool, replay,
                                     replay_resampled, resamples)
from cogarch.inspect.html import words
from cogarch.inspect.report import render, write_report
from cogarch.memory.episodic import EpisodicMemory
from cogarch.memory.long_term import OuterProductMemory
from cogarch.memory.working import WorkingMemory
from cogarch.runner import run_episodes
from cogarch.trace import MemorySnapshot

ROOT = Path(__file__).resolve().parents[1]


def cogarch(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "cogarch.cli", *args], capture_output=True, text=True, cwd=ROOT)
    if check and res.returncode != 0:
        raise AssertionError(f"cogarch {args} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A run of the shipped StoryQA agent written by `cogarch run` (with snapshots)."""
    out = tmp_path_factory.mktemp("cli_run")
    cogarch("run", "episodes=4", "progress=false", f"hydra.run.dir={out}")
    return out


def full_agent(vocab, seed=0):
    """An untrained workspace agent with working, long-term (outer product) and episodic memory."""
    torch.manual_seed(seed)
    return WorkspaceAgent(Bottleneck(32, k=2), dim=32, working=WorkingMemory(32, slots=4),
                          long_term=OuterProductMemory(32, capacity=64), episodic=EpisodicMemory(32, window=8),
                          vocab=vocab, seed=seed)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A run of the full (untrained) agent through run_episodes: boundaries, long-term memory, snapshots."""
    out = tmp_path_factory.mktemp("full_run")
    env = gym.make("cogarch/StoryQA-v0", task=2)
    agent = full_agent(env.unwrapped.vocab)
    run_episodes(env, agent, 2, 0, out, progress=False, snapshots=True)
    return out, agent


# ------------------------------------------------------------------------------------------------ loading
def test_cli_run_loads_with_one_row_per_cycle(cli_run):
    run = load_run(cli_run)
    lines = [json.loads(l) for l in (cli_run / "trace.jsonl").read_text().splitlines()]
    df = run.to_dataframe()
    assert list(df.columns) == list(COLUMNS) and len(df) == len(lines) == len(run.records)
    assert [e.index for e in run.episodes] == [0, 1, 2, 3]
    for (_, row), line in zip(df.iterrows(), lines):
        assert (row.episode, row.step, row.cycle, row.action, row.oracle_action) == (
            line["episode"], line["step"], line["cycle"], line["action"], line["oracle_action"])
        assert row.winners == line["winners"] and row.winner_concepts == line["winner_concepts"]
        assert row.answering == (line["oracle_action"] != 0)
    assert df.groupby("episode").size().tolist() == [e.steps for e in run.episodes]
    # the run wrote a snapshot per episode, loadable and decoded
    snap = run.snapshot(0)
    assert (cli_run / "snapshots" / "episode_000000.safetensors").is_file()
    assert snap.meta["episode"] == 0 and len(snap.meta["slot_concepts"]) == 8
    assert "memories.working.slots" in snap.tensors


def test_not_a_run_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_run(tmp_path / "nope")
    with pytest.raises(ValueError, match=f"{tmp_path} is not a cogarch run folder"):
        load_run(tmp_path)
    res = cogarch("view", str(tmp_path), check=False)
    assert res.returncode == 2 and str(tmp_path) in res.stderr


def test_truncated_trace_loads_up_to_the_last_complete_record(cli_run, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(cli_run, cut)
    text = (cut / "trace.jsonl").read_text()
    (cut / "trace.jsonl").write_text(text[: len(text) - 40])  # the last line cut mid-write
    with pytest.warns(UserWarning, match="truncated"):
        run = load_run(cut)
    assert len(run.records) == len(text.splitlines()) - 1


def test_damaged_run_files_are_refused_by_file_and_line(cli_run, tmp_path):
    damaged = tmp_path / "damaged"
    for name, line, expected in (("trace.jsonl", b'{"episode": "x", "step": 0}', r"trace\.jsonl: record 2: episode is 'x'"),
                                 ("trace.jsonl", b'{"episode": 0, "step": null}', r"trace\.jsonl: record 2: not a cycle"),
                                 ("trace.jsonl", b"[1, 2]", r"trace\.jsonl: line 2 is a JSON list"),
                                 ("episodes.jsonl", b"\xff", r"episodes\.jsonl: line 2 is not UTF-8"),
                                 ("episodes.jsonl", b'{"seed": 1}', r"episodes\.jsonl: record 2 has episode='<missing>'"),
                                 ("summary.json", None, r"summary\.json is not valid JSON")):
        shutil.rmtree(damaged, ignore_errors=True)
        shutil.copytree(cli_run, damaged)
        path = damaged / name
        if line is None:
            path.write_text("{\n")
        else:
            first, rest = path.read_bytes().split(b"\n", 1)
            path.write_bytes(first + b"\n" + line + b"\n" + rest)
        with pytest.raises(ValueError, match=expected):
            load_run(damaged)
        res = cogarch("view", str(damaged), check=False)
        assert res.returncode != 0 and name in res.stderr and "Traceback" not in res.stderr


def test_html_reprs_show_winners_and_slots(cli_run):
    run = load_run(cli_run)
    ep = run.episodes[0]
    rec = ep.records[-1]
    html = rec._repr_html_()
    for c in rec.winner_concepts:
        assert words(c) in html
    for c in rec.slot_concepts:
        if c is not None:
            assert words(c) in html
    assert "<table" in ep._repr_html_() and words(ep.records[0].winner_concepts[0]) in ep._repr_html_()
    assert "<table" in run._repr_html_() and "success_rate" in run._repr_html_()
    snap_html = run.snapshot(0)._repr_html_()
    assert "memories.working.slots" in snap_html
    assert words(next(c for c in run.snapshot(0).meta["slot_concepts"] if c)) in snap_html


# ------------------------------------------------------------------------------------------------ plots
def test_competition_heatmap_marks_the_trace_winners(cli_run):
    ep = load_run(cli_run).episodes[0]
    fig, data = plots.plot_competition(ep)
    assert data["winner_candidates"] == [r.winners for r in ep.records]
    marked = {(data["order"][row], col) for row, col in data["winners"]}
    assert marked == {(w, col) for col, r in enumerate(ep.records) for w in r.winners}
    for col, r in enumerate(ep.records):  # the colours are the recorded scores
        for row, cand in enumerate(data["order"]):
            score = r.candidates[cand]["score"]
            assert (np.isnan(data["scores"][row, col]) if score is None else data["scores"][row, col] == score)
    sources = data["sources"]  # grouped: each source is one contiguous block of rows
    assert len({s for s in sources}) == sum(1 for i, s in enumerate(sources) if i == 0 or s != sources[i - 1])
    assert fig.axes


def test_working_memory_plot_shows_the_decoded_slots(cli_run):
    ep = load_run(cli_run).episodes[1]
    _, data = plots.plot_working_memory(ep)
    for col, r in enumerate(ep.records):
        assert [data["labels"][k][col] for k in range(len(r.slot_concepts))] == [
            "" if c is None else words(c) for c in r.slot_concepts]
        assert np.allclose(data["writes"][:, col], np.max(r.write_weights, axis=0))


def test_surprise_plot_and_boundaries_follow_the_trace(full_run):
    out, _ = full_run
    ep = load_run(out).episodes[0]
    _, data = plots.plot_surprise(ep)
    assert np.allclose(data["surprise"], [r.surprise for r in ep.records])
    assert data["boundaries"] == [i for i, r in enumerate(ep.records) if r.boundary]
    assert all(r.boundary is not None for r in ep.records)  # the episodic memory reports every cycle


def test_long_term_graph_of_broadcast_triples(cli_run):
    ep = load_run(cli_run).episodes[0]
    _, data = plots.plot_long_term_graph(ep)
    expected = list(dict.fromkeys(tuple(c) for r in ep.records for c in r.winner_concepts))
    assert data["edges"] == expected
    assert data["graph"].number_of_edges() == len(expected)


def test_long_term_completions_read_the_memory_of_a_snapshot(full_run):
    out, agent = full_run
    run = load_run(out)
    snap = run.snapshot(1)
    assert "memories.long_term.matrix" in snap.tensors
    cues = list(dict.fromkeys((c[0], c[1]) for r in run.episodes[1].records for c in r.winner_concepts))[:6]
    completions = plots.long_term_completions(agent, snap, cues)
    assert [(s, p) for s, p, _, _ in completions] == cues
    _, data = plots.plot_long_term_graph(completions=completions)
    assert data["edges"] == [(s, p, o) for s, p, o, _ in completions]
    # its defining property on a memory holding exactly one fact: (s, p, ?) completes to that fact's object
    vocab = agent.index_layer.vocab
    ids = torch.tensor([[vocab.index("mary"), vocab.index("go"), vocab.index("kitchen")]])
    memory = next(m for m in agent.workspace.memories if m.source == "long_term")
    with torch.no_grad():
        state, _ = memory.receive(memory.initial_state(1), agent.index_layer.encode_triple(ids)[:, None])
    one = MemorySnapshot.of({"memories": {"long_term": state}})
    (s, p, o, prob), = plots.long_term_completions(agent, one, [("mary", "go")])
    assert o == "kitchen"
    with pytest.raises(ValueError, match="not concepts"):
        plots.long_term_completions(agent, one, [("mary", "flies")])


def test_pca_finds_a_grid_embedded_in_a_high_dimensional_space():
    grid = [(r, c) for r in range(4) for c in range(4)]
    names = [f"n{r}{c}" for r, c in grid]
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0][:, :2]  # a random 2-D plane in 16-D
    reps = np.array([basis @ np.array(p, float) for p in grid for _ in range(3)]) + rng.normal(0, 0.01, (48, 16))
    labels = [n for n in names for _ in range(3)]
    fig, data = plots.plot_pca(reps, labels, positions=dict(zip(names, grid)))
    assert data["concepts"] == names and data["coords"].shape == (16, 2)
    assert data["distance_correlation"] > 0.99 and sum(data["explained"]) > 0.99


def test_pca_along_a_graph_trace_episode():
    env = gym.make("cogarch/GraphTrace-v0", size=3, walk_length=30, warmup=10)
    agent = full_agent(env.unwrapped.vocab)
    reps, labels, info = plots.graph_trace_representations(agent, env, seed=0)
    assert reps.shape == (30, 32) and len(labels) == 30
    assert set(labels) <= set(info["words"]) and labels[0] == info["walk"][1]
    _, data = plots.plot_pca(reps, labels, info["positions"])
    assert data["concepts"] == list(dict.fromkeys(labels))
    means = np.stack([reps[[l == c for l in labels]].mean(0) for c in data["concepts"]])
    sv = np.linalg.svd(means - means.mean(0), compute_uv=False)
    assert np.allclose((data["coords"] ** 2).sum(0), sv[:2] ** 2, rtol=1e-4)  # the top two components
    assert data["distance_correlation"] is None or -1 <= data["distance_correlation"] <= 1


# ------------------------------------------------------------------------------------------------ anchors
def test_suppressing_the_supporting_fact_changes_the_answer_probability():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = load_agent("story_qa", vocab=env.unwrapped.vocab)
    base = replay(agent, env, 2)
    assert replay(agent, env, 2)["p_correct"] == base["p_correct"]  # replay is deterministic
    drops, hits = [], 0
    for seed in range(5):
        table = counterfactual_importance(agent, env, seed, reading_only=True)
        assert agent.suppress == set()  # restored after the replays
        assert table["rank"].tolist() == list(range(1, len(table) + 1))
        assert table["importance"].is_monotonic_decreasing
        assert (table.phase == 0).all() and len(table) == replay(agent, env, seed)["phases"].count(0)
        support = table[table.supporting]
        drops.append(float(support.importance.max()))
        hits += anchor_hit(table)
    # the cycle that read the answer's fact matters: without it the correct answer loses probability
    assert sum(d > 0.05 for d in drops) >= 4, drops
    assert hits >= 3


def test_importance_is_the_kl_of_the_answer_distributions_and_reports_the_probability_drop():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = load_agent("story_qa", vocab=env.unwrapped.vocab)
    base = replay(agent, env, 0)
    assert len(base["log_probs"]) == 1 and np.isclose(np.exp(base["log_probs"][0]).sum(), 1.0)
    table = counterfactual_importance(agent, env, 0, reading_only=True)
    assert table.attrs["measure"] == "kl" and (table.importance == table.kl).all()
    for row in table.head(3).itertuples():  # each row's figures are those of its own replay
        cf = replay(agent, env, 0, {(row.step, row.cycle)})
        assert row.p_correct == cf["p_correct"] and row.p_drop == base["p_correct"] - cf["p_correct"]
        p, q = np.exp(base["log_probs"][0]), np.exp(cf["log_probs"][0])
        assert np.isclose(row.kl, float(np.sum(p * np.log(p / q))))
    assert (table.kl >= -1e-12).all() and table.kl.iloc[0] > 0.1  # the supporting fact moves the answer
    by_p = counterfactual_importance(agent, env, 0, reading_only=True, measure="p_drop")
    assert (by_p.importance == by_p.p_drop).all() and by_p.importance.is_monotonic_decreasing
    assert anchor_hit(table, by="p_drop") == anchor_hit(by_p)
    with pytest.raises(ValueError, match="measure='kld' is not one of"):
        counterfactual_importance(agent, env, 0, measure="kld")
    with pytest.raises(ValueError, match="by='p' is not one of"):
        anchor_hit(table, by="p")


def test_answer_kl():
    a, b = np.log([0.7, 0.2, 0.1]), np.log([0.1, 0.2, 0.7])
    assert answer_kl([a], [a]) == 0.0
    assert np.isclose(answer_kl([a], [b]), 0.7 * np.log(7) + 0.1 * np.log(1 / 7))
    assert np.isclose(answer_kl([a, a], [b, a]), answer_kl([a], [b]) / 2)  # the mean over answering steps
    assert np.isnan(answer_kl([], []))
    with pytest.raises(ValueError, match="answered 1 and 2 times; KL compares"):
        answer_kl([a], [a, b])


def test_resamples_differ_from_the_fact_in_one_role_or_in_any():
    pool = [(1, 2, 3), (1, 2, 4), (5, 2, 3), (1, 6, 3), (5, 6, 3), (5, 6, 7), (1, 2, 3)]
    assert resamples((1, 2, 3), pool) == [(1, 2, 4), (5, 2, 3), (1, 6, 3)]
    assert resamples((1, 2, 3), pool, "any") == [(1, 2, 4), (5, 2, 3), (1, 6, 3), (5, 6, 3), (5, 6, 7)]
    assert resamples((9, 9, 9), pool) == []
    with pytest.raises(ValueError, match="resample='two' is not one of"):
        resamples((1, 2, 3), pool, "two")


def test_the_fact_pool_is_what_the_streams_show_while_reading():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    pool = fact_pool(env, episodes=20)
    vocab = env.unwrapped.vocab
    assert len(pool) == len(set(pool)) and pool == sorted(pool)
    assert {vocab[r] for _, r, _ in pool} == {"go"}  # task 1 reads moves only; its questions are not in the pool
    assert {vocab[s] for s, _, _ in pool} <= {"mary", "john", "daniel", "sandra"}
    with pytest.raises(ValueError, match="episodes=0 is out of range"):
        fact_pool(env, episodes=0)


def test_resampled_replays_in_one_batch_equal_single_replays():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = load_agent("story_qa", vocab=env.unwrapped.vocab)
    base = replay(agent, env, 3)
    t = base["supporting"][0]
    same, moved = replay_resampled(agent, env, 3, [{}, {t: base["fact_ids"][t]}]), None
    for cf in same:  # nothing replaced, or a fact replaced by itself: the episode as it was, in a batch of 2
        assert np.isclose(cf["p_correct"], base["p_correct"], atol=1e-5)
        assert np.allclose(cf["log_probs"][0], base["log_probs"][0], atol=1e-4)
    s, r, o = base["fact_ids"][t]
    other = next(x for _, _, x in fact_pool(env, episodes=20) if x != o)
    moved = replay_resampled(agent, env, 3, [{t: (s, r, other)}])[0]
    assert moved["p_correct"] < 0.5 < base["p_correct"]  # the person went elsewhere: the answer moves with them
    with pytest.raises(ValueError, match="is not a fact of this env's vocabulary"):
        replay_resampled(agent, env, 3, [{t: (s, r, 10_000)}])

    class Speaking:  # an agent that reads the text as well: a replaced fact would contradict it
        act_batch, env_map, language = None, None, object()

    with pytest.raises(ValueError, match="language module"):
        replay_resampled(Speaking(), env, 3, [{}])


def test_resampled_importance_is_the_kl_to_the_mean_over_the_resamples():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = load_agent("story_qa", vocab=env.unwrapped.vocab)
    pool = fact_pool(env, episodes=50)
    base = replay(agent, env, 0)
    table = counterfactual_importance(agent, env, 0, intervention="resample", pool=pool)
    assert table.attrs["intervention"] == "resample" and (table.cycle == -1).all()
    assert sorted(table.step) == [t for t, phase in enumerate(base["phases"]) if phase == 0]  # reading steps
    for row in table.head(3).itertuples():  # each row's figures are the mean over its own resamples
        alternatives = resamples(base["fact_ids"][row.step], pool)
        assert row.replays == len(alternatives) > 0
        cfs = replay_resampled(agent, env, 0, [{row.step: f} for f in alternatives])
        mixed = np.log(np.mean([np.exp(cf["log_probs"][0]) for cf in cfs], axis=0))
        assert np.isclose(row.p_correct, np.mean([cf["p_correct"] for cf in cfs]), atol=1e-6)
        assert np.isclose(row.kl, answer_kl(base["log_probs"], [mixed]), rtol=1e-4, atol=1e-6)
    hits = 0
    for seed in range(5):  # the person's last move matters most: every resample of it moves the answer
        ranked = counterfactual_importance(agent, env, seed, intervention="resample", pool=pool)
        hits += anchor_hit(ranked)
    assert hits >= 4
    with pytest.raises(ValueError, match="intervention='delete' is not one of"):
        counterfactual_importance(agent, env, 0, intervention="delete")
    with pytest.raises(ValueError, match="resample='all' is not one of"):
        counterfactual_importance(agent, env, 0, intervention="resample", resample="all")


def test_replay_refuses_an_agent_without_suppress():
    env = gym.make("cogarch/StoryQA-v0", task=1)
    with pytest.raises(TypeError, match="suppress"):
        replay(object(), env, 0)


# ------------------------------------------------------------------------------------------------ report
def test_view_writes_a_self_contained_report_with_the_tables(cli_run):
    res = cogarch("view", str(cli_run), "--episodes", "2")
    report = cli_run / "report.html"
    assert str(report) in res.stdout
    html = report.read_text()
    run = load_run(cli_run)
    assert html.count("<table") >= 6 and "Summary" in html and "success_rate" in html
    assert html.count("data:image/png;base64,") == 8  # 4 plots x 2 episodes
    for e in run.episodes:  # the episodes table
        assert f"<td>{e.index}</td><td>{e.seed}</td><td>{e.steps}</td>" in html
    assert words(run.episodes[0].records[0].winner_concepts[0]) in html
    assert "src=\"http" not in html and "<script" not in html  # nothing to fetch, no server


def test_a_run_of_a_third_party_env_without_discrete_actions_loads(tmp_path):
    """Pendulum's vector actions are not traced (the action is None, left out of each line): the run still loads."""
    from agents.baselines import RandomAgent

    env = gym.make("Pendulum-v1")
    agent = RandomAgent(action_space=env.action_space, observation_space=env.observation_space, seed=0)
    run_episodes(env, agent, 1, 0, tmp_path, progress=False)
    assert '"action"' not in (tmp_path / "trace.jsonl").read_text()
    run = load_run(tmp_path)
    assert len(run.records) == 200 and {r.action for r in run.records} == {None}
    assert len(run.to_dataframe()) == 200


def test_report_of_a_baseline_run_says_what_it_cannot_plot(tmp_path):
    env = gym.make("cogarch/StoryQA-v0", task=1)
    from agents.baselines import RandomAgent

    agent = RandomAgent(action_space=env.action_space, observation_space=env.observation_space, seed=0)
    run_episodes(env, agent, 1, 0, tmp_path, progress=False, snapshots=True)
    assert not (tmp_path / "snapshots").exists()  # a baseline has no workspace state
    html = render(load_run(tmp_path))
    assert "no candidates" in html and "<table" in html


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(cli_run, tmp_path):
    report = write_report(cli_run, tmp_path / "report.html", episodes=1)
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    report.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    assert img[..., :3].std() > 0.05  # not a blank page: tables and plots were drawn


def test_task2_agent_puts_a_supporting_fact_first():
    """The agent shipped for StoryQA task 2: every ranking's top reading cycles hold a supporting fact (the
    person's location); benchmarks/bench_anchors.py measures how often both supporting facts lead."""
    env = gym.make("cogarch/StoryQA-v0", task=2)
    agent = load_agent("story_qa_task2", vocab=env.unwrapped.vocab)
    agent.trace_cycles = False  # replay turns the records it reads back on, and restores the setting
    for seed in range(4):
        table = counterfactual_importance(agent, env, seed, reading_only=True)
        assert table.attrs["base_correct"]
        assert table.iloc[0].supporting and table.iloc[0].importance > 0.5
    assert agent.trace_cycles is False


def _bench_anchors():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_anchors.py"
    spec = importlib.util.spec_from_file_location("bench_anchors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_anchor_ceiling_rereads_stories_as_the_generator_does():
    """The bench's ceiling re-reads a story by the generator's rules: its answers equal the env's on tasks 1 and
    2 (read_story raises otherwise), and a drop after a get in the same room is not necessary."""
    bench = _bench_anchors()
    story = [("john", "get", "football"), ("john", "go", "kitchen"), ("john", "drop", "football")]
    assert bench.story_answer(story, "football") == "kitchen"
    assert bench.story_answer(story[:2], "football") == "kitchen"  # the drop is redundant
    assert bench.story_answer(story[::2], "football") is None  # the move is not
    assert bench.story_answer(story + [("john", "go", "office")], "football") == "kitchen"
    assert bench.story_answer(story[:2] + [("john", "go", "office")], "football") == "office"
    for task in (1, 2):
        env = gym.make("cogarch/StoryQA-v0", task=task)
        necessary = [bench.each_support_necessary(bench.read_story(env, seed)) for seed in range(60)]
        assert 0 < sum(necessary) < 60 if task == 2 else all(necessary)
        # resampling sees what leaving out cannot: for the rules' reader every supporting fact ranks on top
        pool = fact_pool(env, episodes=100)
        assert all(bench.rules_resample_hit(bench.read_story(env, seed), env.unwrapped.vocab, pool)
                   for seed in range(20))


def test_wilson_interval_of_the_anchor_fraction():
    """The bench's 95% interval: Wilson's closed forms at 0 and n hits, symmetric about one half, around the
    fraction, narrowing as the episodes grow; bad counts are refused."""
    bench = _bench_anchors()
    z2 = 1.96**2
    assert bench.wilson_interval(0, 50) == (0.0, pytest.approx(z2 / (50 + z2)))
    assert bench.wilson_interval(50, 50) == (pytest.approx(50 / (50 + z2)), 1.0)
    lo, hi = bench.wilson_interval(32, 50)
    assert lo < 0.64 < hi and (lo, hi) == pytest.approx((1 - bench.wilson_interval(18, 50)[1],
                                                         1 - bench.wilson_interval(18, 50)[0]))
    assert hi - lo > bench.wilson_interval(128, 200)[1] - bench.wilson_interval(128, 200)[0]
    for hits, n in ((-1, 5), (6, 5), (0, 0)):
        with pytest.raises(ValueError, match="hits"):
            bench.wilson_interval(hits, n)


def test_chance_hit_is_the_share_of_random_rankings_with_every_supporting_cycle_on_top():
    from itertools import permutations

    from cogarch.inspect.anchors import chance_hit

    for rows, supporting, m in [(5, 2, 2), (5, 2, 3), (6, 3, 4), (4, 1, 1), (4, 2, 1), (3, 2, 5)]:
        rankings = list(permutations(range(rows)))  # the supporting cycles are 0 .. supporting - 1
        share = sum(set(range(supporting)) <= set(r[:m]) for r in rankings) / len(rankings)
        assert chance_hit(rows, supporting, m) == pytest.approx(share)
    with pytest.raises(ValueError, match="supporting=3"):
        chance_hit(2, 3, 2)
