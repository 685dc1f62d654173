"""The shared CLIP core: OpenAI CLIP's ViT image tower and text tower, its tokenizer, and the loading
of its released weights. Not a model file itself (there is no clip.yaml); vit.py and the CLIP-based
video models build on it.

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

Tokenizer: byte-level BPE with ftfy + regex cleaning, context 77, identical ids to OpenAI's
`clip.tokenize`. The vocabulary models/bpe_simple_vocab_16e6.txt.gz is OpenAI's (MIT, see
models/CLIP_LICENSE) and its SHA256 is checked on first use.

Class texts: `class_prompts` (templates or one description per class), `text_features` (prompt-
averaged, normalised or raw, from prompts or kept tokens), `text_settings(cfg)` (a recipe's `text:`
section), `TextFeatureCache` (text features kept per label space until the text weights change) and
`ClassTexts`, which a text model owns: its label space's names, prompts and tokens, and their
features through a CLIP text tower, cached while no gradient can reach them.

Weights: `load_clip_state_dict(spec)` with spec a model name (downloaded once into $MT_CACHE/clip,
default ~/.cache/clip, SHA256 checked after download and on every cache hit), a file (TorchScript
archive as released, a plain state dict or {'state_dict': ...}), or 'none'. A model that starts from
CLIP reads its `pretrained` (a CLIP name, or a file of CLIP weights or of its own) with
`read_pretrained` (the checkpoint as read) or `read_pretrained_state` (a flat fp32 state dict);
models built on the image tower alone (vit.py, aim.py, uniformerv2.py) with `load_clip_visual_state`
(CLIP weights, an image tower alone, or the model's own release told by a key prefix).
`fit_pos_embed` resamples a loaded positional_embedding to the model's input size. Errors are one
line (SystemExit "error: ..."), the harness's convention.
"""
import gzip
import hashlib
import html
import math
import sys
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.weights import (_names, cache_dir, download, extract_state_dict, load_checked, no_weights, read_checkpoint,
                            resolve_path)

MODEL_DIR = Path(__file__).resolve().parent

# OpenAI CLIP's image normalisation (clip/clip.py _transform), in 0-1 units; x255 for uint8 input.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Released ViT models: name -> URL. The second-to-last path component is the file's SHA256.
CLIP_MODELS = {
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

# The architecture of the released ViT-B/16 (arguments of CLIP below), for building it without weights.
VIT_B16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)

# 0-dim int64 entries of the TorchScript archives that are not parameters of CLIP.
JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


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


def fit_time_embed(state: dict, own: dict, key: str, source: str, name: str, log=_log) -> None:
    """Resample state[key], a time embedding [..., T', D] for another frame count than the model's
    own[key] [..., T, D] (own: its state dict), in place to T frames (resample_frames, in fp32), with
    a log line. One whose other dimensions differ is left as it is, for load_checked to report."""
    t, mine = state.get(key), own.get(key)
    if t is None or mine is None or t.ndim != mine.ndim or t.shape[-2] == mine.shape[-2] \
            or t.shape[:-2] != mine.shape[:-2] or t.shape[-1] != mine.shape[-1]:
        return
    state[key] = resample_frames(t.float(), mine.shape[-2])
    log(f"{name}: resampled {key} of {source} from {t.shape[-2]} to {mine.shape[-2]} frames")


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


def clip_arguments(m: dict, image_size: int) -> dict:
    """CLIP(...) arguments from a recipe's model section (OpenAI's names, ViT-B/16 by default)."""
    return dict(embed_dim=m.get("embed_dim", 512), image_resolution=image_size, vision_layers=m.get("vision_layers", 12),
                vision_width=m.get("vision_width", 768), vision_patch_size=m.get("vision_patch_size", 16),
                context_length=m.get("context_length", 77), vocab_size=m.get("vocab_size", 49408),
                transformer_width=m.get("transformer_width", 512), transformer_heads=m.get("transformer_heads", 8),
                transformer_layers=m.get("transformer_layers", 12), vision_heads=m.get("vision_heads"))


def clip_config(state_dict: dict) -> dict:
    """The CLIP(...) arguments of an OpenAI-layout state dict, read from its shapes (OpenAI's build_model)."""
    sd = state_dict
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding",
              "token_embedding.weight", "ln_final.weight")
    absent = [k for k in needed if k not in sd]
    if absent:
        if "visual.layer1.0.conv1.weight" in sd:
            raise SystemExit("error: this is a ResNet CLIP; only the ViT image towers are implemented")
        raise SystemExit(f"error: not an OpenAI CLIP state dict (no {', '.join(absent[:3])})")
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    text_width = sd["ln_final.weight"].shape[0]
    return dict(
        embed_dim=sd["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        vision_width=width,
        vision_patch_size=patch,
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
    )


def build_clip(state_dict: dict, source: str = "state dict", log=_log, **kwargs) -> CLIP:
    """A CLIP whose architecture is read from `state_dict`, loaded with it (strictly). kwargs go to CLIP."""
    model = CLIP(**clip_config(state_dict), **kwargs)
    load_checked(model, state_dict, source, name="CLIP", log=log)
    return model


# ---------------------------------------------------------------------------------------------
# tokenizer

BPE_PATH = MODEL_DIR / "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def _byte_alphabet() -> list:
    """The 256 (byte, character) pairs of byte-level BPE, in vocabulary order: printable Latin-1
    bytes stand for themselves; the other bytes get the characters from U+0100 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [(b, chr(b)) for b in printable] + [(b, chr(256 + i)) for i, b in enumerate(others)]


class SimpleTokenizer:
    """OpenAI CLIP's byte-level BPE tokenizer: encode(text) -> list of ids (no start/end tokens)."""

    def __init__(self, bpe_path: Union[str, Path] = BPE_PATH, sha256: Optional[str] = BPE_SHA256):
        import ftfy  # noqa: F401 - fail here, with the import error, if the text packages are missing
        import regex

        raw = Path(bpe_path).read_bytes()
        if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
            raise SystemExit(f"error: {bpe_path} is damaged (SHA256 {hashlib.sha256(raw).hexdigest()[:12]}..., "
                             f"expected {sha256[:12]}...); restore it from the repository")
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # 48,894 merges after the header
        alphabet = _byte_alphabet()
        self.byte_encoder = dict(alphabet)
        self.byte_decoder = {c: b for b, c in alphabet}
        vocab = [c for _, c in alphabet]
        vocab += [c + "</w>" for c in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pattern = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                     regex.IGNORECASE)
        self._regex = regex

    def clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._regex.sub(r"\s+", " ", text).strip().lower()

    def bpe(self, token: str) -> str:
        """One pre-token (already byte-mapped) -> its BPE pieces joined by spaces."""
        if token in self.cache:
            return self.cache[token]
        parts = list(token[:-1]) + [token[-1] + "</w>"]
        while len(parts) > 1:
            pair = min(zip(parts, parts[1:]), key=lambda p: self.bpe_ranks.get(p, math.inf))
            if pair not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        out = " ".join(parts)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list:
        ids = []
        for piece in self.pattern.findall(self.clean(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(mapped).split(" "))
        return ids

    def decode(self, ids) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")


@lru_cache(maxsize=None)
def get_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """OpenAI's clip.tokenize: [<|startoftext|>, BPE ids..., <|endoftext|>] zero-padded to
    context_length -> LongTensor [len(texts), context_length]. A text that does not fit raises
    ValueError, unless truncate=True, which cuts it and makes the last token <|endoftext|>."""
    if isinstance(texts, str):
        texts = [texts]
    tok = get_tokenizer()
    sot, eot = tok.encoder[SOT], tok.encoder[EOT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"text {i} ({text[:40]!r}...) is {len(ids)} tokens, longer than the context length "
                                 f"{context_length}; shorten it or tokenize with truncate=True")
            ids = ids[:context_length]
            ids[-1] = eot
        result[i, : len(ids)] = torch.tensor(ids)
    return result


# ---------------------------------------------------------------------------------------------
# class texts: what the text models embed for a label space


def class_prompts(names: Sequence[str], templates: Sequence[str] = ("{}",), descriptions: dict = None) -> list:
    """Prompts of each class: its description when `descriptions` ({name: text}, see
    data.hierarchy.load_descriptions) is given, else every template filled with the class name
    ("a photo of a {}.") -> [[prompt, ...] per class]."""
    if descriptions is not None:
        from data.hierarchy import describe

        return [[text] for text in describe(list(names), descriptions)]
    return [[t.format(name) for t in templates] for name in names]


def text_features(encode_text: Callable, prompts: list, device=None, truncate: bool = True,
                  normalize: bool = True, tokens: torch.Tensor = None) -> torch.Tensor:
    """L2-normalised text embedding of each class, averaged over its prompts (then normalised again,
    as CLIP's prompt ensembling does) -> [K, D]. `encode_text` maps token ids [N, 77] to [N, D].
    normalize=False: the plain mean of the raw embeddings (X-CLIP feeds unnormalised text features
    to its prompt generator); with one prompt per class that is the embedding itself.
    tokens: tokenize() of the flattened prompts, when the caller keeps them (tokenising is Python
    work, too slow to repeat at every training step)."""
    flat = [p for per_class in prompts for p in per_class]
    if tokens is None:
        tokens = tokenize(flat, truncate=truncate)
    elif len(tokens) != len(flat):
        raise ValueError(f"{len(tokens)} token rows for {len(flat)} prompts")
    if device is not None:
        tokens = tokens.to(device)
    feats = encode_text(tokens).float()
    if normalize:
        feats = F.normalize(feats, dim=-1)
    counts = [len(per_class) for per_class in prompts]
    if max(counts) == 1:
        return feats  # one prompt per class: nothing to average
    per_class = torch.stack([chunk.mean(0) for chunk in feats.split(counts)])
    return F.normalize(per_class, dim=-1) if normalize else per_class


def text_settings(cfg: dict) -> tuple:
    """(templates, descriptions) of a recipe's `text` section: `templates` (default ["{}"]) and, when
    `descriptions` names a CSV (see data.hierarchy.load_descriptions) for every task, or one per task
    ({coarse: path, fine: path}, the recipe's `task`, default coarse), {class name: description},
    which then replaces the templates (one prompt per class); else None. A relative path not found
    from the working directory is taken from the repository root."""
    section = cfg.get("text") or {}
    templates = list(section.get("templates") or ["{}"])
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise SystemExit(f"error: text.templates: every template needs exactly one {{}} for the class name, got {bad[0]!r}")
    spec = section.get("descriptions")
    if isinstance(spec, dict):
        spec = spec.get(cfg.get("task", "coarse"))
    descriptions = None
    if spec:
        from data.hierarchy import load_descriptions

        descriptions = load_descriptions(resolve_path(spec))
    return templates, descriptions


class TextFeatureCache:
    """The text features of one label space, kept until something they depend on changes.

    get(key, params, compute): `key` names the label space and prompts (e.g. the class names);
    `params` are the text tower's parameters. The value is recomputed when the key changes or when
    any parameter is replaced, moved, cast or modified in place (an optimizer step or load_state_dict
    bumps the tensor's version counter), so a cache filled in evaluation is never used after the
    tower has trained on. Call it only where the features need no autograd graph (text tower frozen,
    evaluation, or under no_grad)."""

    def __init__(self):
        self._key, self._value = None, None

    def clear(self) -> None:
        self._key, self._value = None, None

    @staticmethod
    def state(params) -> tuple:
        return tuple((id(p), p.data_ptr(), p._version, p.device, p.dtype) for p in params)

    def get(self, key, params, compute: Callable):
        full_key = (key, self.state(params))
        if full_key != self._key:
            value = compute()
            self._key, self._value = full_key, value
        return self._value


class ClassTexts:
    """What a text model embeds for its label space, and the embeddings, cached.

    names; prompts (class_prompts of the names with `templates` or `descriptions`, as text_settings
    returns them); counts (prompts per class); tokens (tokenize() of every prompt, once per label
    space: tokenising is Python work, too slow to repeat at every step), all set by set_names(names).

    features(clip, normalize) -> text_features of the prompts through clip's text tower [K, D] fp32.
    cached(clip, compute) -> compute() for features computed another way. Either recomputes with the
    autograd graph while a gradient can reach the text tower (gradients enabled and one of
    clip.text_parameters() requires grad); otherwise the value is computed once under no_grad and
    kept in a TextFeatureCache (`cache`, default self.cache: one per text tower) until the names,
    the autocast state or a text weight change."""

    def __init__(self, templates: Sequence[str] = ("{}",), descriptions: dict = None):
        self.templates, self.descriptions = list(templates), descriptions
        self.names, self.prompts, self.counts, self.tokens = [], [], [], None
        self.cache = TextFeatureCache()

    def set_names(self, names) -> None:
        names = list(names)
        if not names:
            raise ValueError("set_class_names needs at least one class name")
        self.names = names
        self.prompts = class_prompts(names, self.templates, self.descriptions)
        self.counts = [len(p) for p in self.prompts]
        self.tokens = tokenize([p for per_class in self.prompts for p in per_class], truncate=True)

    def features(self, clip: "CLIP", normalize: bool = True, cache: TextFeatureCache = None) -> torch.Tensor:
        def compute():
            self.tokens = self.tokens.to(clip.positional_embedding.device)  # copied once per label space
            return text_features(clip.encode_text, self.prompts, normalize=normalize, tokens=self.tokens)

        return self.cached(clip, compute, cache)

    def cached(self, clip: "CLIP", compute: Callable, cache: TextFeatureCache = None):
        params = clip.text_parameters()
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return compute()
        key = (tuple(self.names), torch.is_autocast_enabled(clip.positional_embedding.device.type))
        with torch.no_grad():
            return (self.cache if cache is None else cache).get(key, params, compute)


# ---------------------------------------------------------------------------------------------
# CLIP weights


def load_clip_state_dict(spec, log=_log) -> Optional[dict]:
    """OpenAI CLIP weights as an fp32 state dict in OpenAI's layout (no prefix), or None for 'none'.

    spec: a released model name (CLIP_MODELS, e.g. 'ViT-B/16': downloaded once, SHA256-checked),
    a file path (the released TorchScript archive, a plain state dict, or {'state_dict': ...} /
    {'model': ...}), or 'none'. The archive's 0-dim extras (input_resolution, context_length,
    vocab_size) are dropped."""
    if no_weights(spec):
        return None
    spec = str(spec)
    if spec in CLIP_MODELS:
        url = CLIP_MODELS[spec]
        path = download(url, url.rsplit("/", 2)[-2], cache_dir("clip"), f"CLIP {spec} weights", log=log)
        source = f"CLIP {spec} ({path})"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SystemExit(f"error: CLIP weights '{spec}' not found: pretrained takes a released model name "
                             f"({', '.join(CLIP_MODELS)}), the path of a weights file, or none")
        source = str(path)
    state = extract_state_dict(read_checkpoint(path, "CLIP weights", log=log), source)
    for k in JIT_EXTRAS:
        state.pop(k, None)
    _require_vit(state, source)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _require_vit(state: dict, source: str) -> None:
    if "visual.conv1.weight" not in state or "visual.positional_embedding" not in state:
        hint = " (a ResNet CLIP; only ViT towers are implemented)" if "visual.layer1.0.conv1.weight" in state else ""
        raise SystemExit(f"error: {source} holds no OpenAI CLIP ViT weights{hint}: no visual.conv1.weight "
                         f"(first keys: {_names(state)})")


def read_pretrained(spec, model: str, log=_log) -> tuple:
    """A recipe's `pretrained` for a model that starts from OpenAI CLIP -> (checkpoint, source): the
    state dict of a released CLIP name (load_clip_state_dict), or what a file holds
    (models.weights.read_checkpoint; a relative path not found here is taken from the repository
    root); (None, None) for 'none'. `model` names the model's own weights in messages."""
    if no_weights(spec):
        return None, None
    spec = str(spec)
    if spec in CLIP_MODELS:
        return load_clip_state_dict(spec, log=log), f"CLIP {spec}"
    path = resolve_path(spec)
    if not path.is_file():
        raise SystemExit(f"error: {model} weights '{spec}' not found: give a CLIP name ({', '.join(CLIP_MODELS)}), "
                         f"the path of CLIP or {model} weights, or none")
    return read_checkpoint(path, f"{model} weights", log=log), str(path)


def read_pretrained_state(spec, model: str, containers=("state_dict", "model_state", "model"), log=_log) -> tuple:
    """read_pretrained's checkpoint as a flat fp32 state dict (models.weights.extract_state_dict, from
    the first of `containers` that holds one; TorchScript's extras left out) -> (state, source);
    (None, None) for 'none'."""
    obj, source = read_pretrained(spec, model, log=log)
    if source is None:
        return None, None
    state = extract_state_dict(obj, source, containers=containers)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k not in JIT_EXTRAS}, source


def load_clip_visual_state(spec, model: str, release_prefix: str = None,
                           containers=("state_dict", "model_state", "model"), log=_log) -> tuple:
    """A recipe's `pretrained` for a model built on CLIP's image tower -> (kind, state, source):

      ('clip', the image tower's tensors without the `visual.` prefix, source) for a released CLIP
          name, a CLIP file (the TorchScript archive or a state dict) or a file of the image tower
          alone (conv1.weight, class_embedding, ...: the original UniFormerV2's vit_b16.pth,
          mmaction2's CLIP visual encoder); the text tower's tensors are left out (logged);
      ('release', the state dict as it is, source) for a checkpoint of the model itself, told by keys
          starting with `release_prefix` (e.g. 'backbone.'); None: the model has no such checkpoints;
      (None, None, None) for 'none'.
    Read with read_pretrained_state (fp32, from the first of `containers` holding a state dict)."""
    state, source = read_pretrained_state(spec, model, containers, log=log)
    if source is None:
        return None, None, None
    if release_prefix and any(k.startswith(release_prefix) for k in state):
        return "release", state, source
    if "visual.conv1.weight" not in state:
        if "conv1.weight" in state and "class_embedding" in state:
            return "clip", state, source
        what = f"neither {model} weights ({release_prefix}* keys) nor" if release_prefix else "no"
        raise SystemExit(f"error: {source} holds {what} CLIP weights (visual.conv1.weight or conv1.weight); "
                         f"first keys: {_names(state)}")
    _require_vit(state, source)
    text = [k for k in state if not k.startswith("visual.")]
    if text:
        log(f"{model.lower()}: the {len(text)} text-tower tensors of {source} are not used")
    return "clip", {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}, source


def fit_pos_embed(state: dict, key: str, grid: int, source: str, name: str, log=_log) -> None:
    """Resample state[key], a positional embedding [..., 1 + g*g, D] for another input size, in place
    to 1 + grid*grid positions (resize_pos_embed, bicubic), with a log line. One whose rows are not
    1 + a square grid is left as it is, for load_checked to report."""
    pe = state.get(key)
    if pe is None or pe.ndim < 2 or pe.shape[-2] == 1 + grid * grid:
        return
    try:
        state[key] = resize_pos_embed(pe, grid)
    except ValueError:
        return
    log(f"{name}: resampled {key} of {source} from {pe.shape[-2]} to {state[key].shape[-2]} positions")


def load_clip(spec="ViT-B/16", config: dict = None, log=_log, **kwargs) -> CLIP:
    """A CLIP model with the weights of `spec` (see load_clip_state_dict), its architecture read
    from the weights; with spec 'none', a freshly initialised CLIP(**config) (default ViT-B/16).
    A `config` given with weights must agree with them. kwargs go to CLIP (drop_path, blocks...)."""
    state = load_clip_state_dict(spec, log=log)
    if state is None:
        return CLIP(**(config or VIT_B16), **kwargs)
    found = clip_config(state)
    if config:
        diff = [f"{k} is {found.get(k)}, configured {v}" for k, v in config.items() if found.get(k) != v]
        if diff:
            raise SystemExit(f"error: CLIP weights {spec} do not match the configured architecture: {'; '.join(diff)}")
    return build_clip(state, source=str(spec), log=log, **kwargs)
