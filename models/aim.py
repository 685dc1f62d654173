"""AIM ViT-B/16 (Yang et al., "AIM: Adapting Image Models for Efficient Video Action Recognition",
ICLR 2023): a frozen CLIP ViT-B/16 image tower with spatial, temporal and joint adapters, on the
shared CLIP core (models/clip.py).

An independent implementation; the module tree and parameter names follow the official code
(github.com/taoyang1122/adapt-image-models, mmaction/models/backbones/vit_clip.py `ViT_CLIP` with
mmaction2's `Recognizer3D` + `I3DHead`; Apache-2.0), so its released mmaction2 checkpoints
({'meta', 'state_dict', 'optimizer'}) load by name:

    backbone.{conv1 (Conv2d, no bias), class_embedding, positional_embedding, ln_pre, ln_post}   CLIP's
    backbone.temporal_embedding [1, T, 768]           added to every token of frame t before ln_pre
    backbone.transformer.resblocks.N.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2}                   CLIP's
    backbone.transformer.resblocks.N.{T_Adapter, T_Adapter_in (2 temporal adapters), S_Adapter,
                                      MLP_Adapter}.{D_fc1 (768 -> 192), D_fc2 (192 -> 768)}
    cls_head.fc_cls                                   Linear 768 -> classes (I3DHead)

There is no CLIP `proj`: the feature is ln_post of the class token (768-d).

Each block, on tokens x of every frame ([B*T, 1 + P, D] here; [1 + P, B*T, D] in the original):
  1. temporal adaptation: the same tokens regrouped per (clip, token position) into sequences over
     the T frames go through ln_1 and the block's own frozen attention (T-MSA shares S-MSA's weights),
     then T_Adapter (no skip); added to x with stochastic depth. With 2 temporal adapters
     (num_tadapter 2, the study's SSv2-TA / Syn-TA configs) T_Adapter_in (with skip) sits between
     ln_1 and the attention;
  2. spatial adaptation: x + S_Adapter(attn(ln_1(x))), S_Adapter with its skip connection;
  3. joint adaptation: x + mlp(ln_2(x)) + drop_path(adapter_scale * MLP_Adapter(ln_2(x))).
  Adapter = D_fc1, exact GELU, D_fc2 (+ input when skip_connect). Head: mean of the T class features,
  dropout 0.5, fc_cls (I3DHead: average pooling over [B, D, T, 1, 1], dropout, linear).

Initialisation as the original (init_weights + I3DHead.init_weights): every Linear of the backbone
trunc_normal(0.02) with zero bias and LayerNorms 1/0, then the CLIP weights, then D_fc2 of every
adapter set to zero; temporal_embedding zeros; fc_cls N(0, 0.01). With the D_fc2 at zero every adapter
adds nothing (T_Adapter and MLP_Adapter output 0, S_Adapter is the identity), so at initialisation
the backbone is exactly CLIP's image tower on every frame: features = mean_t ln_post(class token).

Training (the original's tools/train.py): every parameter whose name contains none of
`temporal_embedding`, `ln_post`, `cls_head`, `Adapter` is frozen (requires_grad False), so the
adapters, temporal_embedding, ln_post and the head are trained (11 M of 97 M).

Differences from the official code, none of which changes a name or a shape:
  * batch-first tokens and the core's SDPA attention (key bias not applied: it cannot change a
    result, see models.clip.without_key_bias);
  * stochastic depth as the released code draws it: timm's DropPath on its sequence-first tensors
    [1 + P, B*T, D] keeps or drops a branch per token position, shared by the whole batch;
    DropPath(dim=1) does that on batch-first tensors;
  * temporal_embedding is resampled (linear) when the input has another frame count than built for,
    and positional_embedding (bicubic) for another input size.

Pretrained (recipe key `pretrained`): 'ViT-B/16' (default; OpenAI CLIP through models.weights, the
`visual.*` tensors without proj) or a CLIP file; a released AIM checkpoint by path (mmaction2
{'state_dict': {'backbone.*', 'cls_head.*'}}, or a plain state dict with those keys): a head of
another class count is dropped with a message and temporal_embedding is resampled to this frame
count; every other mismatch is a one-line error; or 'none'.
"""
from functools import partial
from typing import Optional, Sequence

import torch
import torch.nn as nn

from models.clip import (CLIP_MEAN_255, CLIP_STD_255, DropPath, ResidualAttentionBlock, VisionTransformer, init_linear_and_norm,
                         resample_frames)
from models.weights import (drop_other_head, fit_pos_embed, fit_time_embed, load_checked, load_clip_visual_state,
                            log_to_stderr)

HEAD_KEYS = ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias")
# name substrings of the parameters AIM trains (the original's tools/train.py); all others are frozen
TRAINED = ("temporal_embedding", "ln_post", "cls_head", "Adapter")


class Adapter(nn.Module):
    """Bottleneck D -> D * ratio -> D with exact GELU; + input when skip_connect."""

    def __init__(self, d_model: int, ratio: float = 0.25, skip_connect: bool = True):
        super().__init__()
        self.skip_connect = skip_connect
        hidden = int(d_model * ratio)
        self.act = nn.GELU()
        self.D_fc1 = nn.Linear(d_model, hidden)
        self.D_fc2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.D_fc2(self.act(self.D_fc1(x)))
        return x + out if self.skip_connect else out


class AIMBlock(ResidualAttentionBlock):
    """CLIP's block with temporal, spatial and joint adapters. forward(x [B*T, L, D], frames=T)."""

    def __init__(self, d_model: int, n_head: int, attn_mask=None, causal: bool = False, drop_path: float = 0.0,
                 layer: int = 0, *, scale: float = 0.5, num_tadapter: int = 1, ratio: float = 0.25):
        super().__init__(d_model, n_head, attn_mask=attn_mask, causal=causal, drop_path=drop_path, layer=layer)
        if num_tadapter not in (1, 2):
            raise ValueError(f"num_tadapter must be 1 or 2, got {num_tadapter}")
        self.drop_path = DropPath(drop_path, dim=1)
        self.MLP_Adapter = Adapter(d_model, ratio, skip_connect=False)
        self.S_Adapter = Adapter(d_model, ratio)
        self.scale = scale
        self.T_Adapter = Adapter(d_model, ratio, skip_connect=False)
        if num_tadapter == 2:
            self.T_Adapter_in = Adapter(d_model, ratio)
        self.num_tadapter = num_tadapter

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, length, d = x.shape
        b = bt // frames
        # temporal: [(B T), L, D] -> [(B L), T, D], attention over the frames of each token position
        xt = self.ln_1(x).view(b, frames, length, d).transpose(1, 2).reshape(b * length, frames, d)
        if self.num_tadapter == 2:
            xt = self.T_Adapter_in(xt)
        xt = self.T_Adapter(self.attention(xt))
        x = x + self.drop_path(xt.view(b, length, frames, d).transpose(1, 2).reshape(bt, length, d))
        # spatial
        x = x + self.S_Adapter(self.attention(self.ln_1(x)))
        # joint
        xn = self.ln_2(x)
        return x + self.mlp(xn) + self.drop_path(self.scale * self.MLP_Adapter(xn))


class AIMVisionTransformer(VisionTransformer):
    """The official `ViT_CLIP`: the core image tower without proj, plus temporal_embedding.
    forward(frames [B*T, 3, H, W], frames=T) -> ln_post(class token) [B*T, D]."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, num_frames: int, *,
                 drop_path: float = 0.0, block=AIMBlock, grad_checkpointing: bool = False):
        super().__init__(input_resolution, patch_size, width, layers, heads, None, drop_path=drop_path, block=block,
                         grad_checkpointing=grad_checkpointing)
        self.num_frames = num_frames
        self.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, width))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.embed(x)
        bt, length, d = x.shape
        te = resample_frames(self.temporal_embedding, frames)
        x = (x.view(bt // frames, frames, length, d) + te.unsqueeze(2)).view(bt, length, d)
        x = self.transformer(self.ln_pre(x), frames=frames)
        return self.pool(x)


class ClsHead(nn.Module):
    """mmaction2's I3DHead after its average pooling over T: dropout, fc_cls."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5, init_std: float = 0.01):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, std=init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """pooled features [B, D] -> logits [B, classes]."""
        return self.fc_cls(self.dropout(z))


class AIM(nn.Module):
    """uint8 video [B, T, 3, H, W] -> logits [B, classes]; normalisation with the recipe's mean/std inside.
    The arguments after `*` are the recipe's model section (AIM ViT-B/16 by default)."""

    def __init__(self, num_classes: int = 400, frames: int = 8, size: int = 224, mean: Sequence[float] = CLIP_MEAN_255,
                 std: Sequence[float] = CLIP_STD_255, *, width: int = 768, layers: int = 12, heads: Optional[int] = None,
                 patch_size: int = 16, adapter_ratio: float = 0.25, adapter_scale: float = 0.5, num_tadapter: int = 1,
                 drop_path: float = 0.0, dropout: float = 0.5, head_init_std: float = 0.01, freeze: bool = True,
                 grad_checkpointing: bool = False):
        super().__init__()
        block = partial(AIMBlock, scale=adapter_scale, num_tadapter=num_tadapter, ratio=adapter_ratio)
        self.backbone = AIMVisionTransformer(size, patch_size, width, layers, heads or max(width // 64, 1), frames,
                                             drop_path=drop_path, block=block, grad_checkpointing=grad_checkpointing)
        self.num_features = width
        self.cls_head = ClsHead(width, num_classes, dropout, head_init_std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.init_weights()
        if freeze:
            self.freeze()

    def init_weights(self) -> None:
        """The original's ViT_CLIP.init_weights before and after loading CLIP: backbone Linears
        trunc_normal(0.02) / zero bias, LayerNorms 1 / 0, and D_fc2 of every adapter zero."""
        init_linear_and_norm(self.backbone)
        self.zero_adapter_outputs()

    def zero_adapter_outputs(self) -> None:
        for mod in self.backbone.modules():
            if isinstance(mod, Adapter):
                nn.init.zeros_(mod.D_fc2.weight)
                nn.init.zeros_(mod.D_fc2.bias)

    def freeze(self) -> None:
        """Train only the adapters, temporal_embedding, ln_post and the head, as the original."""
        for name, p in self.named_parameters():
            p.requires_grad_(any(key in name for key in TRAINED))

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, H, W] -> per-frame features ln_post(class token) [B, T, D]."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = (clips.to(self.mean.dtype) - self.mean) / self.std
        return self.backbone(x.flatten(0, 1), frames=t).view(b, t, -1)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """The frame features averaged over T [B, D] (I3DHead's average pooling)."""
        return self.frame_features(clips).mean(1)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.cls_head(z)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self) -> set:
        """The original's paramwise custom_keys with decay_mult 0: class_embedding, positional_embedding
        (frozen) and the LayerNorms (1-D, never decayed here). temporal_embedding is decayed, as there."""
        return {"backbone.class_embedding", "backbone.positional_embedding"}

    # -----------------------------------------------------------------------------------------
    # weights

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        kind, state, source = load_clip_visual_state(spec, "AIM", release_prefix="backbone.", log=log)
        if kind is None:
            return {"loaded": 0}
        if kind == "clip":
            return self.load_clip_visual(state, source, log=log)
        return self.load_release(state, source, log=log)

    def load_clip_visual(self, visual: dict, source: str, log=log_to_stderr) -> dict:
        """A CLIP image tower's tensors (no `visual.` prefix) into the backbone; proj is unused, the
        adapters and temporal_embedding keep their initialisation (D_fc2 zero)."""
        visual = dict(visual)
        unused = [k for k in ("proj",) if visual.pop(k, None) is not None]
        fit_pos_embed(visual, "positional_embedding", self.backbone.grid, source, "aim", log=log)
        report = load_checked(self.backbone, visual, source, name="aim.backbone",
                              allow_missing=("temporal_embedding", "transformer.resblocks.*Adapter*"), log=log)
        if unused:
            log(f"aim: proj of {source} is not used (AIM classifies ln_post of the class token)")
        return report

    def load_release(self, state: dict, source: str, log=log_to_stderr) -> dict:
        """A released AIM state dict (backbone.*, cls_head.*) into the model: a head of another class
        count dropped, temporal_embedding / positional_embedding resampled to this input."""
        own = self.state_dict()
        state = dict(state)
        state, dropped = drop_other_head(state, own, HEAD_KEYS, source, "aim", log=log)
        fit_time_embed(state, own, "backbone.temporal_embedding", source, "aim", log=log)
        fit_pos_embed(state, "backbone.positional_embedding", self.backbone.grid, source, "aim", log=log)
        report = load_checked(self, state, source, name="aim", allow_missing=HEAD_KEYS if dropped else (), log=log)
        return {**report, "dropped_head": dropped}


Model = AIM


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = AIM(len(class_names), inp["frames"], inp["size"], inp["mean"], inp["std"], **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
