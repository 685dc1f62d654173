"""TimeSformer (Bertasius et al., ICML 2021): ViT-B/16 with divided space-time attention.

An independent implementation; only the parameter names and shapes follow the released checkpoint
(TimeSformer_divST_8x32_224_K400.pyth: {'model_state': {...}}, every key prefixed `model.`), so
it loads by name. The wrapper holds the network as `self.model`:

    model.cls_token [1,1,D], model.pos_embed [1,1+N,D], model.time_embed [1,T,D],
    model.patch_embed.proj (Conv2d p x p, with bias),
    model.blocks.i.{norm1, attn.qkv (bias), attn.proj, temporal_norm1, temporal_attn.qkv,
                    temporal_attn.proj, temporal_fc, norm2, mlp.fc1, mlp.fc2},
    model.norm, model.head

LayerNorm eps 1e-6, exact GELU, stochastic depth rising linearly to drop_path.

Token layout: [CLS, patch tokens ordered (position, frame)], i.e. position-major and frame-minor
(token 1 + p*T + t is patch p of frame t); the released weights depend on it. Each block:
  1. temporal: for every position, attention over its T tokens (temporal_norm1, temporal_attn),
     then temporal_fc, added to the patch tokens (the class token takes no part);
  2. spatial: for every frame, attention over [CLS, its N patch tokens] (norm1, attn); the T class
     token outputs are averaged; both added residually;
  3. mlp(norm2) on all tokens.
temporal_fc is zero-initialised in blocks >= 1, so those blocks start as plain ViT blocks.
Features: norm(x)[:, 0] -> head. Stochastic depth draws its mask per row of the tensor each
branch works on, as the original: per (clip, position) for the temporal branch, per (clip, frame)
for the spatial one, per clip for the MLP.

Inputs of another frame count or size than the model was built for use nearest-neighbour
resampled time embeddings (as the original) and bicubic resampled position embeddings.

Pretrained (recipe key `pretrained`):
  * 'imagenet': timm's ViT-B/16 (IN-21k + IN-1k fine-tune, jx_vit_base_p16_224-80ecf9dd.pth,
    downloaded once into $MT_CACHE/timm or torch.hub's checkpoint folder, SHA256 prefix checked),
    mapped as the original does: attn -> temporal_attn and norm1 -> temporal_norm1 copied, ImageNet
    head dropped, time_embed and temporal_fc keep their initialisation;
  * a path: the released .pyth ({'model_state'} with `model.` keys), a plain TimeSformer state dict
    (with or without `model.`), or a timm-layout ImageNet ViT state dict (mapped as above);
    time_embed / pos_embed are resampled to this model's frames / size, and a head of another
    class count is dropped;
  * 'none'.
The released SSv2 checkpoint was most likely trained on BGR frames (inferred: TimeSformer's SSv2 loader
decodes frames with cv2, and the REVERSE_INPUT_CHANNEL swap of its config sits in pack_pathway_output,
which the ViT architecture skips): set model.bgr true to evaluate it.

The original code is CC BY-NC 4.0; nothing of it is used here beyond parameter names and shapes.
"""
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.clip import DropPath, init_linear_and_norm, resize_pos_embed, without_key_bias
from models.video_common import PYSLOWFAST_MEAN, PYSLOWFAST_STD
from models.weights import (cache_dir, download, drop_other_head, extract_state_dict, fit_pos_embed, load_checked,
                            log_to_stderr, no_weights, read_checkpoint)

# timm's ViT-B/16 ImageNet-21k + 1k weights, the original TimeSformer initialisation. The 8 hex
# digits of the file name are the start of its SHA256 (torch.hub convention).
IMAGENET_URL = ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"
                "jx_vit_base_p16_224-80ecf9dd.pth")
IMAGENET_NAMES = ("imagenet", "vit_base_patch16_224", "jx_vit_base_p16_224")


class Attention(nn.Module):
    """Multi-head self-attention with a packed qkv Linear and an output proj (timm names), via SDPA.
    The key third of qkv.bias is not applied: it cannot change the output (models.clip.without_key_bias)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = attn_drop, nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = F.linear(x, self.qkv.weight, without_key_bias(self.qkv.bias))  # the key bias cannot change the output
        q, k, v = qkv.view(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(n, length, dim)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DividedBlock(nn.Module):
    """Temporal attention, then spatial attention, then MLP (see the module docstring)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        b, length, d = x.shape
        t = frames
        n = (length - 1) // t
        cls, patches = x[:, :1], x[:, 1:]
        # temporal: [B, (N T), D] -> [(B N), T, D], attention over the frames of each position
        xt = patches.reshape(b * n, t, d)
        res_t = self.drop_path(self.temporal_attn(self.temporal_norm1(xt)))
        patches = patches + self.temporal_fc(res_t.reshape(b, n * t, d))
        # spatial: [B, (N T), D] -> [(B T), N, D] with the class token in front of every frame
        xs = patches.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
        xs = torch.cat([cls.expand(b, t, d).reshape(b * t, 1, d), xs], dim=1)
        res_s = self.drop_path(self.attn(self.norm1(xs)))
        res_cls = res_s[:, 0].reshape(b, t, d).mean(1, keepdim=True)
        res_p = res_s[:, 1:].reshape(b, t, n, d).transpose(1, 2).reshape(b, n * t, d)
        x = torch.cat([cls + res_cls, patches + res_p], dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor):
        """frames [M, 3, H, W] -> tokens [M, h*w, D], grid (h, w)."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


class VisionTransformer(nn.Module):
    """The TimeSformer network (`model.*` of the checkpoint). forward(frames [B, T, 3, H, W], normalised)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, num_classes: int = 400, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, num_frames: int = 8,
                 dropout: float = 0.0, grad_checkpointing: bool = False):
        super().__init__()
        self.grid = img_size // patch_size
        self.num_frames = num_frames
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, embed_dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.time_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList([
            DividedBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, rates[i])
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)  # before the head (the original defines it, its forward skips it)
        self.head = nn.Linear(embed_dim, num_classes)
        self.grad_checkpointing = grad_checkpointing
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        init_linear_and_norm(self)
        for blk in list(self.blocks)[1:]:
            nn.init.zeros_(blk.temporal_fc.weight)
            nn.init.zeros_(blk.temporal_fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        tokens, grid = self.patch_embed(x.flatten(0, 1))  # [(B T), N, D]
        n, d = tokens.shape[1], tokens.shape[2]
        pos = self.pos_embed if grid == (self.grid, self.grid) else resize_pos_embed(self.pos_embed, grid)
        time = self.time_embed
        if t != time.shape[1]:
            time = F.interpolate(time.transpose(1, 2), size=t, mode="nearest").transpose(1, 2)
        cls = self.pos_drop((self.cls_token + pos[:, :1]).expand(b, 1, d))
        patches = self.pos_drop(tokens + pos[:, 1:])
        # [(B T), N, D] -> [B, N, T, D] + time -> [B, (N T), D]: position-major, frame-minor
        patches = patches.reshape(b, t, n, d).transpose(1, 2) + time.unsqueeze(1)
        patches = self.time_drop(patches).reshape(b, n * t, d)
        x = torch.cat([cls, patches], dim=1)
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.blocks:
            x = checkpoint(blk, x, t, use_reentrant=False) if recompute else blk(x, t)
        return self.norm(x)[:, 0]

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class TimeSformer(nn.Module):
    """uint8 video [B, T, 3, H, W] -> logits; normalisation with the recipe's mean/std inside. The
    arguments after `*` are the recipe's model section (TimeSformer ViT-B/16 by default)."""

    def __init__(self, num_classes: int = 400, frames: int = 8, size: int = 224,
                 mean: Sequence[float] = PYSLOWFAST_MEAN, std: Sequence[float] = PYSLOWFAST_STD, *,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, patch_size: int = 16,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.1, drop: float = 0.0,
                 attn_drop: float = 0.0, dropout: float = 0.0, bgr: bool = False, grad_checkpointing: bool = False):
        super().__init__()
        self.model = VisionTransformer(
            img_size=size, patch_size=patch_size, num_classes=num_classes, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_rate=drop, attn_drop_rate=attn_drop,
            drop_path_rate=drop_path, num_frames=frames, dropout=dropout, grad_checkpointing=grad_checkpointing)
        self.bgr, self.num_features = bgr, embed_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, H, W] -> the class token after the last norm [B, D]."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        x = clips.flip(2) if self.bgr else clips
        return self.model.forward_features((x.to(self.mean.dtype) - self.mean) / self.std)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(z)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self) -> set:
        return {"model.pos_embed", "model.cls_token", "model.time_embed"}

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        state, source = read_timesformer_weights(spec, log=log)
        if state is None:
            return {"loaded": 0}
        return load_into(self, state, source, log=log)


# ---------------------------------------------------------------------------------------------
# weights


def read_timesformer_weights(spec, log=log_to_stderr):
    """(state dict with `model.` keys, source) for a pretrained spec; (None, None) for 'none'."""
    if no_weights(spec):
        return None, None
    spec = str(spec)
    if spec in IMAGENET_NAMES:
        sha256_prefix = IMAGENET_URL.rsplit("-", 1)[-1].split(".")[0]  # jx_vit_base_p16_224-80ecf9dd.pth
        path = download(IMAGENET_URL, sha256_prefix, cache_dir("timm"), "the ImageNet ViT-B/16 weights", log=log)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SystemExit(f"error: TimeSformer weights '{spec}' not found: pretrained takes 'imagenet', the path of a "
                             f"TimeSformer .pyth or ViT state dict, or none")
    source = str(path)
    state = extract_state_dict(read_checkpoint(path, "TimeSformer weights", log=log), source,
                               containers=("model_state", "state_dict", "model"))
    if not any(k.startswith("model.") for k in state):
        state = {"model." + k: v for k, v in state.items()}
    if not any(".temporal_attn." in k for k in state) and any(".attn.qkv." in k for k in state):
        state = imagenet_to_timesformer(state, log=log)
        source = f"{source} (ImageNet ViT, mapped to divided space-time)"
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source


def imagenet_to_timesformer(state: dict, log=log_to_stderr) -> dict:
    """An image ViT (timm names under `model.`) -> TimeSformer keys, as the original initialisation:
    each block's attn.* and norm1.* copied to temporal_attn.* / temporal_norm1.*, the ImageNet head
    (and pre_logits) dropped; time_embed and temporal_fc are left to the model's initialisation."""
    out = {}
    for k, v in state.items():
        if k.startswith(("model.head.", "model.pre_logits.")):
            continue
        if k == "model.patch_embed.proj.weight" and v.ndim == 2:  # a linear patch projection
            side = int(round((v.shape[1] / 3) ** 0.5))
            v = v.reshape(v.shape[0], 3, side, side)
        out[k] = v
        if k.startswith("model.blocks.") and (".attn." in k or ".norm1." in k):
            out[k.replace(".attn.", ".temporal_attn.").replace(".norm1.", ".temporal_norm1.")] = v.clone()
    log("timesformer: ImageNet ViT mapped: attn -> temporal_attn, norm1 -> temporal_norm1, head dropped")
    return out


def load_into(model: TimeSformer, state: dict, source: str, log=log_to_stderr) -> dict:
    """Fit `state` (`model.` keys) to `model` and load it: time_embed (nearest, as the original) and
    pos_embed (bicubic) resampled to the model's frames and size; a head of another class count
    dropped; after an ImageNet mapping, time_embed / temporal_fc / head may be missing. Anything else
    that does not fit is a one-line error."""
    own = model.state_dict()
    state = dict(state)
    te, own_te = state.get("model.time_embed"), own["model.time_embed"]
    if te is not None and te.ndim == 3 and te.shape[1] != own_te.shape[1] and te.shape[2] == own_te.shape[2]:
        state["model.time_embed"] = F.interpolate(te.transpose(1, 2), size=own_te.shape[1], mode="nearest").transpose(1, 2)
        log(f"timesformer: time_embed of {source} resampled from {te.shape[1]} to {own_te.shape[1]} frames")
    fit_pos_embed(state, "model.pos_embed", model.model.grid, source, "timesformer", log=log)
    state, _ = drop_other_head(state, own, ("model.head.weight", "model.head.bias"), source, "timesformer", log=log)
    allow_missing = ["model.head.*"]
    if "ImageNet" in source:
        allow_missing += ["model.time_embed", "model.blocks.*.temporal_fc.*"]
    return load_checked(model, state, source, name="timesformer", allow_missing=allow_missing, log=log)


Model = TimeSformer


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = TimeSformer(len(class_names), inp["frames"], inp["size"], inp["mean"], inp["std"], **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
