"""Perception: facts, text and images -> sensory items (B, n, d); tensorize batches env observations."""

import numpy as np
import pytest
import torch

from cogarch.index_layer import IndexLayer
from cogarch.perception import Perception

VOCAB = ("<none>", "?", *(f"w{i}" for i in range(98)))


def make(dim=128, seed=0, **kw):
    torch.manual_seed(seed)
    layer = IndexLayer(VOCAB, dim)
    return Perception(layer, dim, **kw)


def obs_list(n=3, image=False, seed=0):
    rng = np.random.default_rng(seed)
    texts = ["Mary went to the kitchen.", "Where is Mary?", "John picked up the apple there."]
    out = []
    for i in range(n):
        o = {"fact": rng.integers(0, len(VOCAB), size=3).astype(np.int64), "text": texts[i % 3], "phase": i % 2}
        if image:
            o["image"] = rng.integers(0, 256, size=(75, 75, 3)).astype(np.uint8)
        out.append(o)
    return out


def test_one_item_per_fact_that_decodes_back_to_the_fact():
    perc = make(text=False)
    obs = perc.tensorize(obs_list(3))
    items = perc(obs)
    assert items.shape == (3, 1, 128) and perc.num_items == 1
    ids, _ = perc.index_layer.decode_triple(items[:, 0])
    assert torch.equal(ids, obs["fact"])


def test_text_gate_starts_closed_so_the_fact_item_still_decodes():
    perc = make(text=True)
    obs = perc.tensorize(obs_list(3))
    items = perc(obs)
    assert items.shape == (3, 1, 128)
    assert torch.allclose(items[:, 0], perc.index_layer.encode_triple(obs["fact"]))
    with torch.no_grad():
        perc.text_gate.fill_(1.0)
    assert not torch.allclose(perc(obs)[:, 0], perc.index_layer.encode_triple(obs["fact"]))


def test_text_encoding_changes_with_text_and_is_deterministic():
    perc = make(text=True)
    a = perc.tensorize([{"fact": np.zeros(3, np.int64), "text": "Mary went to the kitchen.", "phase": 0}])
    b = perc.tensorize([{"fact": np.zeros(3, np.int64), "text": "Mary went to the garden.", "phase": 0}])
    ea, eb = perc.encode_text(a["text_ids"]), perc.encode_text(b["text_ids"])
    assert ea.shape == (1, 128)
    assert torch.equal(ea, perc.encode_text(a["text_ids"]))
    assert (ea - eb).norm() > 1e-3 * ea.norm()


def test_padding_does_not_change_a_text_encoding():
    perc = make(text=True)
    short = perc.tensorize([{"fact": np.zeros(3, np.int64), "text": "Hi.", "phase": 0}])["text_ids"]
    padded = torch.cat([short, torch.zeros(1, 40, dtype=torch.long)], dim=1)
    assert torch.allclose(perc.encode_text(short), perc.encode_text(padded), atol=1e-5)


def test_image_path_gives_cell_items_from_uint8():
    perc = make(text=True, image=True)
    obs = perc.tensorize(obs_list(2, image=True))
    assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (2, 75, 75, 3)
    items = perc(obs)
    assert items.shape == (2, 1 + 25, 128) and perc.num_items == 26
    assert torch.isfinite(items).all()
    # cells see different pixels: changing one corner changes that corner's item only
    img = obs["image"].clone()
    img[0, :10, :10] = 255 - img[0, :10, :10]
    changed = perc({**obs, "image": img})
    diff = (changed - items)[0].norm(dim=-1)  # (n,)
    assert diff[1] > 0 and diff[-1] == 0 and diff[0] == 0
    with pytest.raises(ValueError, match="image"):
        perc({**obs, "image": torch.zeros(2, 64, 64, 3, dtype=torch.uint8)})


def test_tensorize_list_and_vector_env_layout():
    perc = make()
    lst = obs_list(3)
    out = perc.tensorize(lst)
    assert out["fact"].dtype == torch.long and out["fact"].shape == (3, 3)
    assert torch.equal(out["fact"], torch.as_tensor(np.stack([o["fact"] for o in lst])))
    assert out["phase"].tolist() == [0, 1, 0]
    L = max(len(o["text"]) for o in lst)
    assert out["text_ids"].shape == (3, L)
    row = out["text_ids"][1]
    assert bytes((row[row > 0] - 1).tolist()).decode() == "Where is Mary?"
    assert "image" not in out
    vec = {"fact": np.stack([o["fact"] for o in lst]), "text": tuple(o["text"] for o in lst),
           "phase": np.array([o["phase"] for o in lst])}  # fmt: skip
    out2 = perc.tensorize(vec)
    assert all(torch.equal(out[k], out2[k]) for k in out)
    empty = perc.tensorize([{"fact": np.zeros(3, np.int64), "text": "", "phase": 1}])
    assert empty["text_ids"].shape == (1, 1) and torch.isfinite(perc(empty)).all()


def test_batch_equals_batch_of_one():
    perc = make(dim=64, text=True, image=True)
    with torch.no_grad():
        perc.text_gate.fill_(0.7)  # make the text path count
    lst = obs_list(3, image=True)
    big = perc(perc.tensorize(lst))
    for b in range(3):
        one = perc(perc.tensorize(lst[b : b + 1]))
        assert torch.allclose(one[0], big[b], atol=1e-5)


def test_gradients_reach_embeddings_text_and_cnn():
    perc = make(dim=64, text=True, image=True)
    with torch.no_grad():
        perc.text_gate.fill_(0.5)
    obs = perc.tensorize(obs_list(2, image=True))
    perc(obs).pow(2).sum().backward()
    emb_grad = perc.index_layer.embeddings.grad
    used = obs["fact"].unique()
    assert emb_grad[used].abs().sum() > 0
    unused = torch.ones(len(VOCAB), dtype=torch.bool)
    unused[used] = False
    assert emb_grad[unused].abs().sum() == 0
    assert perc.char_embed.weight.grad.abs().sum() > 0 and perc.text_gate.grad is not None
    assert perc.cnn[0].weight.grad.abs().sum() > 0


def test_constructor_validation():
    layer = IndexLayer(VOCAB, 32)
    with pytest.raises(ValueError, match="dim"):
        Perception(layer, 64)
    with pytest.raises(ValueError, match="image_size"):
        Perception(layer, 32, image=True, image_size=8)
    with pytest.raises(ValueError, match="index_layer"):
        Perception(None, 32)


def test_time_code_prefers_recent_steps_and_keeps_the_triple_decodable():
    from cogarch.index_layer import IndexLayer
    from cogarch.perception import Perception

    vocab = [f"c{i}" for i in range(50)]
    layer = IndexLayer(vocab, 256, roles=4)
    perception = Perception(layer, 256, text=False, time=True)
    codes = perception.time_code(torch.arange(0, 400))
    sim = codes @ codes[-1]  # similarity of every step to "now" (step 399)
    assert torch.allclose(codes.norm(dim=-1), torch.ones(400), atol=1e-5)
    assert (sim[-1] > sim[-2] > sim[-5] > sim[-20] > sim[-100]).item()
    facts = torch.tensor([[3, 7, 11], [20, 21, 22]])
    items = perception({"fact": facts, "step": torch.tensor([5, 300])})
    ids, _ = layer.decode_triple(items[:, 0])
    assert ids.tolist() == facts.tolist()
    with pytest.raises(ValueError, match="roles"):
        Perception(IndexLayer(vocab, 32), 32, text=False, time=True)
    with pytest.raises(KeyError, match="step"):
        perception({"fact": facts})
