"""Consciousness-prior bottleneck: k winners, gradients to the scores, k = all is full attention."""

import pytest
import torch

from cogarch.bottleneck import Bottleneck


def make(k, dim=16, **kw):
    torch.manual_seed(0)
    return Bottleneck(dim, k=k, **kw)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_exactly_k_winners_are_the_top_scores(k):
    b = make(k)
    cands = torch.randn(5, 10, 16)
    out = b(torch.randn(5, 16), cands)
    assert out.winners.shape == (5, k) and out.winner_mask.all()
    assert torch.equal(out.winners, out.scores.topk(k, dim=-1).indices)
    assert torch.allclose(out.weights.sum(-1), torch.ones(5))
    assert all(len(set(row.tolist())) == k for row in out.winners)


def test_masked_candidates_never_win_and_rows_without_candidates_get_zero_weight():
    b = make(3)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [1, 4]] = True  # two valid candidates for a k of 3
    out = b(torch.randn(2, 16), torch.randn(2, 6, 16), mask)
    assert set(out.winners[0, out.winner_mask[0]].tolist()) == {1, 4}
    assert out.winner_mask[0].sum() == 2 and not out.winner_mask[1].any()
    assert torch.allclose(out.weights[1], torch.zeros(3)) and torch.isfinite(out.summary).all()


def test_gradients_reach_the_scores():
    b = make(2)
    cands = torch.randn(3, 8, 16, requires_grad=True)
    out = b(torch.randn(3, 16), cands)
    out.summary.pow(2).sum().backward()
    assert b.key.weight.grad.abs().sum() > 0 and b.query.weight.grad.abs().sum() > 0
    # a losing candidate gets no gradient through the values; winners do
    losers = torch.ones(3, 8, dtype=torch.bool).scatter(1, out.winners, False)
    assert cands.grad[~losers].abs().sum() > 0


def test_k_all_equals_full_softmax_attention():
    b = make(None)
    conscious, cands = torch.randn(4, 16), torch.randn(4, 7, 16)
    out = b(conscious, cands)
    scores = torch.einsum("bd,bnd->bn", b.query(conscious), b.key(cands)) / 16**0.5
    full = b.out(torch.einsum("bn,bnc->bc", scores.softmax(-1), b.value(cands)))
    assert torch.allclose(out.summary, full, atol=1e-5)


def test_aux_loss_trains_the_predictor_to_predict_the_next_conscious_state():
    b = make(2)
    prev, nxt = torch.randn(32, 16), torch.randn(32, 16)
    opt = torch.optim.Adam(b.predictor.parameters(), lr=1e-2)
    first = b.aux_loss(prev, nxt).mean().item()
    for _ in range(200):
        opt.zero_grad()
        b.aux_loss(prev, nxt).mean().backward()
        opt.step()
    assert b.aux_loss(prev, nxt).mean().item() < 0.2 * first


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_recurrent_conscious_state_carries_the_last_one_beyond_the_query(recurrent):
    # the query is zeroed, so every candidate scores alike whatever the last conscious state: the pooled winners
    # are then the same for two different last states, and only a recurrent update can tell them apart
    b = make(None, recurrent=recurrent)
    with torch.no_grad():
        b.query.weight.zero_()
        b.query.bias.zero_()
    cands = torch.randn(1, 5, 16).expand(2, -1, -1)
    out = b(torch.randn(2, 16), cands)
    assert torch.equal(out.weights[0], out.weights[1])
    differ = not torch.allclose(out.summary[0], out.summary[1], atol=1e-6)
    assert differ == recurrent
    if recurrent:  # c_t = GRU(pooled, c_{t-1}) and its weights train
        last = torch.randn(2, 16)
        pooled = b.out(b.value((out.weights.unsqueeze(-1) * cands).sum(1)))
        assert torch.allclose(b(last, cands).summary, b.update(pooled, last), atol=1e-6)
        b(last, cands).summary.sum().backward()
        assert b.update.weight_hh.grad.abs().sum() > 0


def test_bad_arguments_are_named():
    for kw, name in [({"k": 0}, "k"), ({"conscious_dim": 99}, "conscious_dim"), ({"temperature": 0}, "temperature"),
                     ({"recurrent": "yes"}, "recurrent")]:
        with pytest.raises(ValueError, match=name):
            Bottleneck(16, **kw)
