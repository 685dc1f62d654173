"""X-CLIP (Ni et al., ECCV 2022; github.com/microsoft/VideoX, X-CLIP/): CLIP with cross-frame
communication, a multi-frame integration transformer and video-specific text prompts.

    video uint8 [B, T, 3, H, W] -> ImageNet normalisation -> frames [B*T, 3, H, W]
    -> visual: the CLIP image tower whose blocks are CrossFrameBlock (below)
         -> per-frame features ln_post(class token) @ proj [B, T, 512] and patch tokens [B*T, 196, 768]
    -> mit: + positional_embedding [1, T, 512], `mit_layers` pre-LN blocks (nn.LayerNorm, QuickGELU),
            residual, mean over T -> video feature [B, 512]
    -> prompts: patch tokens -> prompts_visual_ln -> @ prompts_visual_proj -> mean over T [B, 196, 512];
                prompts_generator (norm, `prompts_layers` x {norm1, cross-attention text -> video
                tokens, norm3, MLP}, times alpha) turns the class text features into a per-video
                prompt added to them
    -> logits = logit_scale.exp() * cos(video feature, text feature + prompt)   [B, K]

The video feature is forward_features' z; the prompt tokens [B, 196, 512] are its context, which the
class scoring needs: forward_features(clips, return_context=True) -> (z, context), then
forward_head(z, context) for the model's classes or class_logits(z, names, context) for any. Both
are functions of their inputs only (no state kept between the calls).

CrossFrameBlock (each layer of the image tower): the class token of every frame -> message_fc ->
message_ln -> message_attn across the T frames of its video (residual) -> appended to the frame's
tokens as one extra token for the block's attention, and dropped again before the MLP.

Text: class names with the template "{}" (recipe `text:`; or one description per class), the
unnormalised text features averaged over a class's prompts. With model.fix_text (X-CLIP's FIX_TEXT,
the default) every parameter outside visual.*, mit.* and prompts* is frozen (the whole text tower
and logit_scale) and the text features are computed once per label space and cached; the cache
follows set_class_names and any change of the text weights (models.class_texts.ClassTexts).

Parameter names are the release's exactly (`ckpt['model']`, no prefix; tested against the layouts
of the 8, 16 and 32-frame releases), so the model's own state dict is the released layout.
Pretrained (recipe key `pretrained`):
  * a CLIP name or file (ViT-B/16, /path/to/ViT-B-16.pt): the CLIP tensors load by name, message_*,
    mit.* and prompts* keep their initialisation (as X-CLIP's own start from CLIP);
  * an X-CLIP release (k400_16_8.pth, k400_16_16.pth, zero.pth, few_*.pth, ...) or a checkpoint of
    this repository: loaded strictly; mit.positional_embedding [1, T', 512] is interpolated linearly
    along time to this model's T (e.g. the 32-frame zero.pth into an 8-frame model);
  * none.
The release files also pickle X-CLIP's yacs config: they are read without running it
(models.weights.read_checkpoint).

Deviations from the published code (none changes a released tensor's meaning): batch-first SDPA
attention (the core's; the key bias is not applied, which cannot change an output); stochastic
depth drops per frame (the original's timm drop_path on [L, B*T, D] tensors drops per token
position); the mit positional embedding is resampled when a clip has another frame count than the
model; X-CLIP's colour jitter / grayscale augmentations are not in the harness. Recipe: xclip.yaml.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import ClassTexts, text_settings
from models.clip import (CLIP, IMAGENET_MEAN, IMAGENET_STD, LayerNorm, MultiheadAttention, QuickGELU, ResidualAttentionBlock,
                         Transformer, init_linear_and_norm, resample_frames)
from models.weights import (JIT_EXTRAS, extract_state_dict, fit_pos_embed, fit_time_embed, load_checked,
                            log_to_stderr, read_pretrained, short_list)

# Parameters X-CLIP adds to CLIP; they keep their initialisation when CLIP weights are loaded.
NEW_PARAMETERS = ("visual.transformer.resblocks.*.message_*", "mit.*", "prompts_generator.*", "prompts_visual_ln.*",
                  "prompts_visual_proj")


# ---------------------------------------------------------------------------------------------
# cross-frame communication transformer (the image tower's blocks)


class CrossFrameBlock(ResidualAttentionBlock):
    """CLIP block with X-CLIP's message token. forward(x [B*T, L, D], frames=T): the class token of
    each frame becomes a message (message_fc), the messages of a video attend to each other
    (message_ln, message_attn, residual), each frame's message joins its tokens for the block's
    attention and is dropped before the MLP."""

    def __init__(self, d_model: int, n_head: int, attn_mask: torch.Tensor = None, causal: bool = False,
                 drop_path: float = 0.0, layer: int = 0):
        super().__init__(d_model, n_head, attn_mask=attn_mask, causal=causal, drop_path=drop_path, layer=layer)
        self.message_fc = nn.Linear(d_model, d_model)
        self.message_ln = LayerNorm(d_model)
        self.message_attn = MultiheadAttention(d_model, n_head)

    def forward(self, x: torch.Tensor, frames: int = None) -> torch.Tensor:
        if frames is None:
            raise ValueError("CrossFrameBlock needs the frame count: visual(x, frames=T)")
        bt, length, d = x.shape
        if bt % frames:
            raise ValueError(f"{bt} frames are not a whole number of clips of {frames}")
        msg = self.message_fc(x[:, 0]).view(bt // frames, frames, d)
        msg = msg + self.drop_path(self.message_attn(self.message_ln(msg)))
        x = torch.cat([x, msg.reshape(bt, 1, d).to(x.dtype)], dim=1)
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        x = x[:, :length]
        return x + self.drop_path(self.mlp(self.ln_2(x)))


# ---------------------------------------------------------------------------------------------
# multi-frame integration transformer


class MITBlock(ResidualAttentionBlock):
    """The mit blocks: CLIP's block with torch's own LayerNorm (X-CLIP's mit.py uses nn.LayerNorm)."""

    def __init__(self, d_model: int, n_head: int, **kwargs):
        super().__init__(d_model, n_head, **kwargs)
        self.ln_1 = nn.LayerNorm(d_model)
        self.ln_2 = nn.LayerNorm(d_model)


class MultiframeIntegration(Transformer):
    """mit: frame features [B, T, D] + positional_embedding -> blocks -> + input -> mean over T."""

    def __init__(self, frames: int, embed_dim: int, layers: int):
        super().__init__(embed_dim, layers, max(embed_dim // 64, 1), block=MITBlock)
        self.positional_embedding = nn.Parameter(torch.empty(1, frames, embed_dim))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        init_linear_and_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = resample_frames(self.positional_embedding, x.shape[1])
        y = super().forward(x + pos.to(x.dtype))
        return (y.to(x.dtype) + x).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# video-specific prompt generator


class PromptCrossAttention(nn.Module):
    """Multi-head attention of queries [B, N, C] to keys/values [B, M, C]: q_proj, k_proj, v_proj
    without bias, proj with bias (X-CLIP's prompt.py), computed with SDPA."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        h = self.num_heads

        def heads(t):
            return t.unflatten(-1, (h, t.shape[-1] // h)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(q)), heads(self.k_proj(kv)), heads(self.v_proj(kv)))
        return self.proj(out.transpose(1, 2).flatten(2))


class PromptGeneratorLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.cross_attn = PromptCrossAttention(d_model, nhead)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model * 4), QuickGELU(), nn.Dropout(dropout),
                                 nn.Linear(d_model * 4, d_model))

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), visual)
        return x + self.dropout(self.mlp(self.norm3(x)))


class VideoSpecificPrompt(nn.Module):
    """prompts_generator: text [B, K, D] and video tokens [B, M, D] -> alpha * decoded text [B, K, D]."""

    def __init__(self, layers: int = 2, embed_dim: int = 512, alpha: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder = nn.ModuleList([PromptGeneratorLayer(embed_dim, max(embed_dim // 64, 1)) for _ in range(layers)])
        self.alpha = nn.Parameter(torch.ones(embed_dim) * alpha)
        init_linear_and_norm(self)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        visual = self.norm(visual)
        for layer in self.decoder:
            text = layer(text, visual)
        return self.alpha * text


# ---------------------------------------------------------------------------------------------


class XCLIP(CLIP):
    """X-CLIP on uint8 clips; the arguments after `*` are the recipe's model section (ViT-B/16 by default)."""

    def __init__(self, class_names: Sequence[str], frames: int = 8, size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, templates: Sequence[str] = ("{}",), descriptions: dict = None, *,
                 embed_dim: int = 512, vision_width: int = 768, vision_layers: int = 12, vision_patch_size: int = 16,
                 vision_heads: Optional[int] = None, context_length: int = 77, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8, transformer_layers: int = 12,
                 mit_layers: int = 1, prompts_layers: int = 2, prompts_alpha: float = 0.1, drop_path: float = 0.0,
                 fix_text: bool = True, new_lr_mult: float = 10.0, grad_checkpointing: bool = False):
        super().__init__(embed_dim, size, vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
                         transformer_width, transformer_heads, transformer_layers, vision_heads=vision_heads,
                         drop_path=drop_path, grad_checkpointing=grad_checkpointing, vision_block=CrossFrameBlock)
        self.frames, self.num_features = frames, embed_dim
        self.prompts_generator = VideoSpecificPrompt(prompts_layers, embed_dim, prompts_alpha)
        self.mit = MultiframeIntegration(frames, embed_dim, mit_layers)
        self.prompts_visual_ln = LayerNorm(vision_width)
        self.prompts_visual_proj = nn.Parameter(torch.randn(vision_width, embed_dim))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.new_lr_mult = float(new_lr_mult)
        self.fix_text = fix_text
        if fix_text:
            for name, p in self.named_parameters():
                if not any(key in name for key in ("visual.", "mit.", "prompts")):
                    p.requires_grad_(False)
        self.texts = ClassTexts(templates, descriptions)
        self.set_class_names(class_names)

    # -- text ---------------------------------------------------------------------------------

    def set_class_names(self, names) -> None:
        """Switch the label space: the logits score these classes from the next forward on."""
        self.texts.set_names(names)

    def class_features(self, names=None) -> torch.Tensor:
        """Unnormalised text features of the classes `names` (default: the label space) [K, D] (fp32),
        averaged over prompts; cached unless the text tower trains (fix_text false)."""
        return self.texts.features(self, normalize=False, names=names)

    # -- video --------------------------------------------------------------------------------

    def forward_features(self, clips: torch.Tensor, return_context: bool = False):
        """uint8 [B, T, 3, H, W] -> video features z [B, D] from mit; with return_context, (z, context):
        the context is what the video-specific prompts read, the patch tokens [B, N, D] (ln,
        @ prompts_visual_proj, mean over T)."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = ((clips.to(self.mean.dtype) - self.mean) / self.std).flatten(0, 1)
        cls, tokens = self.visual(x, return_tokens=True, frames=t)
        z = self.mit(cls.view(b, t, -1))
        if not return_context:
            return z
        tokens = self.prompts_visual_ln(tokens) @ self.prompts_visual_proj.to(tokens.dtype)
        return z, tokens.view(b, t, tokens.shape[1], -1).mean(dim=1)

    def class_logits(self, z: torch.Tensor, names, context: torch.Tensor = None) -> torch.Tensor:
        """logit_scale.exp() * cos(z, text feature + its video-specific prompt) for the classes `names`
        [B, K]. The prompts come from the video's context (forward_features(clips, return_context=True))."""
        if context is None:
            raise ValueError("X-CLIP's class texts depend on the video: pass the context of "
                             "forward_features(clips, return_context=True)")
        text = self.class_features(names).unsqueeze(0).expand(z.shape[0], -1, -1)
        text = text + self.prompts_generator(text, context)
        with torch.autocast(z.device.type, enabled=False):  # cosines in fp32: bf16 would blur the logits
            v = F.normalize(z.float(), dim=-1)
            txt = F.normalize(text.float(), dim=-1)
            return self.logit_scale.exp() * torch.einsum("bd,bkd->bk", v, txt)

    def forward_head(self, z: torch.Tensor, context: torch.Tensor = None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names, context)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.forward_features(clips, return_context=True))

    # -- optimizer hooks ----------------------------------------------------------------------

    def no_weight_decay(self) -> set:
        return {"visual.positional_embedding", "visual.class_embedding", "mit.positional_embedding", "positional_embedding"}

    def lr_multipliers(self) -> dict:
        m = self.new_lr_mult
        return {} if m == 1.0 else {"message_": m, "mit.": m, "prompts": m}

    # -- weights ------------------------------------------------------------------------------

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        checkpoint, source = read_pretrained(spec, "X-CLIP", log=log)
        if source is None:
            return {"loaded": 0}
        return self.load_state_from(checkpoint, source, log=log)

    def load_state_from(self, obj, source: str, log=log_to_stderr) -> dict:
        """Load a read checkpoint: an X-CLIP release ({'model': ...}, our checkpoints too) or CLIP
        weights. Only names are matched; mit.positional_embedding is resampled along time."""
        state = extract_state_dict(obj, source, containers=("model", "state_dict", "model_state"))
        state = {k: v for k, v in state.items() if k not in JIT_EXTRAS}
        if "mit.positional_embedding" in state:
            fit_time_embed(state, self.state_dict(), "mit.positional_embedding", source, "xclip", log=log)
            return load_checked(self, state, source, name="xclip", log=log)
        if "visual.conv1.weight" in state:
            fit_pos_embed(state, "visual.positional_embedding", self.visual.grid, source, "xclip", log=log)
            return load_checked(self, state, source, name="xclip", allow_missing=NEW_PARAMETERS, log=log)
        raise SystemExit(f"error: {source} holds neither X-CLIP nor CLIP weights (no mit.positional_embedding or "
                         f"visual.conv1.weight; first keys: {short_list(state)})")


Model = XCLIP


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = XCLIP(class_names, inp["frames"], inp["size"], inp["mean"], inp["std"], **text_settings(cfg), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
