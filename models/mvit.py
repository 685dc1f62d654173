"""Multiscale Vision Transformers as PySlowFast builds them: MViTv2-S (recipe mvitv2.yaml) and the
reversible Rev-MViT-B (recipe revmvit.yaml).

Both follow slowfast/models/video_model_builder.py `MViT` (+ attention.py, reversible_mvit.py):

  * patch embedding (`patch_embed.proj`): Conv3d 3 -> 96, kernel 3x7x7, stride 2x4x4, padding 1x3x3,
    so a 16 x 224^2 clip becomes 8 x 56 x 56 tokens;
  * 16 blocks in 4 stages; at the stage transitions (blocks 1, 3, 14) the query is pooled with stride
    1x2x2 (fewer tokens) while channels and heads double (96 -> 192 -> 384 -> 768, 1 -> 8 heads);
    keys/values are pooled with an adaptive stride (1x8x8 at the first stage, divided by every query
    stride). Pooling is a depthwise 3x3x3 Conv3d per head followed by LayerNorm (`attn.pool_q`,
    `attn.norm_q`, likewise k and v), shared across heads.

MViTv2-S (configs/Kinetics/MVITv2_S_16x4.yaml): query pooling (stride 1 or 2) in every block, the
channel increase inside attention (DIM_MUL_IN_ATT: qkv maps dim -> 3 x dim_out, and the residual is
`proj(norm1(x))`), decomposed relative positions (REL_POS_SPATIAL/TEMPORAL: `attn.rel_pos_h/w/t`,
added to the attention logits as q . R[h_q - h_k] etc.), residual pooling (the pooled query is added
to the attention output), a class token (`cls_token`) read out after the last LayerNorm, no
absolute position embedding, qkv bias, drop-path 0.2 (0.4 on SSv2), head dropout 0.5.

Rev-MViT-B (configs/Kinetics/REV_MVIT_B_16x4_CONV.yaml, MVIT.REV): the same stage layout without
relative positions, residual pooling or class token (the reversible backbone does not allow one),
separable absolute position embeddings (`pos_embed_spatial`, `pos_embed_temporal`), no qkv bias.
Inside a stage the blocks are reversible two-stream blocks (`rev_backbone.layers.N.F` = LN +
attention, `.G` = LN + MLP):  Y1 = X1 + F(X2),  Y2 = X2 + G(Y1),  so the inputs are recomputed from the
outputs in the backward pass (X2 = Y2 - G(Y1), X1 = Y1 - F(X2)) and activation memory does not grow
with the number of blocks (RevStage below: a torch.autograd.Function). The stage-transition blocks
1, 3 and 14 are ordinary residual blocks: they average the two streams, pool the query and the
residual (the residual through the same pooling conv as the query, after a linear projection
`res_proj` to the new width) and widen the channels. The two streams of the last stage are
concatenated (2 x 768), normalised, averaged over tokens and classified.

Attention runs through F.scaled_dot_product_attention. MViTv2's relative-position terms are folded
into it exactly: the query gets the extra features (q . R_h, q . R_w, q . R_t) and the key the matching
one-hot coordinates, so q'.k' = scale q.k + bias and no N_q x N_k bias tensor is built (model.attn_impl
`math` is the explicit PySlowFast computation, kept as the reference the tests compare against).
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.video_common import (PYSLOWFAST_MEAN, PYSLOWFAST_STD, VideoInput, drop_path, drop_path_mask, load_pretrained,
                                 round_width)


def attention_pool(x, pool, thw, has_cls, norm=None):
    """Pool tokens [B, heads, L, C] (or [B, L, C]) laid out as (cls?, T x H x W) with a 3D op."""
    if pool is None:
        return x, thw
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if has_cls:
        cls, x = x[:, :, :1], x[:, :, 1:]
    b, n, _, c = x.shape
    x = pool(x.reshape(b * n, *thw, c).permute(0, 4, 1, 2, 3))
    thw = list(x.shape[2:])
    x = x.reshape(b, n, c, -1).transpose(2, 3)
    if has_cls:
        x = torch.cat([cls, x], dim=2)
    if norm is not None:
        x = norm(x)
    return (x.squeeze(1) if squeeze else x), thw


def rel_pos_table(rel_pos, q_size, k_size):
    """R[i, j] = rel_pos[dist(i, j)] for query/key sizes of different resolution (PySlowFast's
    cal_rel_pos_spatial/temporal distance rule); interpolates the table when its length differs."""
    length = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()
    q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    dist = (torch.arange(q_size, device=rel_pos.device)[:, None] * q_ratio
            - torch.arange(k_size, device=rel_pos.device)[None, :] * k_ratio + (k_size - 1) * k_ratio)
    return rel_pos[dist.long()]  # [q_size, k_size, C]


class MultiScaleAttention(nn.Module):
    def __init__(self, dim, dim_out, input_size, num_heads, qkv_bias, kernel_q, kernel_kv, stride_q, stride_kv,
                 has_cls, rel_pos_spatial=False, rel_pos_temporal=False, rel_pos_zero_init=False,
                 residual_pooling=False, attn_impl="sdpa"):
        super().__init__()
        self.num_heads, self.dim_out, self.has_cls = num_heads, dim_out, has_cls
        head_dim = dim_out // num_heads
        self.scale = head_dim ** -0.5
        self.residual_pooling, self.attn_impl = residual_pooling, attn_impl
        self.thw = list(input_size)  # token grid of the input (static: the geometry is fixed by the recipe)
        self.qkv = nn.Linear(dim, dim_out * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)
        if math.prod(kernel_q) == 1 and math.prod(stride_q) == 1:
            kernel_q = ()
        if math.prod(kernel_kv) == 1 and math.prod(stride_kv) == 1:
            kernel_kv = ()
        for name, kernel, stride in (("q", kernel_q, stride_q), ("k", kernel_kv, stride_kv), ("v", kernel_kv, stride_kv)):
            if len(kernel) > 0:
                self.add_module(f"pool_{name}", nn.Conv3d(head_dim, head_dim, kernel, stride=stride,
                                                          padding=[k // 2 for k in kernel], groups=head_dim, bias=False))
                self.add_module(f"norm_{name}", nn.LayerNorm(head_dim, eps=1e-6))
            else:
                setattr(self, f"pool_{name}", None)
                setattr(self, f"norm_{name}", None)
        self.rel_pos_spatial, self.rel_pos_temporal = rel_pos_spatial, rel_pos_temporal
        if rel_pos_spatial:
            size = input_size[1]
            q_size = size // stride_q[1] if len(stride_q) > 0 else size
            kv_size = size // stride_kv[1] if len(stride_kv) > 0 else size
            length = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(length, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(length, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)
        if rel_pos_temporal:
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_t, std=0.02)

    def rel_pos_terms(self, q, q_thw, k_thw):
        """[(q . R[query position, j] for every key coordinate j  [B, heads, qt, qh, qw, size], size,
        axis of the coordinate in (t, h, w))] for the spatial-h, spatial-w and temporal terms; q is the
        unscaled pooled query without its class token."""
        b, n, _, c = q.shape
        qt, qh, qw = q_thw
        kt, kh, kw = k_thw
        r_q = q.reshape(b, n, qt, qh, qw, c)
        terms = []
        if self.rel_pos_spatial:
            rh = rel_pos_table(self.rel_pos_h, qh, kh).to(q.dtype)
            rw = rel_pos_table(self.rel_pos_w, qw, kw).to(q.dtype)
            terms.append((torch.einsum("bythwc,hkc->bythwk", r_q, rh), kh, 1))
            terms.append((torch.einsum("bythwc,wkc->bythwk", r_q, rw), kw, 2))
        if self.rel_pos_temporal:
            rt = rel_pos_table(self.rel_pos_t, qt, kt).to(q.dtype)
            terms.append((torch.einsum("bythwc,tkc->bythwk", r_q, rt), kt, 0))
        return terms

    def attend(self, q, k, v, q_thw, k_thw):
        s = 1 if self.has_cls else 0
        if not (self.rel_pos_spatial or self.rel_pos_temporal):
            if self.attn_impl == "math":
                return ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1) @ v
            return F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        b, n, _, c = q.shape
        terms = self.rel_pos_terms(q[:, :, s:], q_thw, k_thw)
        grid = torch.stack(torch.meshgrid(*[torch.arange(x, device=q.device) for x in k_thw], indexing="ij"), -1).view(-1, 3)
        if self.attn_impl == "math":  # PySlowFast: logits + bias, softmax, @ v
            attn = (q * self.scale) @ k.transpose(-2, -1)
            bias = sum(term.flatten(2, 4)[..., grid[:, axis]] for term, _, axis in terms)  # [B, n, Nq_sp, Nk_sp]
            attn = torch.cat([attn[:, :, :s], torch.cat([attn[:, :, s:, :s], attn[:, :, s:, s:] + bias], -1)], 2)
            return attn.softmax(-1) @ v
        # SDPA with the bias folded into the dot product: q' = [scale q, q.R_h, q.R_w, q.R_t],
        # k' = [k, onehot(h_k), onehot(w_k), onehot(t_k)]; class-token rows/columns get zeros.
        q_extra = torch.cat([term.flatten(2, 4) for term, _, _ in terms], -1)
        k_extra = torch.cat([F.one_hot(grid[:, axis], size).to(k.dtype) for _, size, axis in terms], -1)
        e = q_extra.shape[-1]
        pad = -(c + e) % 8  # keep the head dimension a multiple of 8 for the fused kernels
        q_extra = F.pad(q_extra, (0, pad, s, 0))
        k_extra = F.pad(k_extra, (0, pad, s, 0)).expand(b, n, -1, -1)
        q2 = torch.cat([q * self.scale, q_extra], -1)
        k2 = torch.cat([k, k_extra], -1)
        out = F.scaled_dot_product_attention(q2, k2, F.pad(v, (0, e + pad)), scale=1.0)
        return out[..., :c]

    def forward(self, x):
        b, n_tok, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n_tok, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, q_thw = attention_pool(q, self.pool_q, self.thw, self.has_cls, self.norm_q)
        k, k_thw = attention_pool(k, self.pool_k, self.thw, self.has_cls, self.norm_k)
        v, _ = attention_pool(v, self.pool_v, self.thw, self.has_cls, self.norm_v)
        x = self.attend(q, k, v, q_thw, k_thw)
        if self.residual_pooling:
            s = 1 if self.has_cls else 0
            x = torch.cat([x[:, :, :s], x[:, :, s:] + q[:, :, s:]], dim=2)
        x = x.transpose(1, 2).reshape(b, -1, self.dim_out)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim_in, hidden, dim_out=None):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim_out or dim_in)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ---------------------------------------------------------------------------------------------
# the per-layer schedule of a PySlowFast MViT config


def layer_schedule(depth: int, dim_mul, head_mul, pool_q_stride, pool_kvq_kernel, pool_kv_stride,
                   pool_kv_stride_adaptive):
    """dim_mul / head_mul (length depth + 1) and per-layer pooling kernels and strides, as
    MViT.__init__ derives them from DIM_MUL, HEAD_MUL, POOL_Q_STRIDE, POOL_KVQ_KERNEL and
    POOL_KV_STRIDE(_ADAPTIVE) (the model arguments of the same names)."""
    dim_muls, head_muls = [1.0] * (depth + 1), [1.0] * (depth + 1)
    for i, v in dim_mul:
        dim_muls[i] = v
    for i, v in head_mul:
        head_muls[i] = v
    kernel = pool_kvq_kernel
    pool_q, pool_kv = [[] for _ in range(depth)], [[] for _ in range(depth)]
    stride_q, stride_kv = [[] for _ in range(depth)], [[] for _ in range(depth)]
    for i, *s in pool_q_stride:
        stride_q[i] = list(s)
        pool_q[i] = list(kernel) if kernel is not None else [x + 1 if x > 1 else x for x in s]
    kv_strides = [list(e) for e in pool_kv_stride]
    if pool_kv_stride_adaptive is not None:
        current, kv_strides = list(pool_kv_stride_adaptive), []
        for i in range(depth):
            if len(stride_q[i]) > 0:
                current = [max(current[d] // stride_q[i][d], 1) for d in range(len(current))]
            kv_strides.append([i] + current)
    for i, *s in kv_strides:
        stride_kv[i] = list(s)
        pool_kv[i] = list(kernel) if kernel is not None else [x + 1 if x > 1 else x for x in s]
    return dim_muls, head_muls, pool_q, pool_kv, stride_q, stride_kv


def layer_attention(attention: dict, schedule, i: int, has_cls: bool) -> dict:
    """MultiScaleAttention's keyword arguments for layer i: the model's common ones and the layer's pooling."""
    _, _, pool_q, pool_kv, stride_q, stride_kv = schedule
    return dict(attention, kernel_q=pool_q[i], kernel_kv=pool_kv[i], stride_q=stride_q[i], stride_kv=stride_kv[i],
                has_cls=has_cls)


# ---------------------------------------------------------------------------------------------
# MViTv2 (non-reversible)


class MultiScaleBlock(nn.Module):
    def __init__(self, dim, dim_out, num_heads, input_size, mlp_ratio, drop_path_rate, dim_mul_in_att, attn_kwargs):
        super().__init__()
        self.dim, self.dim_out, self.dim_mul_in_att = dim, dim_out, dim_mul_in_att
        self.has_cls = attn_kwargs["has_cls"]
        self.drop_path_rate = drop_path_rate
        att_dim = dim_out if dim_mul_in_att else dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, att_dim, input_size, num_heads, **attn_kwargs)
        self.norm2 = nn.LayerNorm(att_dim, eps=1e-6)
        self.mlp = Mlp(att_dim, int(att_dim * mlp_ratio), dim_out)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)
        stride_q = attn_kwargs["stride_q"]
        self.pool_skip = None
        if len(stride_q) > 0 and math.prod(stride_q) > 1:
            kernel_skip = [s + 1 if s > 1 else s for s in stride_q]
            self.pool_skip = nn.MaxPool3d(kernel_skip, stride_q, [k // 2 for k in kernel_skip], ceil_mode=False)

    def forward(self, x):
        x_norm = self.norm1(x)
        x_block = self.attn(x_norm)
        if self.dim_mul_in_att and self.dim != self.dim_out:
            x = self.proj(x_norm)
        x_res, _ = attention_pool(x, self.pool_skip, self.attn.thw, self.has_cls)
        x = x_res + drop_path(x_block, self.drop_path_rate, self.training)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if not self.dim_mul_in_att and self.dim != self.dim_out:
            x = self.proj(x_norm)
        return x + drop_path(x_mlp, self.drop_path_rate, self.training)


class TransformerHead(nn.Module):
    def __init__(self, dim_in, num_classes, dropout=0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(dim_in, num_classes)

    def forward(self, x):
        return self.projection(self.dropout(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim_in, dim_out, kernel, stride, padding):
        super().__init__()
        self.proj = nn.Conv3d(dim_in, dim_out, kernel, stride=stride, padding=padding)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class MViT(nn.Module):
    """MViTv2 or, with `reversible`, Rev-MViT. The arguments after `*` are the recipe's model section
    (PySlowFast's MVIT.* names, lower-cased); their defaults are PySlowFast's config defaults, and
    mvitv2.yaml / revmvit.yaml hold the two architectures of the study."""

    def __init__(self, num_classes: int = 400, frames: int = 16, size: int = 224,
                 mean: Sequence[float] = PYSLOWFAST_MEAN, std: Sequence[float] = PYSLOWFAST_STD, *,
                 reversible: bool = False, depth: int = 16, embed_dim: int = 96, num_heads: int = 1,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, patch_kernel: Sequence[int] = (3, 7, 7),
                 patch_stride: Sequence[int] = (2, 4, 4), patch_padding: Sequence[int] = (1, 3, 3),
                 dim_mul: Sequence[Sequence[float]] = (), head_mul: Sequence[Sequence[float]] = (),
                 pool_kvq_kernel: Optional[Sequence[int]] = None, pool_q_stride: Sequence[Sequence[int]] = (),
                 pool_kv_stride: Sequence[Sequence[int]] = (), pool_kv_stride_adaptive: Optional[Sequence[int]] = None,
                 cls_embed: bool = True, use_abs_pos: bool = False, sep_pos_embed: bool = False,
                 rel_pos_spatial: bool = False, rel_pos_temporal: bool = False, rel_pos_zero_init: bool = False,
                 residual_pooling: bool = False, dim_mul_in_att: bool = False, use_mean_pooling: bool = False,
                 zero_decay_pos_cls: bool = False, drop_path: float = 0.1, dropout: float = 0.5,
                 head_init_scale: float = 1.0, attn_impl: str = "sdpa", rev_buffer_layers: Sequence[int] = (),
                 rev_respath_fuse: str = "concat", rev_pre_q_fusion: str = "avg", rev_res_path: str = "conv",
                 rev_transition_drop_path: str = "output", reversible_backward: bool = True,
                 grad_checkpointing: bool = False, bgr: bool = False):
        super().__init__()
        self.reversible = reversible
        self.has_cls = cls_embed
        self.use_mean_pooling = use_mean_pooling
        self.grad_checkpointing = grad_checkpointing
        self.zero_decay_pos_cls = zero_decay_pos_cls
        self.patch_dims = [frames // patch_stride[0], size // patch_stride[1], size // patch_stride[2]]
        self.input = VideoInput(mean, std, bgr)
        self.patch_embed = PatchEmbed(3, embed_dim, patch_kernel, patch_stride, patch_padding)
        if self.has_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.use_abs_pos, self.sep_pos_embed = use_abs_pos, sep_pos_embed
        t, h, w = self.patch_dims
        if self.use_abs_pos:
            if self.sep_pos_embed:
                self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
                self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
                if self.has_cls:
                    self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, embed_dim))
            else:
                self.pos_embed = nn.Parameter(torch.zeros(1, t * h * w + self.has_cls, embed_dim))
        dpr = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # linear stochastic-depth rule
        schedule = layer_schedule(depth, dim_mul, head_mul, pool_q_stride, pool_kvq_kernel, pool_kv_stride,
                                  pool_kv_stride_adaptive)
        dim_muls, head_muls, _, _, stride_q, _ = schedule
        attention = dict(qkv_bias=qkv_bias, rel_pos_spatial=rel_pos_spatial, rel_pos_temporal=rel_pos_temporal,
                         rel_pos_zero_init=rel_pos_zero_init, residual_pooling=residual_pooling, attn_impl=attn_impl)
        input_size = list(self.patch_dims)
        if self.reversible:
            if self.has_cls:
                raise SystemExit("error: the reversible MViT takes no class token (set model.cls_embed: false)")
            self.rev_backbone = ReversibleMViT(input_size, embed_dim, num_heads, dpr, schedule, attention, mlp_ratio,
                                               rev_buffer_layers, rev_pre_q_fusion, rev_res_path,
                                               rev_transition_drop_path, reversible_backward)
            embed_dim = round_width(embed_dim, math.prod(dim_muls), divisor=num_heads)
            self.fuse_mode = rev_respath_fuse
            out_dim = 2 * embed_dim if self.fuse_mode == "concat" else embed_dim
        else:
            self.blocks = nn.ModuleList()
            for i in range(depth):
                num_heads = round_width(num_heads, head_muls[i])
                if dim_mul_in_att:
                    dim_out = round_width(embed_dim, dim_muls[i], divisor=round_width(num_heads, head_muls[i]))
                else:
                    dim_out = round_width(embed_dim, dim_muls[i + 1], divisor=round_width(num_heads, head_muls[i + 1]))
                kw = layer_attention(attention, schedule, i, self.has_cls)
                self.blocks.append(MultiScaleBlock(embed_dim, dim_out, num_heads, input_size, mlp_ratio, dpr[i],
                                                   dim_mul_in_att, kw))
                if len(stride_q[i]) > 0:
                    input_size = [s // st for s, st in zip(input_size, stride_q[i])]
                embed_dim = dim_out
            out_dim = embed_dim
        self.norm = nn.LayerNorm(out_dim, eps=1e-6)
        self.num_features = out_dim
        self.head = TransformerHead(out_dim, num_classes, dropout)
        self._init_weights(head_init_scale)

    def _init_weights(self, head_init_scale: float):
        """MViT._init_weights: trunc-normal(0.02) weights, Linear bias 0.02, LayerNorm 1 / 0.02."""
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                if isinstance(mod, nn.Linear) and mod.bias is not None:
                    nn.init.constant_(mod.bias, 0.02)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.constant_(mod.weight, 1.0)
                nn.init.constant_(mod.bias, 0.02)
        for name in ("pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "cls_token"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)
        with torch.no_grad():
            self.head.projection.weight.mul_(head_init_scale)
            self.head.projection.bias.mul_(head_init_scale)

    def tokens(self, video):
        x = self.patch_embed(self.input(video))
        if x.shape[1] != math.prod(self.patch_dims):
            raise ValueError(f"MViT was built for {self.patch_dims[0] * self.patch_embed.proj.stride[0]} frames of "
                             f"{self.patch_dims[1] * self.patch_embed.proj.stride[1]} px (recipe input.frames/size); "
                             f"got a clip of shape {tuple(video.shape)}")
        if self.has_cls:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.use_abs_pos:
            if self.sep_pos_embed:
                t, h, w = self.patch_dims
                pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(self.pos_embed_temporal, h * w, dim=1)
                if self.has_cls:
                    pos = torch.cat([self.pos_embed_class, pos], dim=1)
                x = x + pos
            else:
                x = x + self.pos_embed
        return x

    def forward_features(self, clips):
        """uint8 [B, T, 3, H, W] -> the normalised class token, or the token average [B, num_features]."""
        x = self.tokens(clips)
        if self.reversible:
            x = self.rev_backbone(x)
            if self.use_mean_pooling:
                return self.norm(two_stream_fuse(x, self.fuse_mode).mean(1))
            return two_stream_fuse(self.norm(x), self.fuse_mode).mean(1)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        if self.use_mean_pooling:
            return self.norm(x[:, int(self.has_cls):].mean(1))
        x = self.norm(x)
        return x[:, 0] if self.has_cls else x.mean(1)

    def forward_head(self, z):
        return self.head(z)

    def forward(self, clips):
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self):
        """MVIT.ZERO_DECAY_POS_CLS (False in both study configs: only 1-D parameters skip decay)."""
        if not self.zero_decay_pos_cls:
            return set()
        keys = ("pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "cls_token",
                "rel_pos_h", "rel_pos_w", "rel_pos_t")
        return {n for n, _ in self.named_parameters() if n.split(".")[-1] in keys}


# ---------------------------------------------------------------------------------------------
# Rev-MViT


def two_stream_fuse(x, mode):
    """TwoStreamFusion: split the last dimension into the two streams and combine them."""
    a, b = torch.chunk(x, 2, dim=-1)
    if mode == "avg":
        return (a + b) / 2
    if mode == "add":
        return a + b
    if mode == "max":
        return torch.maximum(a, b)
    if mode == "min":
        return torch.minimum(a, b)
    if mode == "concat":
        return torch.cat([a, b], dim=-1)
    raise SystemExit(f"error: unknown two-stream fusion {mode!r} (avg, add, max, min, concat)")


class AttentionSubBlock(nn.Module):
    """F of a reversible block: LayerNorm then multiscale attention."""

    def __init__(self, dim, dim_out, input_size, num_heads, attn_kwargs):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, input_size, num_heads, **attn_kwargs)

    def forward(self, x):
        return self.attn(self.norm(x))


class MLPSubblock(nn.Module):
    """G of a reversible block: LayerNorm then MLP."""

    def __init__(self, dim, mlp_ratio):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        return self.mlp(self.norm(x))


class ReversibleBlock(nn.Module):
    """Y1 = X1 + F(X2), Y2 = X2 + G(Y1) (one drop-path mask per block serves both, as in PySlowFast)."""

    def __init__(self, dim, input_size, num_heads, mlp_ratio, drop_path_rate, attn_kwargs):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.F = AttentionSubBlock(dim, dim, input_size, num_heads, attn_kwargs)
        self.G = MLPSubblock(dim, mlp_ratio)

    def forward(self, x1, x2, mask=None):
        y1 = x1 + drop_path(self.F(x2), 0.0, self.training, mask)
        y2 = x2 + drop_path(self.G(y1), 0.0, self.training, mask)
        return y1, y2

    def backward_pass(self, y1, y2, dy1, dy2, mask):
        """Recompute the inputs from the outputs and backpropagate through the block:
        X2 = Y2 - G(Y1), X1 = Y1 - F(X2). Returns X1, X2, dL/dX1, dL/dX2 and {param: grad}."""
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        f_params = [p for p in self.F.parameters() if p.requires_grad]
        with torch.enable_grad():
            y1 = y1.detach().requires_grad_(True)
            g = drop_path(self.G(y1), 0.0, self.training, mask)
            dy1_g, *g_grads = torch.autograd.grad(g, [y1, *g_params], dy2, allow_unused=True)
        with torch.no_grad():
            x2 = y2 - g
            dx1 = dy1 + dy1_g
        del g
        with torch.enable_grad():
            x2 = x2.detach().requires_grad_(True)
            f = drop_path(self.F(x2), 0.0, self.training, mask)
            dx2_f, *f_grads = torch.autograd.grad(f, [x2, *f_params], dx1, allow_unused=True)
        with torch.no_grad():
            x1 = y1 - f
            dx2 = dy2 + dx2_f
        return x1.detach(), x2.detach(), dx1, dx2, list(zip(g_params + f_params, g_grads + f_grads))


class RevStage(torch.autograd.Function):
    """A run of reversible blocks whose backward recomputes activations from the stage output.

    forward keeps only the stage's two output streams (and the per-block drop-path masks, B numbers
    each); backward walks the blocks in reverse with ReversibleBlock.backward_pass and returns the
    parameter gradients through autograd (parameters are inputs of the Function), so optimizers,
    DDP and torch.autograd.grad see ordinary gradients. The autocast state of the forward is
    restored for the recomputation."""

    @staticmethod
    def forward(ctx, x, blocks, masks, *params):
        ctx.blocks = blocks
        ctx.param_index = {id(p): i for i, p in enumerate(params)}
        ctx.n_params = len(params)
        device = x.device.type
        if torch.amp.is_autocast_available(device):
            ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        else:
            ctx.autocast = ("cpu", False, torch.bfloat16)
        ctx.has_mask = [mk is not None for mk in masks]
        x1, x2 = torch.chunk(x, 2, dim=-1)
        with torch.no_grad():
            for block, mask in zip(blocks, masks):
                x1, x2 = block(x1, x2, mask)
        ctx.save_for_backward(x1, x2, *[mk for mk in masks if mk is not None])
        return torch.cat([x1, x2], dim=-1)

    @staticmethod
    def backward(ctx, dy):
        y1, y2, *saved_masks = ctx.saved_tensors
        it = iter(saved_masks)
        masks = [next(it) if has else None for has in ctx.has_mask]
        dy1, dy2 = torch.chunk(dy, 2, dim=-1)
        grads = [None] * ctx.n_params
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device_type=device, dtype=dtype, enabled=enabled):
            for block, mask in zip(reversed(ctx.blocks), reversed(masks)):
                y1, y2, dy1, dy2, param_grads = block.backward_pass(y1, y2, dy1, dy2, mask)
                for p, g in param_grads:
                    if g is not None:
                        i = ctx.param_index[id(p)]
                        grads[i] = g if grads[i] is None else grads[i] + g
        return (torch.cat([dy1, dy2], dim=-1), None, None, *grads)


class StageTransitionBlock(nn.Module):
    """Non-reversible block at a stage change: fuse the two streams, pool the query and the residual,
    widen the channels (F: dim -> dim_out attention, G: MLP at dim_out)."""

    def __init__(self, dim, dim_out, input_size, num_heads, mlp_ratio, drop_path_rate, attn_kwargs,
                 pre_q_fusion="avg", res_path="conv", drop_path_mode="output"):
        super().__init__()
        self.drop_path_rate, self.drop_path_mode = drop_path_rate, drop_path_mode
        self.pre_q_fusion, self.res_path = pre_q_fusion, res_path
        self.F = AttentionSubBlock(dim, dim_out, input_size, num_heads, attn_kwargs)
        self.G = MLPSubblock(dim_out, mlp_ratio)
        if res_path == "max":
            stride = self.F.attn.pool_q.stride
            self.pool_skip = nn.MaxPool3d([s + 1 if s > 1 else s for s in stride], stride, [s // 2 for s in stride])
        elif res_path != "conv":
            raise SystemExit(f"error: model.rev_res_path must be conv or max, got {res_path!r}")
        if dim != dim_out:
            self.res_proj = nn.Linear(dim, dim_out, bias=True)

    def forward(self, x):
        x = two_stream_fuse(x, self.pre_q_fusion)
        x_res = self.res_proj(x) if hasattr(self, "res_proj") else x
        attn = self.F.attn
        if self.res_path == "conv":  # the residual goes through the query's pooling conv and norm
            b, n, c = x_res.shape
            x_res = x_res.reshape(b, n, attn.num_heads, c // attn.num_heads).permute(0, 2, 1, 3)
            x_res, _ = attention_pool(x_res, attn.pool_q, attn.thw, attn.has_cls, attn.norm_q)
            x_res = x_res.permute(0, 2, 1, 3).reshape(b, x_res.shape[2], c)
        else:
            x_res, _ = attention_pool(x_res, self.pool_skip, attn.thw, attn.has_cls)
        if self.drop_path_mode == "output":
            # PySlowFast's StageTransitionBlock applies drop-path to its whole output, not to the branches
            x = x_res + self.F(x)
            x = x + self.G(x)
            return drop_path(x, self.drop_path_rate, self.training)
        x = x_res + drop_path(self.F(x), self.drop_path_rate, self.training)
        return x + drop_path(self.G(x), self.drop_path_rate, self.training)


class ReversibleMViT(nn.Module):
    """The reversible backbone (`rev_backbone.layers.N`): reversible stages separated by
    StageTransitionBlocks at model.rev_buffer_layers (the query-pooling layers)."""

    def __init__(self, input_size, embed_dim, num_heads, dpr, schedule, attention: dict, mlp_ratio: float,
                 buffer_layers, pre_q_fusion: str = "avg", res_path: str = "conv", transition_drop_path: str = "output",
                 custom_backward: bool = True):
        super().__init__()
        dim_mul, head_mul, _, _, stride_q, _ = schedule
        depth = len(dpr)
        transitions = set(buffer_layers)
        if 0 in transitions or depth - 1 in transitions:
            raise SystemExit("error: model.rev_buffer_layers must leave the first and the last layer reversible")
        self.custom_backward = custom_backward
        self.layers = nn.ModuleList()
        input_size = list(input_size)
        for i in range(depth):
            num_heads = round_width(num_heads, head_mul[i])
            embed_dim = round_width(embed_dim, dim_mul[i - 1] if i > 0 else 1.0, divisor=num_heads)
            dim_out = round_width(embed_dim, dim_mul[i], divisor=round_width(num_heads, head_mul[i + 1]))
            kw = layer_attention(attention, schedule, i, has_cls=False)
            if i in transitions:
                mult = 2 if "concat" in pre_q_fusion else 1
                layer = StageTransitionBlock(embed_dim * mult, dim_out, input_size, num_heads, mlp_ratio, dpr[i], kw,
                                             pre_q_fusion, res_path, transition_drop_path)
            else:
                if dim_out != embed_dim or len(stride_q[i]) > 0 and math.prod(stride_q[i]) > 1:
                    raise SystemExit(f"error: layer {i} changes width or resolution but is not in model.rev_buffer_layers")
                layer = ReversibleBlock(embed_dim, input_size, num_heads, mlp_ratio, dpr[i], kw)
            self.layers.append(layer)
            if len(stride_q[i]) > 0:
                input_size = [s // st for s, st in zip(input_size, stride_q[i])]
        # consecutive reversible layers form one RevStage
        self.segments, run = [], []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, StageTransitionBlock):
                if run:
                    self.segments.append(run)
                    run = []
                self.segments.append(i)
            else:
                run.append(i)
        if run:
            self.segments.append(run)

    def forward(self, x):
        for seg in self.segments:
            if isinstance(seg, int):
                x = self.layers[seg](x)
                continue
            blocks = [self.layers[i] for i in seg]
            masks = [drop_path_mask(x.shape[0], x.ndim, b.drop_path_rate, x.device, x.dtype)
                     if self.training and b.drop_path_rate > 0 else None for b in blocks]
            x = torch.cat([x, x], dim=-1)
            if self.custom_backward and self.training and torch.is_grad_enabled():
                params = [p for b in blocks for p in b.parameters() if p.requires_grad]
                x = RevStage.apply(x, blocks, masks, *params)
            else:  # plain autograd (evaluation, or model.reversible_backward: false)
                x1, x2 = torch.chunk(x, 2, dim=-1)
                for b, mask in zip(blocks, masks):
                    x1, x2 = b(x1, x2, mask)
                x = torch.cat([x1, x2], dim=-1)
        return x


Model = MViT


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = MViT(len(class_names), inp["frames"], inp["size"], inp["mean"], inp["std"], **cfg["model"])
    load_pretrained(model, cfg["pretrained"], cfg.get("model_name", "mvit"))
    return model
