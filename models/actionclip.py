"""ActionCLIP (Wang et al., 2021; github.com/sallymmx/ActionCLIP) as ported to mmaction2
(projects/actionclip), the version the benchmark trained: CLIP + a temporal transformer adapter.

    video uint8 [B, T, 3, H, W] -> CLIP normalisation -> clip.visual per frame [B, T, 512]
    -> adapter: + frame_position_embeddings[:T], CLIP Transformer(512, 6 layers, 8 heads), residual,
       mean over T -> video feature [B, 512] -> L2 norm
    class texts: 16 templates per class ("a photo of action {}", ..., "The woman is {}") -> clip text
       tower -> L2 norm, one feature per (template, class)

  * training (model.train()): every clip draws one template at random (model.template_sampling:
    `sample`; `batch` draws one per step), and its logits are logit_scale.exp() * cos(video, that
    template's text of every class) [B, K]; the harness's cross-entropy over the classes is the loss.
    Both towers, logit_scale and the adapter are trained (the adapter at lr x10).
  * evaluation (model.eval()): ActionCLIP's test rule, a softmax over the classes for each template
    at the fixed scale 100 (model.test_logit_scale; null = logit_scale.exp()), averaged over the
    templates. forward returns the log of these averaged probabilities, so the softmax the harness
    applies gives exactly them. The text features are cached per label space (models.class_texts.ClassTexts,
    recomputed after set_class_names or any change of the text weights).

The published training losses are not used: the original's KL loss between video-text similarities
and the ground-truth pairing matrix, and the mmaction2 port's symmetric InfoNCE over the (video,
text-of-its-label) pairs of the batch. Both treat the other samples of the batch as the negatives;
here the negatives are the other classes' texts, as the harness's other text models train.

State dict: the mmaction2 port's layout, `clip.<OpenAI CLIP names>` and `adapter.frame_position_
embeddings.weight` [T, 512], `adapter.transformer.resblocks.N.*`. Pretrained (recipe `pretrained`):
  * a CLIP name or file (ViT-B/16): loaded into clip.*, the adapter keeps its initialisation
    (normal std 0.02 for Linear / Embedding weights, zero biases, as the port's init_weights);
  * the mmaction2 port's checkpoint (vit-b-16-8f.pth: {'state_dict': {clip.*, adapter.*}}) or one of
    this repository: by name; a frame_position_embeddings of more rows than T gives its first T rows;
  * the original release ({'model_state_dict': CLIP (fp16 / fp32, no prefix), 'fusion_model_state_dict':
    fusion model with DataParallel's `module.`}): clip. + the CLIP names, adapter. + the fusion names;
    frame_position_embeddings [77, 512] gives its first T rows (the original uses only those);
  * none.
Deviations: the original's fusion transformer uses TF-style LayerNorm (eps 1e-12), the port and this
file CLIP's (eps 1e-5); weight decay is not applied to 1-D parameters (the harness's convention; the
port decays every parameter); the port's RandomResizedCrop + MultiScaleCrop chain is one random
resized crop. Recipe: actionclip.yaml.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import ClassTexts, text_settings
from models.clip import CLIP, CLIP_MEAN_255, CLIP_STD_255, Transformer
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


class TransformerAdapter(nn.Module):
    """Frame features [B, T, D] + frame_position_embeddings -> CLIP Transformer -> + input -> mean over T."""

    def __init__(self, frames: int, embed_dim: int, layers: int, heads: int):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(frames, embed_dim)
        self.transformer = Transformer(embed_dim, layers, heads)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, rows = x.shape[1], self.frame_position_embeddings.weight.shape[0]
        if t > rows:
            raise ValueError(f"the adapter has frame position embeddings for {rows} frames, the clip has {t}")
        y = self.transformer(x + self.frame_position_embeddings.weight[:t].to(x.dtype))
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
                 test_logit_scale: Optional[float] = 100.0, drop_path: float = 0.0, grad_checkpointing: bool = False):
        super().__init__()
        if template_sampling not in ("sample", "batch"):
            raise SystemExit(f"error: model.template_sampling must be 'sample' or 'batch', found {template_sampling!r}")
        self.frames, self.num_features = frames, embed_dim
        self.clip = CLIP(embed_dim, size, vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
                         transformer_width, transformer_heads, transformer_layers, vision_heads=vision_heads,
                         drop_path=drop_path, grad_checkpointing=grad_checkpointing)
        self.adapter = TransformerAdapter(frames, embed_dim, adapter_layers, max(transformer_width // 64, 1))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.adapter_lr_mult = float(adapter_lr_mult)
        self.template_sampling = template_sampling
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
        return self.texts.cached(self.clip, lambda space: self.encode_prompts(torch.arange(space.counts[0]), space.names),
                                 names)

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
        return self.train_logits(v, names) if self.training else self.test_scores(v, names)

    def forward_head(self, z: torch.Tensor, context=None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def train_logits(self, v: torch.Tensor, names=None) -> torch.Tensor:
        """logit_scale.exp() * cos(video b, template t_b of every class), t_b drawn per clip [B, K]."""
        n = self.texts.space(names).counts[0]  # prompts per class: the templates, or 1 description
        if self.template_sampling == "sample":
            drawn = torch.randint(n, (v.shape[0],))
        else:
            drawn = torch.randint(n, (1,)).expand(v.shape[0])
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
            state.update({f"adapter.{k}": v for k, v in fusion.items()})
            kind = "the original release"
        else:
            state = extract_state_dict(obj, source, containers=("state_dict", "model", "model_state"))
            if any(k.startswith("clip.") for k in state):
                state = {k: v for k, v in state.items() if not (k.startswith("clip.") and k[len("clip."):] in JIT_EXTRAS)}
                kind = "the mmaction2 layout"
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
    inp = cfg["input"]
    model = ActionCLIP(class_names, inp["frames"], inp["size"], inp["mean"], inp["std"],
                       **text_settings(cfg, default_templates=TEMPLATES), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
