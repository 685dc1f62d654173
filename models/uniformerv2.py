"""UniFormerV2-B/16 (Li et al., ICCV 2023): the CLIP ViT-B/16 image tower armed with local and global
UniBlocks, on the shared CLIP core (models/clip.py).

An independent implementation; the module tree and parameter names follow the official code
(github.com/OpenGVLab/UniFormerV2, slowfast/models/uniformerv2{,_model}.py, MIT licence), so its
released checkpoints load by name. The network is held as `self.backbone`, like the official
`Uniformerv2` wrapper, so every key starts with `backbone.`:

    backbone.conv1.weight                 Conv3d 3 -> 768, kernel (1, 16, 16); (3, 16, 16) stride 2 in
                                          time with TEMPORAL_DOWNSAMPLE
    backbone.{class_embedding, positional_embedding, ln_pre}
    backbone.transformer.resblocks.N.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2}      CLIP's names
    backbone.transformer.resblocks.N.lmhra{1,2}.pos_embed.{0 (BatchNorm3d), 1, 2, 3 (Conv3d)}
                                          (local MHRA; absent with NO_LMHRA, lmhra2 only with DOUBLE_LMHRA)
    backbone.transformer.temporal_cls_token [1, 1, 768]
    backbone.transformer.dpe.J            depthwise Conv3d 3x3x3 (dynamic position encoding)
    backbone.transformer.dec.J.{attn, ln_1, ln_2, ln_3, mlp.c_fc, mlp.c_proj}      global UniBlocks
    backbone.transformer.proj.{0 (LayerNorm), 2 (Linear -> classes)}, backbone.transformer.balance

Forward (uint8 [B, T, 3, H, W] -> logits):
  1. normalise (the original's PySlowFast defaults 0.45 / 0.225, not CLIP's constants; see the recipe),
     patchify every frame (Conv3d; with temporal downsampling T -> T/2), class token and positions, ln_pre;
  2. local UniBlocks = CLIP's blocks, each optionally with a local MHRA before the attention (and a
     second one before the MLP with DOUBLE_LMHRA): BatchNorm, 1x1x1 conv down (768 -> 512), depthwise
     temporal conv (3x1x1), 1x1x1 conv up, added to the patch tokens; the last conv starts at zero;
  3. after each layer of RETURN_LIST, its tokens get a DPE (depthwise 3x3x3 conv over the patch grid
     of all frames, added to the patch tokens) and a global UniBlock updates one learnable query by
     cross-attention over all tokens of all frames; out_proj and c_proj of these blocks start at zero;
  4. fusion: proj((1 - sigmoid(balance)) * query + sigmoid(balance) * mean over frames of the last
     layer's class tokens); proj = LayerNorm, dropout 0.5, Linear. There is no ln_post / CLIP proj.

At initialisation (query path zero, local MHRA zero), with NO_LMHRA and no temporal downsampling the
backbone is exactly CLIP's tower on every frame and the logits are proj(0.5 * mean_t class token).

Differences from the official code, none of which changes a name or a shape:
  * batch-first tokens [N*T, L, D] and the core's SDPA attention (the key bias is not applied; it
    cannot change a result, see models.clip.without_key_bias);
  * the local MHRA runs on channel-last tokens: BatchNorm over the channels (same statistics and
    buffers as the BatchNorm3d it is), the 1x1x1 convs as matrix products, the temporal depthwise
    conv as a 3-tap sum. Same function, no [N, C, T, H, W] permutes;
  * stochastic depth as the released code draws it: timm's DropPath on sequence-first tensors
    [L, N*T, D] keeps or drops a residual branch per token position, shared by the whole batch (for
    the global blocks, whose query is [1, N, D], the whole batch at once); DropPath(dim=1) does
    the same on batch-first tensors. The local MHRA branch drops per clip, as there;
  * the frame count and grid come from the input (the original fixes T at build time), and the
    positional embedding is resampled (bicubic) for another input size;
  * gradient checkpointing recomputes whole blocks, the local MHRA's BatchNorm statistics updated once
    (models.video_common.checkpointed); the original checkpoints attention and MLP of the first
    CHECKPOINT_NUM blocks.

Pretrained (recipe key `pretrained`):
  * 'ViT-B/16' (default) or a CLIP file: OpenAI CLIP weights through models.weights (the `visual.*`
    tensors; ln_post and proj are unused, as in the original), or a visual-only CLIP state dict
    without the `visual.` prefix (the original's vit_b16.pth, mmaction2's clipVisualEncoder files).
    conv1 is inflated to 3-D by putting the 2-D kernel at the temporal centre (zeros elsewhere), as
    the original's inflate_weight(center=True); every new module keeps its initialisation;
  * a released UniFormerV2 checkpoint by path: the official .pyth (a plain state dict or
    {'model_state': ...}, `backbone.` keys), or an mmaction2 UniFormerV2 checkpoint ({'state_dict':
    {'backbone.*', 'cls_head.fc_cls.*'}}, transformer.norm -> proj.0, cls_head.fc_cls -> proj.2). A head
    of another class count is dropped with a message; every other mismatch is a one-line error;
  * 'none'.
"""
from collections import OrderedDict
from functools import partial
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.clip import (DropPath, LayerNorm, MultiheadAttention, QuickGELU, ResidualAttentionBlock, Transformer,
                         resize_pos_embed)
from models.weights import drop_other_head, fit_pos_embed, load_checked, load_clip_visual_state, log_to_stderr
from models.video_common import PYSLOWFAST_MEAN, PYSLOWFAST_STD, checkpointed

HEAD_KEYS = ("backbone.transformer.proj.2.weight", "backbone.transformer.proj.2.bias")
# tensors of a CLIP image tower that UniFormerV2 has no use for
CLIP_UNUSED = ("ln_post.weight", "ln_post.bias", "proj")
# backbone tensors that CLIP weights do not provide
NEW_MODULES = ("transformer.resblocks.*.lmhra*", "transformer.temporal_cls_token", "transformer.dpe.*",
               "transformer.dec.*", "transformer.proj.*", "transformer.balance")


# ---------------------------------------------------------------------------------------------
# local UniBlock


class ChannelLastBatchNorm(nn.BatchNorm3d):
    """nn.BatchNorm3d (its parameters, buffers and statistics) applied to channel-last tokens [..., C]."""

    def _check_input_dim(self, input):  # torch's signature
        if input.ndim != 2:
            raise ValueError(f"expected [M, C] tokens, got {tuple(input.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class LocalMHRA(nn.Module):
    """Local multi-head relation aggregation: BN, 1x1x1 conv down, depthwise (k x 1 x 1) temporal
    conv, 1x1x1 conv up (zero-initialised), as `pos_embed.{0,1,2,3}`. forward(x [N, T, P, C]) on the
    patch tokens of N clips, channel-last -> [N, T, P, C]."""

    def __init__(self, d_model: int, dw_reduction: float = 1.5, kernel_size: int = 3):
        super().__init__()
        reduced = int(d_model // dw_reduction)
        self.pos_embed = nn.Sequential(
            ChannelLastBatchNorm(d_model),
            nn.Conv3d(d_model, reduced, kernel_size=1),
            nn.Conv3d(reduced, reduced, kernel_size=(kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0), groups=reduced),
            nn.Conv3d(reduced, d_model, kernel_size=1),
        )
        nn.init.zeros_(self.pos_embed[3].weight)
        nn.init.zeros_(self.pos_embed[3].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, down, temporal, up = self.pos_embed
        y = F.linear(norm(x), down.weight.flatten(1), down.bias)
        frames, taps = y.shape[1], temporal.weight.shape[2]
        w = temporal.weight.view(-1, taps).to(y.dtype)
        padded = F.pad(y, (0, 0, 0, 0, taps // 2, taps // 2))  # zero frames before and after
        y = sum(padded[:, k : k + frames] * w[:, k] for k in range(taps)) + temporal.bias.to(y.dtype)
        return F.linear(y, up.weight.flatten(1), up.bias)


class LocalUniBlock(ResidualAttentionBlock):
    """CLIP's block with local MHRA before the attention (lmhra >= 1) and before the MLP (lmhra == 2).
    forward(x [N*T, 1 + P, D], frames=T)."""

    def __init__(self, d_model: int, n_head: int, attn_mask=None, causal: bool = False, drop_path: float = 0.0,
                 layer: int = 0, *, lmhra: int = 0, dw_reduction: float = 1.5):
        super().__init__(d_model, n_head, attn_mask=attn_mask, causal=causal, drop_path=drop_path, layer=layer)
        self.drop_path = DropPath(drop_path, dim=1)
        self.drop_path_clip = DropPath(drop_path)  # the local MHRA branch: one draw per clip
        if lmhra >= 1:
            self.lmhra1 = LocalMHRA(d_model, dw_reduction)
        if lmhra >= 2:
            self.lmhra2 = LocalMHRA(d_model, dw_reduction)

    def local(self, x: torch.Tensor, mhra: LocalMHRA, frames: int) -> torch.Tensor:
        nt, length, d = x.shape
        patches = x[:, 1:].reshape(nt // frames, frames, length - 1, d)
        patches = patches + self.drop_path_clip(mhra(patches))
        return torch.cat([x[:, :1], patches.reshape(nt, length - 1, d)], dim=1)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        if hasattr(self, "lmhra1"):
            x = self.local(x, self.lmhra1, frames)
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        if hasattr(self, "lmhra2"):
            x = self.local(x, self.lmhra2, frames)
        return x + self.drop_path(self.mlp(self.ln_2(x)))


# ---------------------------------------------------------------------------------------------
# global UniBlock


class GlobalUniBlock(nn.Module):
    """The official `Extractor`: a query [N, 1, D] cross-attends to tokens [N, S, D] (ln_1 on the
    query, ln_3 on the tokens), then an MLP (ln_2, dropout inside). out_proj and c_proj start at zero."""

    def __init__(self, d_model: int, n_head: int, mlp_factor: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.drop_path = DropPath(drop_path, dim=1)
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        hidden = round(mlp_factor * d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, hidden)),
            ("gelu", QuickGELU()),
            ("dropout", nn.Dropout(dropout)),
            ("c_proj", nn.Linear(hidden, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.ln_3 = LayerNorm(d_model)
        nn.init.xavier_uniform_(self.attn.in_proj_weight)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)
        nn.init.xavier_uniform_(self.mlp.c_fc.weight)
        nn.init.zeros_(self.mlp.c_proj.weight)
        nn.init.zeros_(self.mlp.c_proj.bias)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        query = query + self.drop_path(self.attn(self.ln_1(query), self.ln_3(tokens)))
        return query + self.drop_path(self.mlp(self.ln_2(query)))


class UniTransformer(Transformer):
    """The core Transformer of LocalUniBlocks plus the global path: after each layer of return_list,
    DPE + a GlobalUniBlock on the query; then the CLS/query fusion and the classifier `proj`.
    forward(x [N*T, 1 + h*w, D], frames=T, grid=(h, w)) -> the fused features [N, D] (the classifier
    `proj` is applied by the caller)."""

    def __init__(self, width: int, layers: int, heads: int, num_classes: int, *, return_list, lmhra: int = 0,
                 dw_reduction: float = 1.5, backbone_drop_path: float = 0.0, n_head: Optional[int] = None, mlp_factor: float = 4.0,
                 drop_path: float = 0.0, mlp_dropout=0.5, cls_dropout: float = 0.5, grad_checkpointing: bool = False):
        super().__init__(width, layers, heads, drop_path=backbone_drop_path,
                         block=partial(LocalUniBlock, lmhra=lmhra, dw_reduction=dw_reduction),
                         grad_checkpointing=grad_checkpointing)
        self.return_list = [int(i) for i in return_list]
        if len(set(self.return_list)) != len(self.return_list) or not all(0 <= i < layers for i in self.return_list):
            raise ValueError(f"return_list {self.return_list} must name distinct layers of 0..{layers - 1}")
        n = len(self.return_list)
        dropouts = list(mlp_dropout) if isinstance(mlp_dropout, (list, tuple)) else [float(mlp_dropout)] * n
        if len(dropouts) != n:
            raise ValueError(f"mlp_dropout has {len(dropouts)} values for {n} global blocks")
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.dpe = nn.ModuleList([nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width) for _ in range(n)])
        for conv in self.dpe:
            nn.init.zeros_(conv.bias)
        rates = [drop_path * i / max(n - 1, 1) for i in range(n)]
        self.dec = nn.ModuleList([GlobalUniBlock(width, n_head or heads, mlp_factor, dropouts[i], rates[i]) for i in range(n)])
        self.proj = nn.Sequential(LayerNorm(width), nn.Dropout(cls_dropout), nn.Linear(width, num_classes))
        self.balance = nn.Parameter(torch.zeros(width))

    def global_block(self, j: int, query: torch.Tensor, x: torch.Tensor, frames: int, grid) -> torch.Tensor:
        nt, length, d = x.shape
        tokens = x.reshape(nt // frames, frames, length, d)
        patches = tokens[:, :, 1:]
        volume = patches.unflatten(2, grid).permute(0, 4, 1, 2, 3)  # [N, D, T, h, w], a channels-last view
        position = self.dpe[j](volume).permute(0, 2, 3, 4, 1).flatten(2, 3)  # [N, T, P, D]
        tokens = torch.cat([tokens[:, :, :1], patches + position], dim=2).flatten(1, 2)  # [N, T * (1 + P), D]
        return self.dec[j](query, tokens)

    def forward(self, x: torch.Tensor, frames: int, grid) -> torch.Tensor:
        nt, _, d = x.shape
        n = nt // frames
        query = self.temporal_cls_token.expand(n, 1, d)
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        j = 0
        for i, blk in enumerate(self.resblocks):
            x = checkpointed(blk, x, frames) if recompute else blk(x, frames)  # BN statistics updated once
            if i in self.return_list:
                args = (j, query, x, frames, tuple(grid))
                query = checkpoint(self.global_block, *args, use_reentrant=False) if recompute else self.global_block(*args)
                j += 1
        weight = torch.sigmoid(self.balance)
        residual = x[:, 0].reshape(n, frames, d).mean(1)
        return (1 - weight) * query[:, 0] + weight * residual


class UniFormerV2Backbone(nn.Module):
    """The official `VisionTransformer` of uniformerv2_model.py: forward(frames [N, T, 3, H, W],
    normalised) -> the fused features before the classifier `transformer.proj`."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, num_classes: int,
                 *, temporal_downsample: bool = False, kernel_size: int = 3, **transformer):
        super().__init__()
        self.input_resolution, self.patch_size = input_resolution, patch_size
        self.grid = input_resolution // patch_size
        if temporal_downsample:
            self.conv1 = nn.Conv3d(3, width, (kernel_size, patch_size, patch_size), (2, patch_size, patch_size),
                                   ((kernel_size - 1) // 2, 0, 0), bias=False)
        else:
            self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = UniTransformer(width, layers, heads, num_classes, **transformer)

    def patchify(self, x: torch.Tensor):
        """[N, T, 3, H, W] -> (patch features [N*T', D, h, w], T')."""
        w = self.conv1.weight
        if w.shape[2] == 1 and self.conv1.stride[0] == 1:  # per-frame patches: a 2-D convolution
            return F.conv2d(x.flatten(0, 1).to(w.dtype), w[:, :, 0], stride=self.conv1.stride[1:]), x.shape[1]
        y = self.conv1(x.transpose(1, 2).to(w.dtype))  # [N, D, T', h, w]
        return y.transpose(1, 2).flatten(0, 1), y.shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, frames = self.patchify(x)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2).to(self.class_embedding.dtype)  # fp32 residual stream under autocast
        pos = self.positional_embedding
        if grid != (self.grid, self.grid):
            pos = resize_pos_embed(pos, grid)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + pos
        return self.transformer(self.ln_pre(x), frames=frames, grid=grid)


def inflate_center(weight_2d: torch.Tensor, time: int) -> torch.Tensor:
    """[O, I, k, k] -> [O, I, time, k, k] with the 2-D kernel at the temporal centre, zeros elsewhere."""
    out = weight_2d.new_zeros(weight_2d.shape[:2] + (time,) + weight_2d.shape[2:])
    out[:, :, time // 2] = weight_2d
    return out


class UniFormerV2(nn.Module):
    """uint8 video [B, T, 3, H, W] -> logits [B, classes]; normalisation with the recipe's mean/std inside.
    The arguments after `*` are the recipe's model section (the original's options, lower-cased;
    UniFormerV2-B/16 by default)."""

    def __init__(self, num_classes: int = 400, size: int = 224, mean: Sequence[float] = PYSLOWFAST_MEAN,
                 std: Sequence[float] = PYSLOWFAST_STD, *, width: int = 768, layers: int = 12,
                 heads: Optional[int] = None, patch_size: int = 16, temporal_downsample: bool = False,
                 kernel_size: int = 3, no_lmhra: bool = False, double_lmhra: bool = True, dw_reduction: float = 1.5,
                 return_list: Sequence[int] = (8, 9, 10, 11), n_head: Optional[int] = None, mlp_factor: float = 4.0,
                 backbone_drop_path: float = 0.0, drop_path: float = 0.0,
                 mlp_dropout: Union[float, Sequence[float]] = 0.5, cls_dropout: float = 0.5,
                 grad_checkpointing: bool = False):
        super().__init__()
        self.backbone = UniFormerV2Backbone(
            size, patch_size, width, layers, heads or max(width // 64, 1), num_classes,
            temporal_downsample=temporal_downsample, kernel_size=kernel_size, return_list=return_list,
            lmhra=0 if no_lmhra else (2 if double_lmhra else 1), dw_reduction=dw_reduction,
            backbone_drop_path=backbone_drop_path, n_head=n_head, mlp_factor=mlp_factor, drop_path=drop_path,
            mlp_dropout=mlp_dropout, cls_dropout=cls_dropout, grad_checkpointing=grad_checkpointing)
        self.num_features = width
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, H, W] -> the fusion of the global query and the class tokens [B, D]."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        return self.backbone((clips.to(self.mean.dtype) - self.mean) / self.std)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone.transformer.proj(z)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self) -> set:
        """None beyond the harness's 1-D rule: the original decays positional_embedding,
        temporal_cls_token and all other >= 2-D tensors (SOLVER.ZERO_WD_1D_PARAM only)."""
        return set()

    # -----------------------------------------------------------------------------------------
    # weights

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        kind, state, source = load_clip_visual_state(spec, "UniFormerV2", release_prefix="backbone.",
                                                     containers=("model_state", "state_dict", "model"), log=log)
        if kind is None:
            return {"loaded": 0}
        if kind == "clip":
            return self.load_clip_visual(state, source, log=log)
        return self.load_release(state, source, log=log)

    def load_clip_visual(self, visual: dict, source: str, log=log_to_stderr) -> dict:
        """A CLIP image tower's tensors (no `visual.` prefix) into the backbone: conv1 inflated,
        positions resampled to this input size, ln_post/proj left out, new modules at their init."""
        visual = dict(visual)
        unused = [k for k in CLIP_UNUSED if visual.pop(k, None) is not None]
        own = self.backbone.conv1.weight
        w = visual.get("conv1.weight")
        if w is not None and w.ndim == 4 and own.ndim == 5:
            visual["conv1.weight"] = inflate_center(w, own.shape[2])
        fit_pos_embed(visual, "positional_embedding", self.backbone.grid, source, "uniformerv2", log=log)
        report = load_checked(self.backbone, visual, source, name="uniformerv2.backbone", allow_missing=NEW_MODULES, log=log)
        if unused:
            log(f"uniformerv2: {', '.join(unused)} of {source} are not used (UniFormerV2 has no ln_post / CLIP proj)")
        return report

    def load_release(self, state: dict, source: str, log=log_to_stderr) -> dict:
        """A released UniFormerV2 state dict (`backbone.` keys, official or mmaction2 layout) into the
        model; a head of another class count is dropped and keeps its initialisation."""
        state = from_mmaction2(state)
        state, dropped = drop_other_head(state, self.state_dict(), HEAD_KEYS, source, "uniformerv2", log=log)
        fit_pos_embed(state, "backbone.positional_embedding", self.backbone.grid, source, "uniformerv2", log=log)
        allow_missing = ["*num_batches_tracked", *(HEAD_KEYS if dropped else ())]
        report = load_checked(self, state, source, name="uniformerv2", allow_missing=allow_missing, log=log)
        return {**report, "dropped_head": dropped}


def from_mmaction2(state: dict) -> dict:
    """mmaction2's UniFormerV2 layout (backbone.transformer.norm, cls_head.fc_cls) -> the official one."""
    if not any(k.startswith(("cls_head.", "backbone.transformer.norm.")) for k in state):
        return state
    out = {}
    for k, v in state.items():
        if k.startswith("backbone.transformer.norm."):
            k = "backbone.transformer.proj.0." + k[len("backbone.transformer.norm."):]
        elif k.startswith("cls_head.fc_cls."):
            k = "backbone.transformer.proj.2." + k[len("cls_head.fc_cls."):]
        out[k] = v
    return out


Model = UniFormerV2


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = UniFormerV2(len(class_names), inp["size"], inp["mean"], inp["std"], **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
