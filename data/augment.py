"""Spatial augmentation of uint8 clips [T, C, H, W]; every frame of a clip gets the same crop.

Training crops a box from the source frames first and resizes only the box (cheaper than resizing
whole frames): `jitter` is PySlowFast's short-side scale jitter + random crop, `rrc` the random
resized crop of the CLIP-family recipes. Testing resizes the short side and takes 1 or 3 crops.

The optional training augmentations run in the order of the projects they come from: RandAugment on
the source frames before the crop (PySlowFast), the flip, colour jitter and grayscale (X-CLIP, EZ-CLIP),
random erasing last (PySlowFast). torchvision's transforms v2 do the work; they draw from torch's global
generator, which each clip seeds from its own numpy generator inside a fork of the RNG state, so a clip
still depends only on (seed, epoch, index) and the caller's random state is left as it was.
"""
import math

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

TORCH_DRAWN = ("randaugment", "color_jitter", "grayscale", "random_erasing")  # input keys whose draws come from torch


def _resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return TF.resize(clip, [height, width], antialias=True)


def jitter_box(h: int, w: int, size: int, jitter, rng, inverse_uniform: bool = False):
    """Box of the source frame that becomes the crop after resizing the short side to S ~ U[jitter]
    (or S = 1 / U[1 / high, 1 / low], PySlowFast's DATA.INV_UNIFORM_SAMPLE)."""
    if inverse_uniform:
        short_side = 1 / rng.uniform(1 / jitter[1], 1 / jitter[0])
    else:
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


def rand_augment(clip: torch.Tensor, ops: int, magnitude: float, magnitude_std: float, prob: float) -> torch.Tensor:
    """PySlowFast's RandAugment (timm's `rand-m{magnitude}-n{ops}-mstd{magnitude_std}-inc1`) with
    torchvision's operations: `ops` draws of an operation, each applied with probability `prob` at a
    magnitude drawn from N(magnitude, magnitude_std) clipped to timm's [0, 10]; one operation and one
    magnitude for all frames of the clip, as PySlowFast applies one choice to the frame list.

    The 0-10 scale maps onto torchvision's ranges as onto timm's (rotate 30 deg, shear 0.3, translate
    0.45 x the side, enhance 1 +- 0.9, solarize threshold 256 -> 0 at 10). What differs, from torchvision:
    Identity is one of its 14 operations where timm has Invert and SolarizeAdd; posterize keeps 8 -> 4 bits
    (timm 4 -> 0); geometric operations interpolate bilinearly (PySlowFast asks PIL for bicubic, which
    torchvision does not offer on tensors). Fill: grey 128, timm's."""
    for _ in range(ops):
        if torch.rand(()) >= prob:
            continue
        m = min(10.0, max(0.0, magnitude + magnitude_std * float(torch.randn(()))))
        op = v2.RandAugment(num_ops=1, magnitude=round(10 * m), num_magnitude_bins=101,  # bins of 0.1 on timm's scale
                            interpolation=v2.InterpolationMode.BILINEAR, fill=128)
        clip = op(clip)
    return clip


def color_jitter(clip: torch.Tensor, prob: float, strength) -> torch.Tensor:
    """X-CLIP's / EZ-CLIP's ColorJitter(p): one draw decides for the clip, then torchvision's ColorJitter
    (brightness, contrast, saturation, hue) runs frame by frame, each frame with factors of its own, as
    their pipelines call it on each frame of the list."""
    if torch.rand(()) >= prob:
        return clip
    jitter = v2.ColorJitter(*strength)
    return torch.stack([jitter(frame) for frame in clip])


def random_erase(clip: torch.Tensor, prob: float, mode: str, max_count: int, mean, std) -> torch.Tensor:
    """PySlowFast's RandomErasing (cube: one box position for every frame), on uint8 clips: with
    probability `prob`, 1..max_count boxes of area U[0.02, 1/3] / count and aspect ratio in [0.3, 1/0.3]
    (torchvision's RandomErasing draws each box). PySlowFast erases after normalisation; here the fill is
    what that becomes in pixels, mean + std * z, rounded and clipped to 0..255: const z = 0, rand one z
    per channel and frame, pixel one z per pixel, channel and frame."""
    if torch.rand(()) >= prob:
        return clip
    count = int(torch.randint(1, max_count + 1, ()))
    boxes = v2.RandomErasing(p=1.0, scale=(0.02 / count, 1 / 3 / count), ratio=(0.3, 1 / 0.3))
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    clip = clip.clone()
    for _ in range(count):
        box = boxes.make_params([clip])
        if box["v"] is None:  # no box fitted in torchvision's 10 tries (PySlowFast: 100)
            continue
        i, j, h, w = box["i"], box["j"], box["h"], box["w"]
        shape = {"const": (3, 1, 1), "rand": (len(clip), 3, 1, 1), "pixel": (len(clip), 3, h, w)}[mode]
        z = torch.zeros(shape) if mode == "const" else torch.randn(shape)
        clip[..., i : i + h, j : j + w] = (mean + std * z).round().clamp(0, 255).to(torch.uint8)
    return clip


def train_augment(clip: torch.Tensor, cfg_input: dict, rng, flip: bool) -> torch.Tensor:
    """One training clip from the source frames [T, C, H, W]; every draw comes from `rng`. An
    augmentation key that a hand-made cfg_input leaves out is off."""
    torch_drawn = any(cfg_input.get(key) for key in TORCH_DRAWN)
    with torch.random.fork_rng(devices=[], enabled=torch_drawn):
        if torch_drawn:
            torch.manual_seed(int(rng.integers(2**63)))
        if cfg_input.get("randaugment"):
            clip = rand_augment(clip, cfg_input["randaugment"], cfg_input["randaugment_magnitude"],
                                cfg_input["randaugment_magnitude_std"], cfg_input["randaugment_prob"])
        h, w = clip.shape[-2:]
        size = cfg_input["size"]
        if cfg_input["train_crop"] == "jitter":
            top, left, bh, bw = jitter_box(h, w, size, cfg_input["jitter"], rng, cfg_input.get("jitter_inverse_uniform"))
        elif cfg_input["train_crop"] == "rrc":
            top, left, bh, bw = rrc_box(h, w, cfg_input["rrc_scale"], rng)
        else:
            raise SystemExit(f"error: input.train_crop must be 'jitter' or 'rrc', found {cfg_input['train_crop']!r}")
        clip = _resize(clip[..., top : top + bh, left : left + bw], size, size)
        if flip and rng.random() < 0.5:
            clip = clip.flip(-1)
        if cfg_input.get("color_jitter"):
            clip = color_jitter(clip, cfg_input["color_jitter"], cfg_input["color_jitter_strength"])
        if cfg_input.get("grayscale"):
            clip = v2.RandomGrayscale(cfg_input["grayscale"])(clip)
        if cfg_input.get("random_erasing"):
            clip = random_erase(clip, cfg_input["random_erasing"], cfg_input["random_erasing_mode"],
                                cfg_input["random_erasing_count"], cfg_input["mean"], cfg_input["std"])
    return clip


def view_size(cfg_input: dict, cfg_test: dict) -> int:
    """The test crop: test.crop_size, or input.size where it is 0 (or a hand-made cfg leaves it out)."""
    return cfg_test.get("crop_size") or cfg_input["size"]


def crop_views(clip: torch.Tensor, size: int, short_side: int, crops: int) -> list:
    """Resize the short side to `short_side`, then 1 centre crop or 3 crops along the long side."""
    if short_side < size:
        raise SystemExit(f"error: test.short_side ({short_side}) must be at least the test crop ({size})")
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
