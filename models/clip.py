"""The shared CLIP core: OpenAI CLIP's ViT image tower and text tower (the architecture only).

Not a model file itself (there is no clip.yaml); vit.py and the CLIP-based video models build on it.
The tokenizer is models/tokenizer.py, the class texts models/class_texts.py, and the reading of CLIP
weights models/weights.py.

Module and parameter names are OpenAI's (github.com/openai/CLIP, clip/model.py), so the released
ViT-B/16 weights load by name with no conversion:

    visual.{conv1 (no bias), class_embedding, positional_embedding, ln_pre,
            transformer.resblocks.N.{attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_1,
                                     mlp.c_fc, mlp.c_proj, ln_2},
            ln_post, proj}
    token_embedding, positional_embedding, transformer.resblocks.N.*, ln_final, text_projection,
    logit_scale

Differences from OpenAI's code, none of which changes a name or a result:
  * sequences are batch-first [N, L, D] everywhere (OpenAI permutes to [L, N, D]);
  * attention is `MultiheadAttention` below: nn.MultiheadAttention's parameter names
    (in_proj_weight, in_proj_bias, out_proj) computed with F.scaled_dot_product_attention;
  * the text tower's causal mask is the `causal` flag of its blocks, not a tensor, so it is never in
    the state dict and SDPA can pick a causal kernel;
  * the key third of in_proj_bias is not applied: it shifts all scores of a query equally, so it
    cannot change a result, and left out its gradient is exactly zero (see without_key_bias);
  * master weights stay fp32 (no convert_weights): mixed precision is torch.autocast's job;
  * optional stochastic depth (drop_path) and gradient checkpointing.

Extending the blocks (X-CLIP message tokens, EZ-CLIP prompts, AIM / UniFormerV2 adapters):
  * `ResidualAttentionBlock.attention(x)` is the attention call on the normalised tokens and
    `forward(x)` the residual wiring; a subclass overrides either and keeps the names of the
    parameters it inherits, adding its own beside them (e.g. `message_fc`, `T_adapter`).
  * `Transformer(..., block=MyBlock)` and `VisionTransformer(..., block=MyBlock)` build every layer
    as `MyBlock(width, heads, attn_mask=..., causal=..., drop_path=..., layer=i)`; a block class
    must accept those keyword arguments (pass them on to ResidualAttentionBlock.__init__).
  * `Transformer.forward(x, **kwargs)` and `VisionTransformer.forward(x, **kwargs)` hand kwargs to
    every block (e.g. the frame count T).
  * `VisionTransformer.forward(x, return_tokens=True)` returns (pooled features, patch tokens
    before ln_post), as X-CLIP's prompt generator needs; `embed()`, `ln_pre`, `transformer` and
    `pool()` are separate steps a subclass can re-order or extend.
  * `MultiheadAttention.project()` and `.attend()` are the two steps of its forward, for a block that
    changes the keys and values in between (FROSTER's neighbouring frames).
  * `CLIP.encode_text_embeddings(x, eot)` runs the text tower on given token embeddings (learned
    prompts as in ViFi-CLIP / EZ-CLIP) and takes the feature at positions `eot`.
"""
import math
from collections import OrderedDict
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# OpenAI CLIP's image normalisation (clip/clip.py _transform), in 0-1 units; x255 for uint8 input.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The model files take uint8 clips: CLIP's normalisation in 0-255 units, and ImageNet's (X-CLIP's data
# pipeline, which ViFi-CLIP's is, normalises with it).
CLIP_MEAN_255, CLIP_STD_255 = tuple(255 * m for m in CLIP_MEAN), tuple(255 * s for s in CLIP_STD)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# The architecture of the released ViT-B/16 (arguments of CLIP below), for building it without weights.
VIT_B16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)


# ---------------------------------------------------------------------------------------------
# building blocks


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back to the input dtype (OpenAI's fp16-safe variant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation the OpenAI weights were trained with (not nn.GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of the indices of dimension
    `dim`, the same subset along every other dimension. dim 0: per sample (the usual); dim 1 of
    batch-first tokens [N, L, ...]: per token position, shared by the batch, which is what timm's
    DropPath does to the sequence-first tensors of AIM's and UniFormerV2's released code."""

    def __init__(self, p: float = 0.0, dim: int = 0):
        super().__init__()
        self.p, self.dim = float(p), dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = [1] * x.ndim
        shape[self.dim] = x.shape[self.dim]
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (f", dim={self.dim}" if self.dim else "")


def init_linear_and_norm(module: nn.Module, std: float = 0.02) -> None:
    """timm's ViT initialisation, as X-CLIP, AIM and TimeSformer give their modules: every Linear's
    weight truncated normal (std 0.02) and bias zero, every LayerNorm at identity."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def without_key_bias(qkv_bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A packed [q, k, v] bias with its key third replaced by zeros.

    The key bias adds q.b_k to every score of a query, the same for all keys, which softmax ignores:
    attention outputs do not depend on it and its exact gradient is zero. Applied, its computed
    gradient is rounding noise that Adam scales up to full-size steps (and that differs between a
    1-process and a 2-process run); left out, the gradient is exactly zero and the parameter, kept
    for the checkpoint layout, stays at its loaded value. Outputs are unchanged up to rounding."""
    if qkv_bias is None:
        return None
    q, k, v = qkv_bias.chunk(3)
    return torch.cat([q, torch.zeros_like(k), v])


class MultiheadAttention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameters (packed `in_proj_weight` [3D, D],
    `in_proj_bias` [3D], `out_proj` Linear) and initialisation, computed batch-first with
    F.scaled_dot_product_attention.

    forward(query, key=None, value=None, attn_mask=None, is_causal=False): tensors [N, L, D];
    key/value default to query (self-attention, one packed projection). attn_mask follows SDPA:
    a float mask is added to the scores, a bool mask is True where attention is ALLOWED (the
    opposite of nn.MultiheadAttention's bool masks); shape [Lq, Lk] or broadcastable to
    [N, heads, Lq, Lk]. The key third of in_proj_bias is not applied (see without_key_bias).

    forward is project() then attend(); a block that changes the keys and values in between (FROSTER's
    neighbouring frames) calls the two itself."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:  # as nn.MultiheadAttention
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)  # [N, H, L, hd]

    def project(self, query: torch.Tensor, key: torch.Tensor = None, value: torch.Tensor = None,
                key_bias: bool = False) -> tuple:
        """The input projections of query, key, value [N, L, D] -> q, k, v [N, heads, L, head_dim].
        key/value default as in forward. key_bias=True applies the key third of in_proj_bias too,
        which matters only where keys are added that no projection made (FROSTER's zero keys)."""
        bias = self.in_proj_bias if key_bias else without_key_bias(self.in_proj_bias)
        # F.linear on a strided 3-D input (e.g. tokens regrouped per position, batch size 1) falls
        # back to a batched matmul several times slower than the single matmul of a contiguous one
        query = query.contiguous()
        if key is None and value is None:
            q, k, v = F.linear(query, self.in_proj_weight, bias).chunk(3, dim=-1)
        else:
            key = query if key is None else key.contiguous()
            value = key if value is None else value.contiguous()
            ws = self.in_proj_weight.chunk(3)
            bs = bias.chunk(3) if bias is not None else (None,) * 3
            q, k, v = (F.linear(t, w, b) for t, w, b in zip((query, key, value), ws, bs))
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor = None,
               is_causal: bool = False) -> torch.Tensor:
        """SDPA of projected q, k, v [N, heads, L, head_dim] (masks as in forward), heads merged,
        out_proj -> [N, Lq, D]."""
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(-3, -2).flatten(-2))

    def forward(self, query: torch.Tensor, key: torch.Tensor = None, value: torch.Tensor = None,
                attn_mask: torch.Tensor = None, is_causal: bool = False) -> torch.Tensor:
        return self.attend(*self.project(query, key, value), attn_mask=attn_mask, is_causal=is_causal)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); mlp = c_fc, QuickGELU, c_proj.

    attn_mask: optional fixed mask (SDPA convention, see MultiheadAttention), sliced to the sequence
    length; causal: the text tower's mask. Neither is in the state dict. `layer` is the block's
    index in its Transformer (unused here; subclasses may need it)."""

    def __init__(self, d_model: int, n_head: int, attn_mask: torch.Tensor = None, causal: bool = False,
                 drop_path: float = 0.0, layer: int = 0):
        super().__init__()
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.register_buffer("attn_mask", attn_mask, persistent=False)
        self.causal = causal
        self.drop_path = DropPath(drop_path)
        self.layer = layer

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention of the (already normalised) tokens x [N, L, D]."""
        mask = self.attn_mask
        if mask is not None:
            mask = mask[..., : x.shape[-2], : x.shape[-2]]
        return self.attn(x, attn_mask=mask, is_causal=self.causal and mask is None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        x = x + self.drop_path(self.mlp(self.ln_2(x)))
        return x


class Transformer(nn.Module):
    """`layers` blocks in `resblocks` (an nn.Sequential, as OpenAI's). drop_path: a rate rising
    linearly from 0 to this value over the layers, or one rate per layer. grad_checkpointing:
    recompute each block in the backward pass (training only)."""

    def __init__(self, width: int, layers: int, heads: int, attn_mask: torch.Tensor = None, *, causal: bool = False,
                 drop_path: Union[float, Sequence[float]] = 0.0, block: Callable = ResidualAttentionBlock,
                 grad_checkpointing: bool = False):
        super().__init__()
        self.width, self.layers, self.heads = width, layers, heads
        if isinstance(drop_path, (int, float)):
            rates = [float(drop_path) * i / max(layers - 1, 1) for i in range(layers)]
        else:
            rates = [float(r) for r in drop_path]
            if len(rates) != layers:
                raise ValueError(f"drop_path has {len(rates)} rates for {layers} layers")
        self.resblocks = nn.Sequential(*[
            block(width, heads, attn_mask=attn_mask, causal=causal, drop_path=rates[i], layer=i) for i in range(layers)])
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.resblocks:
            x = checkpoint(blk, x, use_reentrant=False, **kwargs) if recompute else blk(x, **kwargs)
        return x


def resize_pos_embed(pos: torch.Tensor, grid, prefix: int = 1, mode: str = "bicubic") -> torch.Tensor:
    """Resample a square grid of position embeddings [..., prefix + g*g, D] to grid (h, w) ->
    [..., prefix + h*w, D]; the first `prefix` rows (class token) are kept as they are."""
    h, w = (grid, grid) if isinstance(grid, int) else tuple(grid)
    n = pos.shape[-2] - prefix
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"position embedding of {pos.shape[-2]} rows is not {prefix} + a square grid")
    if (g, g) == (h, w):
        return pos
    lead, d = pos.shape[:-2], pos.shape[-1]
    flat = pos.reshape(-1, pos.shape[-2], d)[:1]
    head, body = flat[:, :prefix], flat[:, prefix:]
    body = body.reshape(1, g, g, d).permute(0, 3, 1, 2).float()
    kw = {} if mode == "nearest" else {"align_corners": False}
    body = F.interpolate(body, size=(h, w), mode=mode, **kw).to(pos.dtype)
    body = body.permute(0, 2, 3, 1).reshape(1, h * w, d)
    return torch.cat([head, body], dim=1).reshape(*lead, prefix + h * w, d)


def resample_frames(t: torch.Tensor, frames: int) -> torch.Tensor:
    """A time embedding [..., T, D] linearly interpolated along T to [..., frames, D]
    (align_corners=False, computed in fp32)."""
    if t.shape[-2] == frames:
        return t
    lead, old, d = t.shape[:-2], t.shape[-2], t.shape[-1]
    x = t.reshape(-1, old, d).transpose(1, 2).float()
    x = F.interpolate(x, size=frames, mode="linear", align_corners=False)
    return x.transpose(1, 2).reshape(*lead, frames, d).to(t.dtype)

class VisionTransformer(nn.Module):
    """CLIP's image tower. forward(images [N, 3, H, W]) -> [N, output_dim] (ln_post of the class
    token @ proj); with return_tokens=True -> (that, patch tokens [N, h*w, width] before ln_post).
    Inputs of another size than input_resolution use a bicubic resample of positional_embedding."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: Optional[int], *, drop_path: Union[float, Sequence[float]] = 0.0,
                 block: Callable = ResidualAttentionBlock, grad_checkpointing: bool = False):
        super().__init__()
        self.input_resolution, self.patch_size, self.output_dim = input_resolution, patch_size, output_dim
        self.grid = input_resolution // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path=drop_path, block=block,
                                       grad_checkpointing=grad_checkpointing)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim)) if output_dim else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] -> tokens [N, 1 + h*w, width]: patches, class token, positions."""
        x = self.conv1(x.to(self.conv1.weight.dtype))
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2).to(self.class_embedding.dtype)  # fp32 residual stream under autocast
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        pos = self.positional_embedding
        if grid != (self.grid, self.grid):
            pos = resize_pos_embed(pos, grid)
        return torch.cat([cls, x], dim=1) + pos

    def pool(self, x: torch.Tensor, return_tokens: bool = False):
        out = self.ln_post(x[:, 0])
        if self.proj is not None:
            out = out @ self.proj
        return (out, x[:, 1:]) if return_tokens else out

    def forward(self, x: torch.Tensor, return_tokens: bool = False, **kwargs):
        """kwargs go to every block (Transformer.forward), e.g. a frame count for blocks that need it."""
        x = self.ln_pre(self.embed(x))
        x = self.transformer(x, **kwargs)
        return self.pool(x, return_tokens)


class CLIP(nn.Module):
    """OpenAI CLIP with a ViT image tower; the positional arguments are OpenAI's (see VIT_B16).
    Keyword-only extras: vision_heads (default vision_width // 64 as OpenAI), drop_path (image
    tower only), grad_checkpointing (both towers), vision_block / text_block (block classes)."""

    def __init__(self, embed_dim: int, image_resolution: int, vision_layers: int, vision_width: int,
                 vision_patch_size: int, context_length: int, vocab_size: int, transformer_width: int,
                 transformer_heads: int, transformer_layers: int, *, vision_heads: int = None,
                 drop_path: float = 0.0, grad_checkpointing: bool = False,
                 vision_block: Callable = ResidualAttentionBlock, text_block: Callable = ResidualAttentionBlock):
        super().__init__()
        if not isinstance(vision_layers, int):
            raise ValueError("only the ViT image towers of CLIP are implemented (vision_layers must be an int)")
        self.context_length = context_length
        self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                        vision_heads or max(vision_width // 64, 1), embed_dim, drop_path=drop_path,
                                        block=vision_block, grad_checkpointing=grad_checkpointing)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, causal=True,
                                       block=text_block, grad_checkpointing=grad_checkpointing)
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """OpenAI's initialisation of the text tower (the image tower keeps its constructor's)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        attn_std, fc_std = width ** -0.5, (2 * width) ** -0.5
        for blk in self.transformer.resblocks:
            nn.init.normal_(blk.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(blk.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(blk.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(blk.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, return_tokens: bool = False):
        return self.visual(image, return_tokens=return_tokens)

    def encode_text_embeddings(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Text tower on token embeddings x [N, L, width] (positional embeddings not yet added):
        the features at positions eot [N] (ln_final, @ text_projection) -> [N, embed_dim]."""
        x = x + self.positional_embedding[: x.shape[1]]
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """token ids [N, L] (tokenize()) -> [N, embed_dim]; the end-of-text token has the largest id."""
        return self.encode_text_embeddings(self.token_embedding(text), text.argmax(dim=-1))

    def text_parameters(self) -> list:
        """The parameters encode_text depends on: the text tower (e.g. to key cached text features)."""
        return [*self.transformer.parameters(), self.token_embedding.weight, self.positional_embedding,
                *self.ln_final.parameters(), self.text_projection]

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


