"""Small builders shared by several test files (tests/ is on sys.path under pytest's default import mode)."""

import torch

from cogarch.index_layer import IndexLayer


def attached(memory_cls, vocab, dim: int, **kw):
    """(an index layer over ``vocab``, ``memory_cls(dim, **kw)`` attached to it), built after seeding torch with 0."""
    torch.manual_seed(0)
    layer = IndexLayer(vocab, dim)
    memory = memory_cls(dim, **kw)
    memory.attach(layer)
    return layer, memory
