"""The transformer baseline: teacher-forced equals step by step (one window and sliding windows), causality,
parameter matching, save/load, acting through the run loop, and that a few Adam steps lower the answer loss."""

import pytest
import torch

from agents.data import VocabMap, collect_episode, make_batch
from agents.learned import answer_loss
from agents.transformer import TransformerAgent, count_parameters
from cogarch.runner import run_episodes
from environments.story_qa import StoryQAEnv


@pytest.fixture(scope="module")
def env():
    return StoryQAEnv()


@pytest.fixture(scope="module")
def batch(env):
    vocab = env.unwrapped.vocab
    vmap = VocabMap(vocab, vocab)
    episodes = [collect_episode(env, seed, vmap) for seed in (0, 1)]  # 8 and 7 steps: one row is padded
    assert len({len(e.phase) for e in episodes}) == 2
    return make_batch(episodes, len(vocab))


def agent_for(env, **kw):
    return TransformerAgent(vocab=env.unwrapped.vocab, dim=16, layers=2, heads=2, **kw)


def stepwise(agent, batch):
    B, T = batch.phase.shape
    state, out = agent.initial_state(batch_size=B), []
    for t in range(T):
        logits, state, records = agent.step_logits(state, batch.facts[:, t], batch.phase[:, t])
        assert [r.step for r in records] == [t] * B and len(records[0].action_logits) == len(agent.vocab)
        assert state.facts.shape[1] == min(t + 1, agent.max_context)  # constant memory once the window is full
        out.append(logits)
    return torch.stack(out, 1)  # (B, T, V)


@pytest.mark.parametrize("max_context", [512, 3])  # one pass; T > max_context (sliding windows)
def test_episode_logits_equal_step_by_step(env, batch, max_context, monkeypatch):
    monkeypatch.setattr("agents.transformer.WINDOW_CHUNK", 2)  # several chunks of windows
    agent = agent_for(env, max_context=max_context)
    with torch.no_grad():
        whole, aux = agent.episode_logits(batch)
        steps = stepwise(agent, batch)
    assert whole.shape == (*batch.phase.shape, len(agent.vocab)) and float(aux) == 0.0
    mask = batch.mask
    torch.testing.assert_close(whole[mask], steps[mask], rtol=1e-5, atol=1e-5)


def test_sliding_window_forgets_what_left_it(env, batch):
    agent = agent_for(env, max_context=3)
    changed = batch._replace(facts=batch.facts.clone())
    changed.facts[:, 0] = 5  # the first fact leaves the window at step 3
    with torch.no_grad():
        a, _ = agent.episode_logits(batch)
        b, _ = agent.episode_logits(changed)
    assert not torch.allclose(a[:, :3], b[:, :3])
    torch.testing.assert_close(a[:, 3:], b[:, 3:])


def test_causal(env, batch):
    agent = agent_for(env)
    t = 4
    changed = batch._replace(facts=batch.facts.clone(), phase=batch.phase.clone())
    changed.facts[:, t] = torch.tensor([7, 8, 9])
    changed.phase[:, t] = 1 - changed.phase[:, t]
    with torch.no_grad():
        a, _ = agent.episode_logits(batch)
        b, _ = agent.episode_logits(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t:], b[:, t:])


@pytest.mark.parametrize("target", [50_000, 150_000])  # dims step by heads: small targets are coarse
def test_target_parameters(env, target):
    agent = TransformerAgent(vocab=env.unwrapped.vocab, layers=2, heads=4, target_parameters=target)
    assert agent.dim % 4 == 0 and agent.dim >= 4
    assert agent.num_parameters() == count_parameters(len(agent.vocab), agent.dim, 2, 4)
    assert abs(agent.num_parameters() - target) <= 0.1 * target
    for other in (agent.dim - 4, agent.dim + 4):  # no neighbouring dim is closer
        if other >= 4:
            assert abs(count_parameters(len(agent.vocab), other, 2, 4) - target) >= abs(agent.num_parameters() - target)


def test_seeded_initial_weights(env):
    a, b, c = agent_for(env, seed=3), agent_for(env, seed=3), agent_for(env, seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in x.model.parameters()]) for x in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_save_load_round_trip(env, batch, tmp_path):
    agent = agent_for(env, seed=1)
    agent.save(tmp_path / "ckpt")
    loaded = agent_for(env, seed=2, checkpoint=tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(agent.episode_logits(batch)[0], loaded.episode_logits(batch)[0], rtol=0, atol=0)
    wider = TransformerAgent(vocab=env.unwrapped.vocab, dim=32, layers=2, heads=2)
    with pytest.raises(ValueError, match=r"concept\.weight.*\(96, 16\) vs model \(96, 32\)"):
        wider.load(tmp_path / "ckpt")


def test_acts_through_run_loop(env):
    agent = agent_for(env)
    summary = run_episodes(env, agent, episodes=2, seed=0, out_dir=None, progress=False)
    assert summary["episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0


@pytest.mark.parametrize("max_context", [512, 3])
def test_adam_lowers_answer_loss(env, batch, max_context):
    agent = agent_for(env, max_context=max_context)
    opt = torch.optim.Adam(agent.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits, aux = agent.episode_logits(batch)
        loss = answer_loss(logits, batch)[0] + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_needs_a_vocabulary():
    with pytest.raises(ValueError, match="fact-stream env"):
        TransformerAgent(vocab=None)
