"""Train -> checkpoint -> eval on tiny settings, through the CLI as a user types it; the workspace agent's
contracts (teacher-forced equals step by step; ablations compose); checkpoints are data, not code."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from agents.checkpoint import check_targets, load_agent
from agents.data import VocabMap, collect_episode, make_batch
from environments.graph_search import GraphSearchEnv
from environments.story_qa import StoryQAEnv

TINY = ["dim=16", "train.batch_size=4", "train.log_every=1", "progress=false"]


def cogarch(*args):
    res = subprocess.run([sys.executable, "-m", "cogarch.cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"cogarch {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def workspace_agent(*overrides, vocab):
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="run", overrides=["agent=workspace", "dim=16", *overrides])
    torch.manual_seed(0)
    return instantiate(cfg.agent, vocab=vocab)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    out = cogarch("train", "env=story_qa", "agent=workspace", *TINY, "train.updates=4", "train.checkpoint_every=2",
                  "eval_episodes=5", f"hydra.run.dir={run}")
    return run, out


def test_train_writes_checkpoint_log_and_config(trained):
    run, out = trained
    assert (run / "checkpoint" / "model.safetensors").is_file() and (run / "checkpoint" / "optimizer.safetensors").is_file()
    assert json.loads((run / "checkpoint" / "state.json").read_text())["update"] == 4
    log = pd.read_csv(run / "train.csv")
    assert list(log["update"]) == [1, 2, 3, 4] and log["loss"].notna().all()
    assert "agents.workspace.WorkspaceAgent" in (run / "config.yaml").read_text()
    assert "parameters" in out and "| story_qa | workspace" in out


def test_a_refused_resume_leaves_the_training_folder_as_it_was(trained, tmp_path):
    """Resuming a workspace run as a transformer is refused before config.yaml is rewritten, so the folder still
    loads as the workspace agent it holds."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    before = (run / "config.yaml").read_text()
    res = subprocess.run([sys.executable, "-m", "cogarch.cli", "train", "env=story_qa", "agent=transformer", *TINY,
                          "train.updates=5", f"hydra.run.dir={run}"], capture_output=True, text=True)
    assert res.returncode != 0 and "train.resume=true: the run in" in res.stderr and "agent=" in res.stderr
    assert (run / "config.yaml").read_text() == before
    assert type(load_agent(str(run), vocab=StoryQAEnv().vocab)).__name__ == "WorkspaceAgent"


@pytest.mark.parametrize("setting,message", [("train.max_minutes=0", "max_minutes=0 is out of range"),
                                             ("eval_episodes=-1", "eval_episodes=-1 is out of range")])
def test_out_of_range_training_settings_are_refused_before_training(setting, message, tmp_path):
    res = subprocess.run([sys.executable, "-m", "cogarch.cli", "train", "env=graph_search", "agent=transformer", *TINY,
                          "train.updates=2", setting, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert res.returncode != 0 and message in res.stderr
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "train.csv").exists()


@pytest.mark.parametrize("agent", ["random", "oracle", "pretrained"])
def test_an_agent_that_cannot_learn_is_refused_by_name(agent, tmp_path):
    res = subprocess.run([sys.executable, "-m", "cogarch.cli", "train", "env=story_qa", f"agent={agent}", *TINY,
                          "train.updates=1", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert res.returncode != 0
    assert f"agent='{agent}' cannot be trained; allowed: workspace, transformer" in res.stderr, res.stderr
    assert not (tmp_path / "checkpoint").exists()


def test_resumed_training_ends_at_the_same_weights(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cogarch("train", "env=graph_search", "agent=transformer", *TINY, "train.updates=4", "eval_episodes=0",
            f"hydra.run.dir={straight}")
    cogarch("train", "env=graph_search", "agent=transformer", *TINY, "train.updates=2", "eval_episodes=0",
            f"hydra.run.dir={resumed}")
    cogarch("train", "env=graph_search", "agent=transformer", *TINY, "train.updates=4", "eval_episodes=0",
            f"hydra.run.dir={resumed}")
    from safetensors.torch import load_file

    a = load_file(straight / "checkpoint" / "model.safetensors")
    b = load_file(resumed / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(pd.read_csv(resumed / "train.csv")["update"]) == [1, 2, 3, 4]


def test_eval_tables_plots_and_exact_reproduction(trained, tmp_path):
    run, _ = trained
    results = []
    for name in ("a", "b"):  # two fresh processes, same seeds: the same figures
        out = tmp_path / name
        cogarch("eval", "env=story_qa", f"runs=[{run}]", "labels=[ws]", "baselines=[random,oracle]", "episodes=6",
                "sweep.key=task", "sweep.values=[1,2]", "dim=16", "progress=false", f"hydra.run.dir={out}")
        df = pd.read_csv(out / "results.csv")
        assert set(df["agent"]) == {"ws", "random", "oracle"} and sorted(set(df["task"])) == [1, 2]
        assert (df[df.agent == "oracle"]["success_rate"] == 1.0).all()
        assert (out / "success_rate_vs_task.png").stat().st_size > 1000
        assert "| ws |" in (out / "results.md").read_text()
        results.append(df.drop(columns=["steps_per_s", "wall_s"]))
    pd.testing.assert_frame_equal(results[0], results[1])


def test_eval_sweep_key_and_values_come_together(tmp_path):
    for args, message in ((["sweep.key=num_vertices"], "sweep.key=num_vertices needs sweep.values"),
                          (["sweep.values=[10,20]"], "sweep.values=[10, 20] needs sweep.key")):
        res = subprocess.run([sys.executable, "-m", "cogarch.cli", "eval", "env=graph_search", "baselines=[random]",
                              *args, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
        assert res.returncode != 0 and message in res.stderr


def test_run_plays_a_checkpoint(trained, tmp_path):
    run, _ = trained
    out = cogarch("run", "env=story_qa", "agent=pretrained", f"agent.path={run}", "episodes=3", "progress=false",
                  f"hydra.run.dir={tmp_path}")
    assert "trace.jsonl" in out
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert trace and "winner_concepts" in trace[0] and "slot_concepts" in trace[0]


def test_checkpoint_config_targets_are_restricted(trained, tmp_path):
    run, _ = trained
    with pytest.raises(ValueError, match="os.system"):
        check_targets({"agent": {"_target_": "agents.workspace.WorkspaceAgent", "x": {"_target_": "os.system"}}}, "cfg")
    bad = tmp_path / "bad"
    (bad / "checkpoint").mkdir(parents=True)
    (bad / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "_target_: agents.workspace.WorkspaceAgent", "_target_: os.system"))
    (bad / "checkpoint" / "model.safetensors").write_bytes((run / "checkpoint" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="os.system"):
        load_agent(bad)


def test_corrupt_checkpoint_names_the_file(trained, tmp_path):
    run, _ = trained
    broken = tmp_path / "broken"
    (broken / "checkpoint").mkdir(parents=True)
    (broken / "config.yaml").write_text((run / "config.yaml").read_text())
    data = (run / "checkpoint" / "model.safetensors").read_bytes()
    (broken / "checkpoint" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_agent(broken)


@pytest.mark.parametrize("overrides", [[], ["agent.answer_cycles=3"],
                                       ["cogarch/long_term@agent.long_term=spreading", "agent.memory_cue=sensory"],
                                       ["cogarch/relational@agent.relational=relation_network"],
                                       ["agent.efference=true"]])
def test_workspace_agent_teacher_forced_equals_step_by_step(overrides):
    """The batch's rows are at different phases at some steps: with answer_cycles, the asking rows think on
    while the others keep their state, so every row still equals its own run at batch 1."""
    env = StoryQAEnv(task=2)
    agent = workspace_agent(*overrides, vocab=env.vocab)
    vmap = VocabMap(agent.vocab, env.vocab)
    batch = make_batch([collect_episode(env, s, vmap) for s in (0, 1)], len(agent.vocab))
    assert (batch.answering[0] != batch.answering[1]).any()  # some step asks in one row only
    with torch.no_grad():
        whole, _ = agent.episode_logits(batch)
        for b in range(2):
            state = agent.initial_state()
            for t in range(int(batch.mask[b].sum())):
                logits, state, _ = agent.step_logits(state, batch.facts[b : b + 1, t], batch.phase[b : b + 1, t],
                                                     trace=False)
                torch.testing.assert_close(logits[0], whole[b, t], rtol=1e-4, atol=1e-5)


def test_a_memory_is_added_beside_the_four_parts_by_name():
    """``+cogarch/<group>@agent.extra_memories.<name>=<option>`` composes one more memory into the workspace (here a
    second episodic memory with another source name would clash, so the part it replaces is left out)."""
    env = StoryQAEnv(task=1)
    agent = workspace_agent("cogarch/episodic@agent.episodic=none", "cogarch/long_term@agent.long_term=none",
                            "+cogarch/long_term@agent.extra_memories.store=outer_product", vocab=env.vocab)
    assert [m.source for m in agent.workspace.memories] == ["working", "long_term"]
    obs, info = env.reset(seed=0)
    _, _, records = agent.act(obs, agent.initial_state(), info)
    assert "long_term" in {c["source"] for c in records[0].candidates}


def test_answer_cycles_think_longer_only_where_a_question_is_asked():
    env = StoryQAEnv(task=2)
    agent = workspace_agent("agent.answer_cycles=3", vocab=env.vocab)
    vmap = VocabMap(agent.vocab, env.vocab)
    batch = make_batch([collect_episode(env, s, vmap) for s in (0, 1)], len(agent.vocab))
    t = int((batch.answering[0] != batch.answering[1]).nonzero()[0])  # one row asks, the other reads
    with torch.no_grad():
        state = agent.initial_state(batch_size=2)
        for u in range(t + 1):
            _, state, records = agent.step_logits(state, batch.facts[:, u], batch.phase[:, u])
    cycles = [sum(r.step == t and r.cycle == c for r in records) for c in range(3)]
    assert cycles == [2, 1, 1]  # both rows take cycle 0; only the asking row takes cycles 1 and 2
    with pytest.raises(InstantiationException, match="answer_cycles=0 is out of range"):
        workspace_agent("agent.answer_cycles=0", vocab=env.vocab)


@pytest.mark.parametrize("overrides", [
    ["cogarch/long_term@agent.long_term=none"], ["cogarch/long_term@agent.long_term=neural"],
    ["cogarch/long_term@agent.long_term=spreading", "agent.memory_cue=sensory"],
    ["cogarch/episodic@agent.episodic=none"], ["cogarch/working@agent.working=none"],
    ["cogarch/bottleneck@agent.bottleneck=all"], ["agent.cycles_per_step=1"],
    ["cogarch/relational@agent.relational=relation_network"],
])
def test_ablations_compose_and_train_one_step(overrides):
    env = GraphSearchEnv(num_vertices=8)
    agent = workspace_agent(*overrides, vocab=env.vocab)
    vmap = VocabMap(agent.vocab, env.vocab)
    batch = make_batch([collect_episode(env, s, vmap) for s in range(3)], len(agent.vocab))
    logits, aux = agent.episode_logits(batch)
    (logits.logsumexp(-1).mean() + aux).backward()
    grads = [p.grad for p in agent.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_vocabulary_maps_by_name():
    big, small = GraphSearchEnv(num_vertices=20), GraphSearchEnv(num_vertices=8)
    vmap = VocabMap(big.vocab, small.vocab)
    assert [big.vocab[i] for i in vmap.to_agent] == list(small.vocab)
    with pytest.raises(ValueError, match="does not know"):
        VocabMap(small.vocab, big.vocab)


def test_experiment_trains_every_agent_matches_parameters_and_evaluates(tmp_path):
    out = cogarch("experiment", "experiment=scene_graph_qa", "train.updates=2", "train.batch_size=2",
                  "episodes=2", "dim=32", "progress=false", f"hydra.run.dir={tmp_path}")
    df = pd.read_csv(tmp_path / "eval" / "results.csv")
    assert set(df["agent"]) == {"workspace", "transformer", "random", "oracle"} and sorted(set(df["hops"])) == [1, 2, 3]
    params = df.groupby("agent")["parameters"].first()
    assert abs(params["transformer"] - params["workspace"]) <= 0.15 * params["workspace"]  # matched sizes
    assert (tmp_path / "train_workspace" / "checkpoint" / "model.safetensors").is_file()
    assert "== evaluating" in out


def test_experiment_agents_may_set_their_own_env_and_train_options(tmp_path):
    """configs/experiment/story_qa_per_task.yaml: one agent per task, each trained on its own family."""
    keep = ["task1", "task3"]
    drop = [f"~agents.task{t}" for t in (2, 4, 6, 7, 8, 9, 11, 15, 16, 17, 18, 19)]
    task3 = '"agent=workspace","cogarch/long_term@agent.long_term=none","env.task=3","seed=5","dim=8"'
    cogarch("experiment", "experiment=story_qa_per_task", *drop, f"agents.task3=[{task3}]", "train.updates=2",
            "train.batch_size=2", "train.max_minutes=1", "episodes=2", "dim=16", "num_envs=2", "sweep.values=[1,3]",
            "progress=false", f"hydra.run.dir={tmp_path}")
    from omegaconf import OmegaConf

    configs = {k: OmegaConf.load(tmp_path / f"train_{k}" / "config.yaml") for k in keep}
    assert {k: (c.env.task, c.seed, c.dim) for k, c in configs.items()} == {"task1": (1, 0, 16), "task3": (3, 5, 8)}
    df = pd.read_csv(tmp_path / "eval" / "results.csv")
    assert sorted(zip(df["agent"], df["task"])) == [("task1", 1), ("task1", 3), ("task3", 1), ("task3", 3)]


def test_a_non_finite_loss_stops_training_before_the_step_and_the_checkpoint(tmp_path):
    from agents.train import train
    from agents.transformer import TransformerAgent

    env = GraphSearchEnv(num_vertices=8)
    agent = TransformerAgent(vocab=env.vocab, dim=16, layers=1, heads=2)
    before = {k: v.clone() for k, v in agent.model.state_dict().items()}
    whole = agent.episode_logits
    agent.episode_logits = lambda batch: (whole(batch)[0] * float("nan"), torch.zeros(()))
    with pytest.raises(FloatingPointError, match="update 1"):
        train(agent, [env], tmp_path, updates=3, batch_size=2, checkpoint_every=1, progress=False)
    assert not (tmp_path / "checkpoint").exists()
    assert all(torch.equal(before[k], v) for k, v in agent.model.state_dict().items())


def test_cosine_schedule_lowers_the_rate_by_update_and_bad_names_are_refused(tmp_path):
    cogarch("train", "env=graph_search", "agent=transformer", *TINY, "train.updates=4", "train.log_every=1",
            "train.lr_schedule=cosine", "eval_episodes=0", f"hydra.run.dir={tmp_path / 'cos'}")
    lrs = list(pd.read_csv(tmp_path / "cos" / "train.csv")["lr"])
    assert lrs == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * u / 4)) for u in range(4)])
    bad = subprocess.run([sys.executable, "-m", "cogarch.cli", "train", "env=graph_search", "agent=transformer",
                          *TINY, "train.lr_schedule=linear", f"hydra.run.dir={tmp_path / 'bad'}"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "lr_schedule='linear' is not one of" in bad.stderr


def test_stable_decay_holds_the_rate_then_lowers_it_over_the_last_fraction_of_the_budget(tmp_path):
    from agents.train import _schedule_scale, train
    from agents.transformer import TransformerAgent

    cogarch("train", "env=graph_search", "agent=transformer", *TINY, "train.updates=10", "train.log_every=1",
            "train.lr_schedule=stable_decay", "train.decay_fraction=0.5", "eval_episodes=0",
            f"hydra.run.dir={tmp_path / 'sd'}")
    lrs = list(pd.read_csv(tmp_path / "sd" / "train.csv")["lr"])  # by updates: the time budget is far off
    assert lrs == pytest.approx([1e-3 * min(1.0, (1 - u / 10) / 0.5) for u in range(10)])
    # by time: 90% of a one-minute budget spent at update 10 of 1,000 is half-way down a decay over the last 20%
    assert _schedule_scale("stable_decay", 10, 1000, 0.2, elapsed=54.0, max_minutes=1.0) == pytest.approx(0.5)
    assert _schedule_scale("stable_decay", 10, 1000, 0.2, elapsed=54.0, max_minutes=None) == 1.0
    assert _schedule_scale("stable_decay", 10, 1000, 0.2, elapsed=61.0, max_minutes=1.0) == 0.0
    env = GraphSearchEnv(num_vertices=8)
    agent = TransformerAgent(vocab=env.vocab, dim=16, layers=1, heads=2)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"decay_fraction={bad} is out of range"):
            train(agent, [env], tmp_path / "bad", updates=2, lr_schedule="stable_decay", decay_fraction=bad)


def test_a_training_killed_mid_way_resumes_to_the_same_final_checkpoint(tmp_path):
    """SIGKILL at any moment, checkpoint writes included: the rerun resumes from the last complete checkpoint,
    trains the lost updates again and ends at the weights of an uninterrupted run; train.csv has each update once."""
    import signal
    import time

    args = ["train", "env=graph_search", "agent=transformer", *TINY, "train.updates=60", "train.checkpoint_every=7",
            "eval_episodes=0"]
    cogarch(*args, f"hydra.run.dir={tmp_path / 'straight'}")
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cogarch.cli", *args, f"hydra.run.dir={run}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, deadline = run / "checkpoint" / "state.json", time.time() + 120
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text() or "{}").get("update", 0) >= 14):
        time.sleep(0.01)
    time.sleep(0.05)  # (often lands inside a later checkpoint write or between checkpoints)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the training ended before it could be killed"
    cogarch(*args, f"hydra.run.dir={run}")
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "checkpoint" / "model.safetensors")
    b = load_file(run / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(pd.read_csv(run / "train.csv")["update"]) == list(range(1, 61))


def test_a_checkpoint_write_cut_short_leaves_the_previous_checkpoint(tmp_path):
    from agents.train import recover_checkpoint

    ckpt = tmp_path / "checkpoint"
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "state.json").write_text('{"update": 7}')
    (tmp_path / "checkpoint.tmp").mkdir()  # the new one, half written: no state.json
    recover_checkpoint(ckpt)
    assert json.loads((ckpt / "state.json").read_text()) == {"update": 7}


def test_a_run_resumed_after_its_budget_was_spent_trains_nothing_and_reports_its_last_row(tmp_path):
    from agents.train import train
    from agents.transformer import TransformerAgent

    env = GraphSearchEnv(num_vertices=8)
    make = lambda: TransformerAgent(vocab=env.vocab, dim=16, layers=1, heads=2)
    kw = dict(batch_size=2, log_every=1, checkpoint_every=1, progress=False)
    first = train(make(), [env], tmp_path / "updates", updates=3, **kw)
    again = train(make(), [env], tmp_path / "updates", updates=3, **kw)
    assert not first["already_done"] and again["already_done"]
    assert again["updates_done"] == 3 and again["last"] == first["last"]  # read back from train.csv
    # the time budget: the first update overruns a budget of ~0 minutes, and a resumed run with the same
    # budget does not train one more update
    spent = [train(make(), [env], tmp_path / "minutes", updates=50, max_minutes=1e-9, **kw) for _ in range(2)]
    assert [r["updates_done"] for r in spent] == [1, 1] and [r["already_done"] for r in spent] == [False, True]
    assert list(pd.read_csv(tmp_path / "minutes" / "train.csv")["update"]) == [1]
    longer = train(make(), [env], tmp_path / "minutes", updates=2, max_minutes=10, **kw)  # a larger budget trains on
    assert longer["updates_done"] == 2 and not longer["already_done"]


def test_a_reused_run_folder_says_its_training_is_already_done(trained, tmp_path):
    import shutil

    run = shutil.copytree(trained[0], tmp_path / "run")
    out = cogarch("train", "env=story_qa", "agent=workspace", *TINY, "train.updates=4", "eval_episodes=0",
                  f"hydra.run.dir={run}")
    assert "already holds a finished training run (update 4" in out and "last: {}" not in out


def test_the_semantic_decoding_loss_makes_perceived_facts_decode_into_their_own_triples():
    """agent.decode_loss: the loss is the teacher-forced decoding cross-entropy of each perceived fact, it enters
    the auxiliary loss with its weight, and minimising it makes decode_triple return the facts perceived."""
    env = StoryQAEnv(task=2)
    agent = workspace_agent("agent.decode_loss=2.0", vocab=env.vocab)
    vmap = VocabMap(agent.vocab, env.vocab)
    batch = make_batch([collect_episode(env, s, vmap) for s in range(4)], len(agent.vocab))
    B, T = batch.mask.shape
    steps = torch.arange(T).expand(B, T).reshape(-1)
    facts = batch.facts.reshape(B * T, 3)
    valid = batch.mask.reshape(-1)

    def items():
        return agent.model.perception({"fact": facts, "step": steps})[:, 0]

    def decoded_right():
        with torch.no_grad():
            ids, _ = agent.index_layer.decode_triple(items())
        return (ids == facts).all(-1)[valid].float().mean().item()

    with torch.no_grad():
        _, aux_with = agent.episode_logits(batch)
        agent.decode_loss = 0.0
        _, aux_without = agent.episode_logits(batch)
        agent.decode_loss = 2.0
        per_item = agent.semantic_decoding_loss(items(), facts)
    torch.testing.assert_close(aux_with - aux_without, 2.0 * per_item[valid].mean())
    before = decoded_right()
    assert before < 0.9  # dim 16: random embeddings decode many facts wrongly
    opt = torch.optim.Adam(agent.index_layer.parameters(), lr=0.05)
    for _ in range(100):
        loss = agent.semantic_decoding_loss(items(), facts)[valid].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert decoded_right() == 1.0, before


def test_the_efference_copy_is_the_last_answer_perceived_at_the_next_step():
    """agent.efference: the answer of a step is a sensory item of the next (masked while reading); teacher forcing
    feeds the oracle's answers, acting feeds the action taken, and both give the same logits for the same answers."""
    from environments.scene_graph_qa import SceneGraphQAEnv

    env = SceneGraphQAEnv(hops=3, p_verify=0.0)
    agent = workspace_agent("agent.efference=true", vocab=env.vocab)
    vmap = VocabMap(agent.vocab, env.vocab)
    batch = make_batch([collect_episode(env, s, vmap) for s in (0, 1)], len(agent.vocab))
    with torch.no_grad():
        whole, _ = agent.episode_logits(batch)
        for b in range(2):
            state, n = agent.initial_state(), int(batch.mask[b].sum())
            for t in range(n):
                logits, state, records = agent.step_logits(state, batch.facts[b : b + 1, t], batch.phase[b : b + 1, t])
                torch.testing.assert_close(logits[0], whole[b, t], rtol=1e-4, atol=1e-5)
                asked = bool(batch.phase[b, t] == 1)
                assert int(state.last_action[0]) == (int(logits[0, 2:].argmax()) + 2 if asked else 0)
                state = state._replace(last_action=torch.where(batch.phase[b : b + 1, t] == 1, batch.target[b : b + 1, t], 0))
    # acting: the efference copy is the action taken; the next cycle has a second sensory candidate, valid after
    # an answer and masked after a reading step
    obs, info = env.reset(seed=0)
    state, done, asked_before, sensory_items = agent.initial_state(), False, [False], []
    while not done:
        action, state, records = agent.act(obs, state, info)
        asked = int(obs["phase"]) == 1
        assert int(state.last_action[0]) == (agent.env_map.to_agent[action] if asked else 0)
        sensory_items.append(sum(c["source"] == "sensory" and c["score"] is not None for c in records[0].candidates))
        asked_before.append(asked)
        obs, _, done, _, info = env.step(action)
    assert sensory_items == [1 + a for a in asked_before[:-1]]  # the said item counts only after an answer
    assert sum(asked_before) == 3  # three hops answered
