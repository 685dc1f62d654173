"""ActionCLIP (Wang et al., 2021; github.com/sallymmx/ActionCLIP) as ported to mmaction2
(projects/actionclip), the version the benchmark trained: CLIP + a temporal transformer adapter.

    video uint8 [B, T, 3, H, W] -> CLIP normalisation -> clip.visual per frame [B, T, 512]
    -> adapter: + frame_position_embeddings[:T], CLIP Transformer(512, 6 layers, 8 heads), residual,
       mean over T -> video feature [B, 512] -> L2 norm
    class texts: 16 templates per class ("a photo of action {}", ..., "The woman is {}") -> clip text
       tower -> L2 norm, one feature per (template, class)

  * training (model.train(), forward(clips, targets)): every clip draws one template at random
    (model.template_sampling: `sample`; `batch` draws one per step). model.loss picks the objective
    (models.class_texts.in_batch_loss), over logit_scale.exp() * cos(video i, text j) [B, B], text j
    being clip j's class in clip j's template:
      - infonce (the study's: the mmaction2 port's loss): cross-entropy with the diagonal as the
        target, 0.5 per direction;
      - kl (the original ActionCLIP's KLLoss): KL divergence to the batch's same-class matching
        (softmax of 10 x the same-class matrix), both directions averaged;
      - ce: cross-entropy over all classes of the label space, scored with each clip's template (the
        other text models' objective here).
    The returned logits score every class with the clip's template [B, K] (the training accuracy;
    for kl / infonce without a gradient). Both towers, logit_scale and the adapter are trained (the
    adapter at lr x10).
  * evaluation (model.eval()): ActionCLIP's test rule, a softmax over the classes for each template
    at the fixed scale 100 (model.test_logit_scale; null = logit_scale.exp()), averaged over the
    templates. forward returns the log of these averaged probabilities, so the softmax the harness
    applies gives exactly them. The text features are cached per label space (models.class_texts.ClassTexts,
    recomputed after set_class_names or any change of the text weights).

State dict: the mmaction2 port's layout, `clip.<OpenAI CLIP names>` and `adapter.frame_position_
embeddings.weight` [T, 512], `adapter.transformer.resblocks.N.*`, plus `adapter.layer_norm_eps`, a
0-dim buffer: the eps of the adapter's LayerNorms, which follows the weights loaded. The original
release's fusion transformer uses TF-style LayerNorm with eps 1e-12 (its modules/Visual_Prompt.py),
the port CLIP's LayerNorm with eps 1e-5; at 1e-5 the original release's video features are off by
1.8e-5 and its test logits by 2.9e-4 (against the original code on the same weights), at 1e-12 by
1.2e-7 and 2.9e-6. Our checkpoints keep the buffer, so a run started from the original release
evaluates and resumes with 1e-12. Pretrained (recipe `pretrained`):
  * a CLIP name or file (ViT-B/16): loaded into clip.*, the adapter keeps its initialisation
    (normal std 0.02 for Linear / Embedding weights, zero biases, as the port's init_weights) and
    eps 1e-5;
  * the mmaction2 port's checkpoint (vit-b-16-8f.pth: {'state_dict': {clip.*, adapter.*}}, eps
    1e-5) or one of this repository (its own eps): by name; a frame_position_embeddings of more rows
    than T gives its first T rows;
  * the original release ({'model_state_dict': CLIP (fp16 / fp32, no prefix), 'fusion_model_state_dict':
    fusion model with DataParallel's `module.`}): clip. + the CLIP names, adapter. + the fusion names,
    eps 1e-12; frame_position_embeddings [77, 512] gives its first T rows (the original uses only
    those);
  * none.
Deviations: weight decay is not applied to 1-D parameters (the harness's convention; the port decays
every parameter); the port's RandomResizedCrop + MultiScaleCrop chain is one random resized crop.
Recipe: actionclip.yaml.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import IN_BATCH_LOSSES, ClassTexts, check_in_batch_settings, in_batch_loss, text_settings
from models.clip import CLIP, CLIP_MEAN_255, CLIP_STD_255, ResidualAttentionBlock, Transformer
from models.weights import (JIT_EXTRAS, extract_state_dict, fit_pos_embed, load_checked, log_to_stderr,
                            read_pretrained, short_list)

# The 16 templates of ActionCLIP (utils/Text_Prompt.py) and of the mmaction2 port.
TEMPLATES = (
    "a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action", "{} this is an action",
    "{}, a video of action", "Playing action of {}", "{}", "Playing a kind of action, {}", "Doing a kind of action, {}",
    "Look, the human is {}", "Can you recognize the action of {}?", "Video classification of {}", "A video of {}",
    "The man is {}", "The woman is {}",
)
# Buffers an mmaction2 checkpoint may carry beside the weights (the data preprocessor's mean / std).
PORT_IGNORED = ("data_preprocessor.*",)
PORT_EPS, ORIGINAL_EPS = 1e-5, 1e-12  # the adapter's LayerNorm eps in the port / the original release
EPS_KEY = "adapter.layer_norm_eps"


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """`norm`'s LayerNorm of x with `eps` a tensor (TF style, as the original's fusion model writes it:
    (x - mean) / sqrt(var + eps) * weight + bias), in fp32 and cast back to x's dtype."""
    x32 = x.float()
    centred = x32 - x32.mean(-1, keepdim=True)
    y = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * norm.weight + norm.bias
    return y.to(x.dtype)


class AdapterBlock(ResidualAttentionBlock):
    """CLIP's block, its ln_1 / ln_2 computed with the adapter's eps."""

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(layer_norm(self.ln_1, x, eps))
        return x + self.mlp(layer_norm(self.ln_2, x, eps))


class TransformerAdapter(nn.Module):
    """Frame features [B, T, D] + frame_position_embeddings -> CLIP Transformer -> + input -> mean over T.
    The LayerNorms' eps is the buffer `layer_norm_eps` (a tensor, so it is saved and loaded with the
    weights)."""

    def __init__(self, frames: int, embed_dim: int, layers: int, heads: int, eps: float = PORT_EPS):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(frames, embed_dim)
        self.transformer = Transformer(embed_dim, layers, heads, block=AdapterBlock)
        self.register_buffer("layer_norm_eps", torch.tensor(eps))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, rows = x.shape[1], self.frame_position_embeddings.weight.shape[0]
        if t > rows:
            raise ValueError(f"the adapter has frame position embeddings for {rows} frames, the clip has {t}")
        y = self.transformer(x + self.frame_position_embeddings.weight[:t].to(x.dtype), eps=self.layer_norm_eps)
        return (y.to(x.dtype) + x).mean(dim=1)


class ActionCLIP(nn.Module):
    """ActionCLIP on uint8 clips; the arguments after `*` are the recipe's model section (ViT-B/16 by default)."""

    def __init__(self, class_names: Sequence[str], frames: int = 8, size: int = 224,
                 mean: Sequence[float] = CLIP_MEAN_255, std: Sequence[float] = CLIP_STD_255,
                 templates: Sequence[str] = TEMPLATES, descriptions: dict = None, *, embed_dim: int = 512,
                 vision_width: int = 768, vision_layers: int = 12, vision_patch_size: int = 16,
                 vision_heads: Optional[int] = None, context_length: int = 77, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8, transformer_layers: int = 12,
                 adapter_layers: int = 6, adapter_lr_mult: float = 10.0, template_sampling: str = "sample",
                 loss: str = "infonce", test_logit_scale: Optional[float] = 100.0, drop_path: float = 0.0,
                 grad_checkpointing: bool = False):
        super().__init__()
        if template_sampling not in ("sample", "batch"):
            raise SystemExit(f"error: model.template_sampling must be 'sample' or 'batch', found {template_sampling!r}")
        if loss not in (*IN_BATCH_LOSSES, "ce"):
            raise SystemExit(f"error: model.loss must be infonce, kl or ce, found {loss!r}")
        self.frames, self.num_features = frames, embed_dim
        self.clip = CLIP(embed_dim, size, vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
                         transformer_width, transformer_heads, transformer_layers, vision_heads=vision_heads,
                         drop_path=drop_path, grad_checkpointing=grad_checkpointing)
        self.adapter = TransformerAdapter(frames, embed_dim, adapter_layers, max(transformer_width // 64, 1))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.adapter_lr_mult = float(adapter_lr_mult)
        self.template_sampling, self.loss = template_sampling, loss
        self.test_logit_scale = test_logit_scale
        self.texts = ClassTexts(templates, descriptions)
        self.set_class_names(class_names)

    # -- text ---------------------------------------------------------------------------------

    def set_class_names(self, names) -> None:
        """Switch the label space: the logits score these classes from the next forward on."""
        self.texts.set_names(names)

    def encode_prompts(self, which: torch.Tensor, names=None) -> torch.Tensor:
        """L2-normalised text features of templates `which` [U] for every class of `names` (default: the
        label space) -> [U, K, D] (fp32)."""
        space = self.texts.space(names)
        tokens = space.tokens.view(len(space.names), -1, space.tokens.shape[-1])  # [K, P, 77]
        tokens = tokens[:, which.cpu()].transpose(0, 1).to(self.clip.positional_embedding.device)
        feats = self.clip.encode_text(tokens.flatten(0, 1)).float()
        return F.normalize(feats, dim=-1).view(len(which), len(space.names), -1)

    def template_features(self, names=None) -> torch.Tensor:
        """[P, K, D] features of every template (evaluation), cached per label space."""
        return self.texts.cached(self.clip, "templates",
                                 lambda space: self.encode_prompts(torch.arange(space.counts[0]), space.names), names)

    # -- video --------------------------------------------------------------------------------

    def forward_features(self, clips: torch.Tensor, return_context: bool = False):
        """uint8 [B, T, 3, H, W] -> the adapter's video feature [B, D] (no context: (z, None))."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = ((clips.to(self.mean.dtype) - self.mean) / self.std).flatten(0, 1)
        z = self.adapter(self.clip.visual(x).view(b, t, -1))
        return (z, None) if return_context else z

    def class_logits(self, z: torch.Tensor, names, context=None) -> torch.Tensor:
        """Scores of the classes `names` [B, K]: one random template per clip in training
        (train_logits), the log of the template-averaged probabilities in evaluation (test_scores)."""
        v = F.normalize(z.float(), dim=-1)
        return self.train_logits(v, self.draw_templates(len(v)), names) if self.training else self.test_scores(v, names)

    def forward_head(self, z: torch.Tensor, context=None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names)

    def forward(self, clips: torch.Tensor, targets: torch.Tensor = None):
        """The class scores [B, K]; in training with `targets` (class ids [B], or soft targets [B, K]
        for model.loss ce) {"logits", "loss"}: model.loss's objective (see the module docstring)."""
        z = self.forward_features(clips)
        if not (self.training and targets is not None):
            return self.forward_head(z)
        v, drawn = F.normalize(z.float(), dim=-1), self.draw_templates(len(z))
        if self.loss == "ce":
            logits = self.train_logits(v, drawn)
            return {"logits": logits, "loss": F.cross_entropy(logits, targets)}
        text = self.texts.pair_features(self.clip, targets, drawn)
        loss = in_batch_loss(v, text, targets, self.clip.logit_scale.exp(), self.loss)
        with torch.no_grad():
            return {"logits": self.train_logits(v, drawn), "loss": loss}

    def draw_templates(self, n: int) -> torch.Tensor:
        """The prompt of each of n clips in training: one drawn per clip (template_sampling sample) or
        one for all (batch) [n]."""
        prompts = self.texts.counts[0]  # prompts per class: the templates, or 1 description
        if self.template_sampling == "sample":
            return torch.randint(prompts, (n,))
        return torch.randint(prompts, (1,)).expand(n)

    def train_logits(self, v: torch.Tensor, drawn: torch.Tensor, names=None) -> torch.Tensor:
        """logit_scale.exp() * cos(video b, template drawn[b] of every class) [B, K]."""
        used, which = drawn.unique(return_inverse=True)
        text = self.encode_prompts(used, names)[which.to(v.device)]  # [B, K, D]
        with torch.autocast(v.device.type, enabled=False):  # cosines in fp32: bf16 would blur the logits
            return self.clip.logit_scale.exp() * torch.einsum("bd,bkd->bk", v, text)

    def test_scores(self, v: torch.Tensor, names=None) -> torch.Tensor:
        """log of the class probabilities averaged over the templates [B, K]."""
        scale = self.test_logit_scale if self.test_logit_scale is not None else self.clip.logit_scale.exp()
        text = self.template_features(names)
        with torch.autocast(v.device.type, enabled=False):  # fp32: bf16 would blur the scores
            probs = (scale * torch.einsum("bd,pkd->bpk", v, text)).softmax(dim=-1).mean(dim=1)
            return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    # -- optimizer hooks ----------------------------------------------------------------------

    def no_weight_decay(self) -> set:
        return {"clip.visual.positional_embedding", "clip.visual.class_embedding", "clip.positional_embedding"}

    def lr_multipliers(self) -> dict:
        return {} if self.adapter_lr_mult == 1.0 else {"adapter.": self.adapter_lr_mult}

    # -- weights ------------------------------------------------------------------------------

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        checkpoint, source = read_pretrained(spec, "ActionCLIP", log=log)
        if source is None:
            return {"loaded": 0}
        return self.load_state_from(checkpoint, source, log=log)

    def load_state_from(self, obj, source: str, log=log_to_stderr) -> dict:
        """Load a read checkpoint: the original release, the mmaction2 port (or ours), or CLIP weights."""
        allow_missing, allow_unexpected = (), PORT_IGNORED
        if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict) \
                and isinstance(obj.get("fusion_model_state_dict"), dict):
            clip_state = extract_state_dict(obj["model_state_dict"], f"{source} model_state_dict", containers=())
            fusion = extract_state_dict(obj["fusion_model_state_dict"], f"{source} fusion_model_state_dict", containers=())
            state = {f"clip.{k}": v for k, v in clip_state.items() if k not in JIT_EXTRAS}
            state.update({f"adapter.{k}": v for k, v in fusion.items()}, **{EPS_KEY: torch.tensor(ORIGINAL_EPS)})
            kind = "the original release (adapter LayerNorm eps 1e-12)"
        else:
            state = extract_state_dict(obj, source, containers=("state_dict", "model", "model_state"))
            if any(k.startswith("clip.") for k in state):
                state = {k: v for k, v in state.items() if not (k.startswith("clip.") and k[len("clip."):] in JIT_EXTRAS)}
                kind = "the mmaction2 layout" if EPS_KEY in state else "the mmaction2 port (adapter LayerNorm eps 1e-5)"
                state.setdefault(EPS_KEY, torch.tensor(PORT_EPS))
            elif "visual.conv1.weight" in state:
                state = {f"clip.{k}": v for k, v in state.items() if k not in JIT_EXTRAS}
                allow_missing, kind = ("adapter.*",), "CLIP"
            else:
                raise SystemExit(f"error: {source} holds neither ActionCLIP nor CLIP weights (no clip.*, "
                                 f"model_state_dict or visual.conv1.weight; first keys: {short_list(state)})")
        key = "adapter.frame_position_embeddings.weight"
        rows, own = state.get(key), self.adapter.frame_position_embeddings.weight
        if rows is not None and rows.ndim == 2 and rows.shape[1] == own.shape[1] and rows.shape[0] > own.shape[0]:
            state[key] = rows[: own.shape[0]]
            log(f"actionclip: frame_position_embeddings of {source}: the first {own.shape[0]} of {rows.shape[0]} rows")
        fit_pos_embed(state, "clip.visual.positional_embedding", self.clip.visual.grid, source, "actionclip", log=log)
        log(f"actionclip: {source} read as {kind}")
        return load_checked(self, state, source, name="actionclip", allow_missing=allow_missing,
                            allow_unexpected=allow_unexpected, log=log)


Model = ActionCLIP


def build_model(cfg: dict, class_names: list) -> nn.Module:
    check_in_batch_settings(cfg, cfg["model"]["loss"])
    inp = cfg["input"]
    model = ActionCLIP(class_names, inp["frames"], inp["size"], inp["mean"], inp["std"],
                       **text_settings(cfg, default_templates=TEMPLATES), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
