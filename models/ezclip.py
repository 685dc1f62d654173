"""EZ-CLIP: CLIP ViT-B/16 with deep temporal visual prompts, adapters and a motion loss.

After Shahzadnit/EZ-CLIP (MIT; arXiv 2312.08010, published in TMLR 2025 as T2L), written anew on the
shared CLIP core (models/clip.py). Recipe: models/ezclip.yaml.

    video uint8 [B, T, 3, H, W] -> CLIP normalisation -> per frame: patches + class token + positions,
    + visual.temporal_embedding[t] on every token of frame t -> ln_pre -> 12 prompted blocks ->
    ln_post(class token) @ proj -> frame features [B, T, 512] (the motion loss reads these)
    -> mean over T -> L2 norm -> logits = 100 * cos(video, class text)

A prompted visual block i (T frames of a video, L tokens per frame):
  1. prompt token of frame t = T_prompt_embeddings[i, t] + mean of frame t's L input tokens;
  2. the T prompt tokens of a video attend to each other through the block's own ln_1 + attn
     (CLIP's weights, shared; stochastic depth on the result);
  3. each frame's token sequence gets its prompt token appended (L + 1 tokens);
  4. x + attn(ln_1(x)) over the L + 1 tokens, then the prompt token is dropped;
  5. Adapter: x + D_fc2(GELU(D_fc1(x))), bottleneck width/4, D_fc2 zero-initialised;
  6. x + mlp(ln_2(x)).
Text blocks are CLIP's with the same Adapter between attention and MLP. With every D_fc2 at zero the
text tower is exactly CLIP's, and so is the image tower when the prompts are switched off
(`model.prompts: false`); the prompt tokens are what changes the image features from the start.

Trainable: only parameters whose name contains `prompt` or `Adapter` (temporal prompts, visual and
text Adapters: 5.2M of 154.8M at full size); everything else, temporal_embedding (zeros) and
logit_scale included, is frozen as in EZ-CLIP. The text Adapters train (EZ-CLIP's train.py does not
detach the text features), so class-text features are recomputed at every training step and cached
only when no gradient can reach the text tower (evaluation, or `train_text_adapters: false`); the
cache is keyed on the version counters of the text parameters, so an optimizer step or a loaded
state invalidates it.

Class text: one description per class (`text.descriptions`: a CSV in the project's `name,description`
format or the benchmark's EZ-CLIP GPT files, per task), tokenised as is ("{}" template); without a
file, the class names through `text.templates`, features averaged over templates.

Training loss (forward(clips, targets) in training returns {"logits", "loss"}), as EZ-CLIP's
train.py: L = L_text + motion_loss weight x L_motion.
  * L_text, model.loss `kl` (EZ-CLIP's): ActionCLIP's in-batch KL loss (models.class_texts.in_batch_loss)
    over 100 * cos(video i, text j) [B, B], text j = one prompt of clip j's class (its description,
    or a template drawn per clip), KL_img and KL_txt averaged; `ce`: cross-entropy over all classes
    of the label space. The returned logits score every class [B, K] (the training accuracy; for kl
    without a gradient). The scale is model.logit_scale (100; EZ-CLIP's is CLIP's frozen
    logit_scale.exp(), 100 in the released CLIP).
  * L_motion = 1 / (C + V + 1) on the frame features x [B, T, D] before the time average:
    C = mean |x[t+1] - x[t-1]| / 2 (central difference, first/last frame repeated at the ends) and
    V = mean over (B, D) of the unbiased variance over T (torch.var's default, as EZ-CLIP).
Logits and losses are computed in fp32 under autocast (100 * cos moves in steps of 0.5 in bf16).

Weights: `pretrained` is OpenAI CLIP (a name such as ViT-B/16 or a file; prompts, Adapters and
temporal_embedding keep their initialisation) or an EZ-CLIP release: the file as published,
{'epoch', 'model_state_dict' (fp16 tensors, no prefix), 'optimizer_state_dict'}, loaded by name
and cast to fp32; its 400 keys are exactly this module's state dict (tested against the
release's layout). The frame count is baked into temporal_embedding [1, T, 768]
and T_prompt_embeddings [12, T, 768]; a release of another T is resampled linearly along T.

Deviations from the published code (none changes a parameter name or shape):
  * stochastic depth drops whole frames / whole videos (our batch-first DropPath); EZ-CLIP applies
    its DropPath to sequence-first tensors, which drops single tokens;
  * the harness's training clip sampling and augmentation (random frame per segment, short-side
    jitter crop, flip) instead of EZ-CLIP's `random_shift: False` centre-of-segment frames,
    multi-scale crop, colour jitter and grayscale;
  * fp32 master weights under autocast instead of fp16 weights converted around each step.
"""
import math
from functools import partial
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import ClassTexts, check_in_batch_settings, in_batch_loss, text_settings
from models.clip import CLIP, CLIP_MEAN_255, CLIP_STD_255, ResidualAttentionBlock
from models.weights import fit_pos_embed, fit_time_embed, load_checked, log_to_stderr, read_pretrained_state, short_list

RELEASE_CONTAINERS = ("model_state_dict", "state_dict", "model_state", "model")


# ---------------------------------------------------------------------------------------------
# blocks


class Adapter(nn.Module):
    """x + D_fc2(GELU(D_fc1(x))): a bottleneck of width * ratio; D_fc2 starts at zero (identity)."""

    def __init__(self, width: int, ratio: float = 0.25):
        super().__init__()
        hidden = int(width * ratio)
        self.D_fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.D_fc2 = nn.Linear(hidden, width)
        nn.init.zeros_(self.D_fc2.weight)
        nn.init.zeros_(self.D_fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.D_fc2(self.act(self.D_fc1(x)))


class PromptedBlock(ResidualAttentionBlock):
    """Visual block with a temporal prompt token per frame and an Adapter (steps 1-6 above).

    forward(x [B*T, L, D], frames=T, prompts=[layers, T, D] or None)."""

    def __init__(self, d_model: int, n_head: int, adapter_ratio: float = 0.25, **kwargs):
        super().__init__(d_model, n_head, **kwargs)
        self.Adapter = Adapter(d_model, adapter_ratio)

    def forward(self, x: torch.Tensor, frames: int = 1, prompts: torch.Tensor = None) -> torch.Tensor:
        n, length, d = x.shape
        if prompts is not None:
            per_video = x.view(n // frames, frames, length, d)
            p = prompts[self.layer].to(x.dtype) + per_video.mean(2)  # [B, T, D]
            p = self.drop_path(self.attention(self.ln_1(p)))  # the T prompt tokens attend across frames
            x = torch.cat([per_video, p.unsqueeze(2).to(x.dtype)], dim=2).view(n, length + 1, d)
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        x = self.Adapter(x[:, :length])
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class AdaptedTextBlock(ResidualAttentionBlock):
    """Text block: x + attn(ln_1(x)), Adapter, x + mlp(ln_2(x)). `rates`: stochastic depth per
    layer (CLIP builds text blocks without any; EZ-CLIP gives both towers the same rates)."""

    def __init__(self, d_model: int, n_head: int, adapter_ratio: float = 0.25, rates=None, **kwargs):
        if rates is not None:
            kwargs["drop_path"] = rates[kwargs.get("layer", 0)]
        super().__init__(d_model, n_head, **kwargs)
        self.Adapter = Adapter(d_model, adapter_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Adapter(x + self.drop_path(self.attention(self.ln_1(x))))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


def motion_loss(frames: torch.Tensor) -> torch.Tensor:
    """EZ-CLIP's motion loss of frame embeddings [B, T, D]: 1 / (C + V + 1), with C the mean
    absolute central difference over time / 2 (ends repeated) and V the mean temporal variance."""
    x = frames.float()
    before = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    after = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
    c = ((after - before).abs() / 2).mean()
    v = x.var(dim=1, correction=1 if x.shape[1] > 1 else 0).mean()
    return 1.0 / (c + v + 1.0)


# ---------------------------------------------------------------------------------------------
# the model


class EZCLIP(CLIP):
    """CLIP with EZ-CLIP's prompts and Adapters; the state dict is EZ-CLIP's (see module docstring). The
    arguments after `*` are the recipe's model section (ViT-B/16 by default)."""

    def __init__(self, class_names: Sequence[str], frames: int = 8, size: int = 224,
                 mean: Sequence[float] = CLIP_MEAN_255, std: Sequence[float] = CLIP_STD_255,
                 templates: Sequence[str] = ("{}",), descriptions: dict = None, *, embed_dim: int = 512,
                 width: int = 768, layers: int = 12, heads: Optional[int] = None, patch_size: int = 16,
                 text_width: int = 512, text_layers: int = 12, text_heads: int = 8, context_length: int = 77,
                 vocab_size: int = 49408, prompts: bool = True, prompt_dropout: float = 0.1, adapter_ratio: float = 0.25,
                 drop_path: float = 0.0, train_text_adapters: bool = True, loss: str = "kl", motion_loss: float = 1.0,
                 logit_scale: float = 100.0, grad_checkpointing: bool = False):
        if loss not in ("kl", "ce"):
            raise SystemExit(f"error: model.loss must be kl or ce, found {loss!r}")
        drop = float(drop_path)
        rates = [drop * i / max(text_layers - 1, 1) for i in range(text_layers)]
        super().__init__(
            embed_dim, size, layers, width, patch_size, context_length, vocab_size, text_width, text_heads, text_layers,
            vision_heads=heads or max(width // 64, 1), drop_path=drop, grad_checkpointing=grad_checkpointing,
            vision_block=partial(PromptedBlock, adapter_ratio=adapter_ratio),
            text_block=partial(AdaptedTextBlock, adapter_ratio=adapter_ratio, rates=rates))
        self.frames, self.num_features = frames, embed_dim
        self.visual.temporal_embedding = nn.Parameter(torch.zeros(1, frames, width))
        if prompts:
            # EZ-CLIP's uniform init bound (its code fixes the patch area at 16 x 16)
            bound = math.sqrt(6.0 / (3 * patch_size ** 2 + width))
            self.visual.transformer.T_prompt_embeddings = nn.Parameter(torch.empty(layers, frames, width))
            nn.init.uniform_(self.visual.transformer.T_prompt_embeddings, -bound, bound)
        self.prompt_dropout = nn.Dropout(float(prompt_dropout))
        self.scale = float(logit_scale)
        self.loss, self.motion_weight = loss, float(motion_loss)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        for name, p in self.named_parameters():
            trainable = "prompt" in name or "Adapter" in name
            p.requires_grad_(trainable and (train_text_adapters or name.startswith("visual.")))
        self.texts = ClassTexts(templates, descriptions)
        self.set_class_names(class_names)

    # -- text side ----------------------------------------------------------------------------

    def set_class_names(self, names) -> None:
        """Switch the label space (fine base-to-novel: the other set's classes)."""
        self.texts.set_names(names)

    def class_features(self, names=None) -> torch.Tensor:
        """Normalised text features of the classes `names` (default: the label space) [K, D] (fp32),
        cached while no gradient can reach them."""
        return self.texts.features(self, names=names)

    # -- image side ---------------------------------------------------------------------------

    def encode_frames(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, H, W] -> frame features [B, T, D] (ln_post(class token) @ proj, not normalised)."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(video.shape)}")
        b, t = video.shape[:2]
        if t != self.frames:
            raise ValueError(f"EZ-CLIP is built for {self.frames} frames (temporal embedding and prompts), got {t}")
        x = (video.to(self.mean.dtype) - self.mean) / self.std
        x = self.visual.embed(x.flatten(0, 1))
        x = x.unflatten(0, (b, t)) + self.visual.temporal_embedding.to(x.dtype).unsqueeze(2)
        x = self.visual.ln_pre(x.flatten(0, 1))
        prompts = getattr(self.visual.transformer, "T_prompt_embeddings", None)
        if prompts is not None:
            prompts = self.prompt_dropout(prompts)
        x = self.visual.transformer(x, frames=t, prompts=prompts)
        return self.visual.pool(x).unflatten(0, (b, t))

    def forward_features(self, clips: torch.Tensor, return_context: bool = False):
        """uint8 clip batch -> the mean of its frame features [B, D] (fp32; no context: (z, None))."""
        z = self.encode_frames(clips).float().mean(1)
        return (z, None) if return_context else z

    def class_logits(self, z: torch.Tensor, names, context=None) -> torch.Tensor:
        """100 * cos(z, text feature) for the classes `names` [B, K]."""
        text = self.class_features(names)
        with torch.autocast(z.device.type, enabled=False):  # 100 * cos needs more than bf16's 8 bits
            return self.scale * F.normalize(z.float(), dim=-1) @ text.float().t()

    def forward_head(self, z: torch.Tensor, context=None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names)

    def forward(self, clips: torch.Tensor, targets: torch.Tensor = None):
        """The class logits [B, K]; in training with `targets` (class ids [B], or soft targets [B, K]
        for model.loss ce) {"logits", "loss"} (see the module docstring)."""
        frames = self.encode_frames(clips)
        z = frames.float().mean(1)
        if not (self.training and targets is not None):
            return self.forward_head(z)
        if self.loss == "ce":
            logits = self.forward_head(z)
            loss = F.cross_entropy(logits, targets)
        else:
            drawn = torch.randint(self.texts.counts[0], (len(z),))  # one prompt per clip: its description, or a template
            text = self.texts.pair_features(self, targets, drawn)
            loss = in_batch_loss(F.normalize(z, dim=-1), text, targets, self.scale, "kl")
            with torch.no_grad():
                logits = self.forward_head(z)
        if self.motion_weight:
            loss = loss + self.motion_weight * motion_loss(frames)
        return {"logits": logits, "loss": loss}

    def no_weight_decay(self) -> set:
        return set()  # EZ-CLIP decays every trainable tensor; the harness already spares 1-D ones

    # -- weights ------------------------------------------------------------------------------

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        """OpenAI CLIP weights (name or file) or an EZ-CLIP release file; see the module docstring."""
        state, source = read_pretrained_state(spec, "EZ-CLIP", RELEASE_CONTAINERS, log=log)
        if source is None:
            return {"loaded": 0}
        release = any("Adapter" in k or "T_prompt" in k or k == "visual.temporal_embedding" for k in state)
        own = self.state_dict()
        for key in ("visual.temporal_embedding", "visual.transformer.T_prompt_embeddings"):
            fit_time_embed(state, own, key, source, "ezclip", log=log)
        fit_pos_embed(state, "visual.positional_embedding", self.visual.grid, source, "ezclip", log=log)
        if "visual.conv1.weight" not in state:
            raise SystemExit(f"error: {source} holds neither EZ-CLIP nor CLIP weights (first keys: {short_list(state)})")
        allow = () if release else ("visual.temporal_embedding", "visual.transformer.T_prompt_embeddings", "*.Adapter.*")
        return load_checked(self, state, source, name="ezclip", allow_missing=allow, log=log)


Model = EZCLIP


def build_model(cfg: dict, class_names: list) -> nn.Module:
    check_in_batch_settings(cfg, cfg["model"]["loss"])
    inp = cfg["input"]
    model = EZCLIP(class_names, inp["frames"], inp["size"], inp["mean"], inp["std"], **text_settings(cfg), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
