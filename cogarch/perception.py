"""Perception: an observation -> sensory items in the representation layer (the Tensor Brain's sensory layer).

Source: Tresp et al., "The Tensor Brain" (a sensory buffer whose items the index layer decodes); the image
path follows Santoro et al., "A simple neural network module for relational reasoning" (Relation Networks:
the cells of a small CNN's last feature map, tagged with their coordinates, are the "objects").

Items, in order (n = 1 + number of image cells):
  item 0: the fact, ``index_layer.encode_triple(fact)`` (the role-bound s, p, o code), plus, with
          ``text=True``, ``text_gate * encode_text(text_ids)``. ``text_gate`` is a learned scalar that
          starts at 0 (ReZero-style), so at init the fact item is exactly the symbolic triple code and the
          index layer decodes it; training opens the gate as far as the text helps.
  items 1..: with ``image=True``, one item per cell of the CNN's last feature map (5 x 5 = 25 at 75 px).

With ``time=True`` the fact item also carries when it was seen: ``bind(time_code(step), role 3)`` (the Tensor
Brain's time index; the index layer needs ``roles >= 4``). The time code is a unit vector of sinusoids of
the step over wavelengths from 4 to 4,000 steps, so the codes of two steps are the more alike the closer the
steps are: attention from a query that carries "now" prefers recent items (recency, as in the temporal
context model of free recall).
"""

# B batch, n sensory items, d model dim, L text length, H W image height width, h w feature-map cells, c channels

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import einops
import numpy as np
import torch
from torch import Tensor, nn
import torch.nn.functional as F

from cogarch.index_layer import IndexLayer

TEXT_PAD = 0  # text ids are utf-8 bytes + 1; 0 pads
TEXT_VOCAB = 257
CNN_CHANNELS = 24  # as in Relation Networks' Sort-of-CLEVR CNN
CNN_LAYERS = 4


def _conv_out(size: int) -> int:
    for _ in range(CNN_LAYERS):  # 3x3, stride 2, padding 1
        size = (size - 1) // 2 + 1
    return size


class Perception(nn.Module):
    """Turns an env observation into sensory items: one per fact, plus image cells if enabled.

    Source: Tensor Brain (sensory layer; facts as role-bound concept embeddings); Relation Networks (image
    cells as objects).

    Inputs: ``obs`` dict of tensors (see ``tensorize``): ``fact`` (B, 3) long; ``text_ids`` (B, L) long
        (utf-8 bytes + 1, 0 = padding) when ``text=True``; ``image`` (B, H, W, 3) uint8 when ``image=True``.
    Outputs: ``forward(obs) -> items (B, n, d)``, ``n = num_items`` (1, or 1 + cells with an image).
    State: none (each observation is encoded on its own; buffering is the workspace's job).

    Text encoder: byte embedding -> 1-D conv (width 5) -> GELU -> masked mean over real characters ->
    linear to d. Padding embeds to zero and is masked out, so padding a batch to its longest text leaves
    every row's encoding unchanged. Image encoder: 4 conv layers (3x3, stride 2, ReLU) -> each cell's
    features with its (x, y) in [-1, 1] -> linear to d. Relation Networks use BatchNorm here; it is left
    out because batch statistics would make a row depend on the other rows (and a per-image norm would
    make every cell depend on the whole image); pixels are scaled to [0, 1] instead.

    Args:
        index_layer: the IndexLayer whose embeddings encode facts (gradients reach them).
        dim: d; must equal ``index_layer.dim``.
        text: add the encoding of ``obs["text_ids"]`` to the fact item.
        image: add one item per CNN cell of ``obs["image"]``.
        image_size: H = W of the images; ``16 <= image_size <= 1024``.
    """

    TIME_ROLE = 3

    def __init__(self, index_layer: IndexLayer, dim: int, text: bool = True, image: bool = False, image_size: int = 75,
                 time: bool = False):
        super().__init__()
        if not isinstance(index_layer, IndexLayer):
            raise ValueError(f"index_layer must be an IndexLayer, got {type(index_layer).__name__}")
        if dim != index_layer.dim:
            raise ValueError(f"dim={dim!r} is not allowed; it must equal index_layer.dim={index_layer.dim}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 1024:
            raise ValueError(f"image_size={image_size!r} is out of range; allowed: integer 16 <= image_size <= 1024")
        if time and index_layer.num_roles <= self.TIME_ROLE:
            raise ValueError(f"time=True binds the step to role {self.TIME_ROLE}; the index layer has only "
                             f"roles={index_layer.num_roles} (allowed: roles >= {self.TIME_ROLE + 1})")
        self.index_layer = index_layer
        self.dim = dim
        self.time = bool(time)
        half = max(dim // 2, 1)
        wavelengths = 4.0 * 1000.0 ** (torch.arange(half) / max(half - 1, 1))  # 4 .. 4,000 steps
        self.register_buffer("time_freq", 2 * math.pi / wavelengths, persistent=False)
        self.text = bool(text)
        self.image = bool(image)
        self.image_size = image_size
        if self.text:
            self.char_embed = nn.Embedding(TEXT_VOCAB, dim, padding_idx=TEXT_PAD)
            self.char_conv = nn.Conv1d(dim, dim, kernel_size=5, padding=2)
            self.text_out = nn.Linear(dim, dim)
            self.text_gate = nn.Parameter(torch.zeros(()))
        if self.image:
            layers, c_in = [], 3
            for _ in range(CNN_LAYERS):
                layers += [nn.Conv2d(c_in, CNN_CHANNELS, 3, stride=2, padding=1), nn.ReLU()]
                c_in = CNN_CHANNELS
            self.cnn = nn.Sequential(*layers)
            self.cells = _conv_out(image_size)  # cells per side
            lin = torch.linspace(-1.0, 1.0, self.cells)
            ys, xs = torch.meshgrid(lin, lin, indexing="ij")
            self.register_buffer("cell_xy", torch.stack([xs, ys], dim=-1).reshape(-1, 2))  # (h*w, 2)
            self.cell_out = nn.Linear(CNN_CHANNELS + 2, dim)

    @property
    def num_items(self) -> int:
        """n, the number of sensory items per observation (constant for a configuration)."""
        return 1 + (self.cells**2 if self.image else 0)

    # ------------------------------------------------------------------ encoders
    def time_code(self, step: Tensor) -> Tensor:
        """(B,) step index -> (B, d) unit vector; ``time_code(s) . time_code(t)`` falls as ``|s - t|`` grows."""
        phase = step.to(self.time_freq.dtype)[:, None] * self.time_freq  # (B, d / 2)
        code = torch.cat([phase.sin(), phase.cos()], dim=-1)[:, : self.dim]
        return F.pad(code, (0, self.dim - code.shape[-1])) / math.sqrt(self.time_freq.numel())

    def encode_text(self, text_ids: Tensor) -> Tensor:
        """(B, L) long byte ids (+1, 0 = pad) -> (B, d), before the gate. An all-padding row encodes the bias."""
        mask = (text_ids != TEXT_PAD).float()  # (B, L)
        x = self.char_embed(text_ids)  # (B, L, d); padding embeds to 0, like the conv's own zero padding
        x = einops.rearrange(x, "b l d -> b d l")
        x = F.gelu(self.char_conv(x))
        x = einops.rearrange(x, "b d l -> b l d")
        pooled = einops.einsum(x, mask, "b l d, b l -> b d") / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.text_out(pooled)  # (B, d)

    def encode_image(self, image: Tensor) -> Tensor:
        """(B, H, W, 3) uint8 -> (B, h*w, d): one item per cell of the last feature map."""
        if image.dim() != 4 or image.shape[1:] != (self.image_size, self.image_size, 3):
            want = f"(B, {self.image_size}, {self.image_size}, 3)"
            raise ValueError(f"image must have shape {want}, got {tuple(image.shape)}")
        x = einops.rearrange(image.float() / 255.0, "b h w c -> b c h w")
        f = einops.rearrange(self.cnn(x), "b c h w -> b (h w) c")  # (B, h*w, c)
        xy = einops.repeat(self.cell_xy, "n two -> b n two", b=f.shape[0])
        return self.cell_out(torch.cat([f, xy], dim=-1))  # (B, h*w, d)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """obs (tensors, see ``tensorize``) -> sensory items (B, n, d)."""
        if "fact" not in obs:
            raise KeyError("obs must hold 'fact' (B, 3) long")
        item = self.index_layer.encode_triple(obs["fact"].long())  # (B, d)
        if self.time:
            if "step" not in obs:
                raise KeyError("Perception(time=True) needs obs['step'] (B,) long: the step index of the fact")
            item = item + self.index_layer.bind(self.time_code(obs["step"]), self.TIME_ROLE)
        if self.text:
            if "text_ids" not in obs:
                raise KeyError("Perception(text=True) needs obs['text_ids'] (B, L) long; see Perception.tensorize")
            item = item + self.text_gate * self.encode_text(obs["text_ids"].long())
        items = [item[:, None]]  # (B, 1, d)
        if self.image:
            if "image" not in obs:
                raise KeyError("Perception(image=True) needs obs['image'] (B, H, W, 3) uint8")
            items.append(self.encode_image(obs["image"]))
        return torch.cat(items, dim=1)  # (B, n, d)

    # ------------------------------------------------------------------ batching env observations
    def tensorize(self, obs_list: Sequence[Mapping] | Mapping, device=None) -> dict[str, Tensor]:
        """Batch env observations into tensors.

        ``obs_list``: a list of observation dicts (``fact`` array of 3 ints, ``text`` str, ``phase`` int,
        optional ``image`` (H, W, 3) uint8), or one dict of batched values as a gymnasium vector env
        returns it. Returns ``fact`` (B, 3) long, ``phase`` (B,) long, ``text_ids`` (B, L) long (utf-8
        bytes + 1, right-padded with 0 to the longest text, L >= 1) when the obs carry text, and ``image``
        (B, H, W, 3) uint8 when they all carry an image.
        """
        if isinstance(obs_list, Mapping):  # vector-env layout: each key holds B values
            keys = list(obs_list)
            size = len(obs_list["fact"])
            obs_list = [{k: obs_list[k][i] for k in keys} for i in range(size)]
        if len(obs_list) == 0:
            raise ValueError("obs_list must hold at least one observation")
        out: dict[str, Tensor] = {
            "fact": torch.as_tensor(np.stack([np.asarray(o["fact"], dtype=np.int64) for o in obs_list]), device=device),
        }
        if all("phase" in o for o in obs_list):
            out["phase"] = torch.as_tensor([int(o["phase"]) for o in obs_list], dtype=torch.long, device=device)
        if all("text" in o for o in obs_list):
            codes = [list(str(o["text"]).encode("utf-8")) for o in obs_list]
            ids = torch.full((len(codes), max(1, max(len(c) for c in codes))), TEXT_PAD, dtype=torch.long)
            for i, c in enumerate(codes):
                if c:
                    ids[i, : len(c)] = torch.tensor(c, dtype=torch.long) + 1
            out["text_ids"] = ids.to(device)
        has_image = ["image" in o and o["image"] is not None for o in obs_list]
        if any(has_image):
            if not all(has_image):
                raise ValueError("either every observation carries an 'image' or none does")
            images = np.stack([np.asarray(o["image"], dtype=np.uint8) for o in obs_list])
            out["image"] = torch.as_tensor(images, device=device)
        return out
