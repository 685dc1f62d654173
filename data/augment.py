"""Spatial augmentation of uint8 clips [T, C, H, W]; every frame of a clip gets the same crop.

Training crops a box from the source frames first and resizes only the box (cheaper than resizing
whole frames): `jitter` is PySlowFast's short-side scale jitter + random crop, `rrc` the random
resized crop of the CLIP-family recipes. Testing resizes the short side and takes 1 or 3 crops.
"""
import math

import torch
from torchvision.transforms.v2 import functional as TF


def _resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return TF.resize(clip, [height, width], antialias=True)


def jitter_box(h: int, w: int, size: int, jitter, rng):
    """Box of the source frame that becomes the crop after resizing the short side to S ~ U[jitter]."""
    short_side = rng.uniform(jitter[0], jitter[1])
    side = min(h, w, max(1, round(size * min(h, w) / short_side)))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return int(top), int(left), side, side


def rrc_box(h: int, w: int, scale, rng, ratio=(3 / 4, 4 / 3)):
    """Random resized crop box (area fraction in `scale`, aspect ratio in `ratio`)."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        bw, bh = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    side = min(h, w)  # fall back to the central square
    return (h - side) // 2, (w - side) // 2, side, side


def train_augment(clip: torch.Tensor, cfg_input: dict, rng, flip: bool) -> torch.Tensor:
    h, w = clip.shape[-2:]
    size = cfg_input["size"]
    if cfg_input["train_crop"] == "jitter":
        top, left, bh, bw = jitter_box(h, w, size, cfg_input["jitter"], rng)
    elif cfg_input["train_crop"] == "rrc":
        top, left, bh, bw = rrc_box(h, w, cfg_input["rrc_scale"], rng)
    else:
        raise SystemExit(f"error: input.train_crop must be 'jitter' or 'rrc', found {cfg_input['train_crop']!r}")
    clip = _resize(clip[..., top : top + bh, left : left + bw], size, size)
    if flip and rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip


def crop_views(clip: torch.Tensor, size: int, short_side: int, crops: int) -> list:
    """Resize the short side to `short_side`, then 1 centre crop or 3 crops along the long side."""
    if short_side < size:
        raise SystemExit(f"error: test.short_side ({short_side}) must be at least input.size ({size})")
    h, w = clip.shape[-2:]
    scale = short_side / min(h, w)
    h, w = max(size, round(h * scale)), max(size, round(w * scale))
    clip = _resize(clip, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    if crops == 1:
        return [clip[..., top : top + size, left : left + size]]
    if crops == 3:
        if w >= h:
            return [clip[..., top : top + size, x : x + size] for x in (0, left, w - size)]
        return [clip[..., y : y + size, left : left + size] for y in (0, top, h - size)]
    raise SystemExit(f"error: test.crops must be 1 or 3, found {crops}")
