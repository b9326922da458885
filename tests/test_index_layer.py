"""IndexLayer (Tensor Brain): recognition, top-down writes, role binding, SPO semantic decoding."""

import pytest
import torch

from cogarch.index_layer import IndexLayer

VOCAB500 = tuple(f"concept{i}" for i in range(500))


def make(dim=256, vocab=VOCAB500, seed=0, **kw):
    torch.manual_seed(seed)
    return IndexLayer(vocab, dim, **kw)


def random_triples(layer, seed, n=1000):
    """n random triples (n, 3) over the layer's concepts and their role-bound sums (n, d)."""
    torch.manual_seed(seed)
    ids = torch.randint(0, layer.num_concepts, (n, 3))
    with torch.no_grad():
        return ids, layer.encode_triple(ids)


def test_bottom_up_recognises_own_embedding_at_default_init():
    layer = make()
    with torch.no_grad():
        probs = layer.bottom_up(layer.embeddings)  # (C, C): row c is p(. | E[c])
    assert probs.shape == (500, 500)
    assert torch.allclose(probs.sum(-1), torch.ones(500), atol=1e-5)
    assert (probs.argmax(-1) == torch.arange(500)).all()
    assert probs.diagonal().min() > 0.9


def test_temperature_sharpens_and_flattens():
    layer = make(dim=32)
    q = layer.embeddings[:8].detach() + 0.3 * torch.randn(8, 32)
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1)
    cold, warm = layer.bottom_up(q, temperature=0.25), layer.bottom_up(q, temperature=4.0)
    assert (entropy(cold) < entropy(layer.bottom_up(q))).all()
    assert (entropy(layer.bottom_up(q)) < entropy(warm)).all()


def test_top_down_one_hot_and_index_give_the_embedding():
    layer = make(dim=16, vocab=tuple("abcdefg"))
    idx = torch.tensor([3, 0, 6])
    one_hot = torch.nn.functional.one_hot(idx, 7).float()
    assert torch.equal(layer.top_down(idx), layer.embeddings[idx])
    assert torch.allclose(layer.top_down(one_hot), layer.embeddings[idx], atol=1e-6)
    mix = torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0]])
    assert torch.allclose(layer.top_down(mix)[0], 0.5 * (layer.embeddings[0] + layer.embeddings[1]), atol=1e-6)


def test_bind_unbind_roundtrip_and_roles_are_distinct():
    layer = make(dim=256)
    x = torch.randn(4, 256)
    for r in range(3):
        assert torch.allclose(layer.unbind(layer.bind(x, r), r), x)
    # a role-bound vector looks like noise under another role's unbinding
    e = layer.embeddings.detach()
    same = layer.bottom_up(layer.unbind(layer.bind(e[:50], 0), 0)).diagonal()
    cross = layer.bottom_up(layer.unbind(layer.bind(e[:50], 0), 1)).diagonal()
    assert same.min() > 0.9 and cross.max() < 0.5
    assert set(layer.role_vectors.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="role"):
        layer.bind(x, 3)


def test_decode_triple_recovers_random_triples():
    layer = make()
    torch.manual_seed(1)
    ids = torch.randint(0, 500, (1000, 3))
    with torch.no_grad():
        out, probs = layer.decode_triple(layer.encode_triple(ids))
    assert out.shape == (1000, 3) and probs.shape == (1000, 3, 500)
    assert (out == ids).all(dim=1).float().mean() >= 0.99
    assert torch.equal(probs.argmax(-1), out)


def test_explain_away_conditions_the_next_roles():
    # In a crowded space (d=64, 500 concepts) crosstalk from the other two roles causes errors; writing the
    # decided subject (and predicate) back top-down and subtracting it removes that crosstalk for later roles.
    layer = make(dim=64)
    ids, q = random_triples(layer, seed=2)
    with torch.no_grad():
        with_ea, _ = layer.decode_triple(q)
        without, _ = layer.decode_triple(q, explain_away=False)
    assert torch.equal(with_ea[:, 0], without[:, 0])  # the first decision is the same
    acc = lambda x: (x == ids).all(dim=1).float().mean().item()
    obj = lambda x: (x[:, 2] == ids[:, 2]).float().mean().item()
    assert acc(with_ea) > acc(without) + 0.05
    assert obj(with_ea) > obj(without) + 0.02


def test_decoding_does_not_depend_on_the_scale_of_the_representation():
    """The workspace decodes RMS-normalised candidates (norm sqrt(d), about 4.6 times a triple's at d=64): the
    explain-away subtracts each decided concept's least-squares share, so any scale decodes as the sum does. (With
    a unit write-back, 3.6 subject embeddings would be left over to drown the predicate.)"""
    layer = make(dim=64)
    ids, q = random_triples(layer, seed=3)
    with torch.no_grad():
        plain, _ = layer.decode_triple(q)
        for scale in (0.2, 64**0.5 / q.norm(dim=-1, keepdim=True), 10.0):
            assert torch.equal(layer.decode_triple(q * scale)[0], plain)
    assert (plain == ids).all(dim=1).float().mean() >= 0.8


def test_explain_away_leaves_the_pure_object_code():
    # Once s and p are decided correctly, what remains is exactly the object's role-bound embedding.
    layer = make(dim=256)
    ids = torch.tensor([[5, 17, 230]])
    q = layer.encode_triple(ids)
    residual = q - layer.bind(layer.top_down(ids[:, 0]), 0) - layer.bind(layer.top_down(ids[:, 1]), 1)
    assert torch.allclose(layer.unbind(residual, 2), layer.embeddings[ids[:, 2]], atol=1e-5)


def test_names_print_words():
    vocab = ("<none>", "?", "mary", "went_to", "kitchen")
    layer = make(dim=8, vocab=vocab)
    words = layer.names(torch.tensor([[2, 3, 4], [4, 1, 0]]))
    assert words == [("mary", "went_to", "kitchen"), ("kitchen", "?", "<none>")]
    assert layer.names(torch.tensor([2, 4])) == [("mary",), ("kitchen",)]
    assert layer.names([[0, 1, 2]]) == [("<none>", "?", "mary")]
    with pytest.raises(ValueError):
        layer.names(torch.tensor([[5]]))
    for bad in (5, -1):  # a fact id outside the vocabulary is named, not an IndexError from the embedding lookup
        with pytest.raises(ValueError, match=rf"concept id {bad} is outside the vocabulary; allowed: 0\.\.4"):
            layer.encode_triple(torch.tensor([[2, 3, 4], [2, bad, 4]]))


def test_batch_equals_batch_of_one():
    layer = make(dim=64, vocab=VOCAB500[:100])
    torch.manual_seed(3)
    ids = torch.randint(0, 100, (6, 3))
    q = layer.encode_triple(ids) + 0.1 * torch.randn(6, 64)
    big_ids, big_p = layer.decode_triple(q)
    big_bu = layer.bottom_up(q)
    for b in range(6):
        one_ids, one_p = layer.decode_triple(q[b : b + 1])
        assert torch.equal(one_ids[0], big_ids[b])
        assert torch.allclose(one_p[0], big_p[b], atol=1e-6)
        assert torch.allclose(layer.bottom_up(q[b : b + 1])[0], big_bu[b], atol=1e-6)
        assert torch.allclose(layer.encode_triple(ids[b : b + 1])[0], layer.encode_triple(ids)[b], atol=1e-6)


def test_gradients_reach_embeddings_through_decoding():
    layer = make(dim=32, vocab=VOCAB500[:50])
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    _, probs = layer.decode_triple(layer.encode_triple(ids))
    loss = -probs.gather(-1, ids[..., None]).clamp_min(1e-9).log().mean()
    loss.backward()
    g = layer.embeddings.grad
    assert g is not None and g[1:7].abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(vocab=(), dim=8), "vocab"),
        (dict(vocab=("a", "a"), dim=8), "vocab"),
        (dict(vocab=("a",), dim=0), "dim"),
        (dict(vocab=("a",), dim=8, temperature=0.0), "temperature"),
        (dict(vocab=("a",), dim=8, roles=0), "roles"),
    ],
)
def test_constructor_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        IndexLayer(**kwargs)
