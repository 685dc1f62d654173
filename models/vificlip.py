"""ViFi-CLIP (Rasheed et al., CVPR 2023; github.com/muzairkhattak/ViFi-CLIP): CLIP fine-tuned on
video, both towers, with nothing added.

    video uint8 [B, T, 3, H, W] -> ImageNet normalisation -> visual (per frame: ln_post(class token)
    @ proj) -> [B, T, 512] -> mean over T -> L2 norm
    class prompts "a photo of a {}." -> the text tower -> L2 norm
    logits = logit_scale.exp() * video @ text.T   [B, K]

Both towers and logit_scale are trained (the release's `USE: both`); the prompts run through the
text tower at every training step, so the text features carry gradients. In evaluation they are
computed once per label space and cached (models.class_texts.ClassTexts: recomputed after
set_class_names and whenever the text weights change, e.g. when training resumes). token_embedding
is never trained: ViFi-CLIP embeds its prompts once with OpenAI's table and keeps no embedding
layer, so it is frozen here.

The model keeps OpenAI CLIP's parameter names (the model is a models.clip.CLIP), so
`pretrained: ViT-B/16` loads by name and the state dict is exactly OpenAI's 302 tensors. Released
ViFi-CLIP checkpoints ({'model': ...} saved from DDP, every key `module.`, plus a pickled yacs
config) are converted at load time by renaming only:
    module.                      stripped
    image_encoder.*          ->  visual.*
    text_encoder.*           ->  * (transformer.*, positional_embedding, ln_final.*, text_projection)
    logit_scale              ->  logit_scale
    prompt_learner.complete_text_embeddings (and token_prefix / token_suffix, if present): dropped,
        as every official loader does; they are the K training prompts already embedded, rebuilt
        here from the current class names
    token_embedding.weight: absent from the release, taken from the CLIP weights named by
        model.token_embedding_from (default ViT-B/16)
Anything else missing or unexpected (e.g. the learned context of a prompting-stage checkpoint,
prompt_learner.ctx / VPT) is refused with a one-line error.

Deviations from the published code: batch-first SDPA attention (the core's); fp32 master weights
with autocast instead of apex O1; X-CLIP's colour jitter / grayscale augmentations (ViFi-CLIP's data
pipeline is X-CLIP's) are not in the harness. Recipe: vificlip.yaml.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import ClassTexts, text_settings
from models.clip import CLIP, IMAGENET_MEAN, IMAGENET_STD
from models.weights import (JIT_EXTRAS, extract_state_dict, fit_pos_embed, load_checked, load_clip_state_dict,
                            log_to_stderr, no_weights, read_pretrained, short_list)

# Class-dependent buffers of ViFi-CLIP's prompt learner: saved by its training code, deleted by all of
# its loaders (utils/tools.py load_checkpoint in github.com/muzairkhattak/ViFi-CLIP), rebuilt from the class names.
RELEASE_DROPPED = ("prompt_learner.complete_text_embeddings", "prompt_learner.token_prefix", "prompt_learner.token_suffix")


def vifi_to_clip_names(state: dict) -> tuple:
    """A ViFi-CLIP state dict (`module.` already stripped) -> (state with OpenAI CLIP names, the
    dropped class-dependent buffer names). Renaming only; every tensor is passed on unchanged."""
    out, dropped = {}, []
    for k, v in state.items():
        if k in RELEASE_DROPPED:
            dropped.append(k)
            continue
        if k.startswith("image_encoder."):
            k = "visual." + k[len("image_encoder."):]
        elif k.startswith("text_encoder."):
            k = k[len("text_encoder."):]
        out[k] = v
    return out, dropped


class ViFiCLIP(CLIP):
    """ViFi-CLIP on uint8 clips; the arguments after `*` are the recipe's model section (ViT-B/16 by default)."""

    def __init__(self, class_names: Sequence[str], size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, templates: Sequence[str] = ("a photo of a {}.",),
                 descriptions: dict = None, *, embed_dim: int = 512, vision_width: int = 768, vision_layers: int = 12,
                 vision_patch_size: int = 16, vision_heads: Optional[int] = None, context_length: int = 77,
                 vocab_size: int = 49408, transformer_width: int = 512, transformer_heads: int = 8,
                 transformer_layers: int = 12, drop_path: float = 0.0, train_token_embedding: bool = False,
                 token_embedding_from: str = "ViT-B/16", grad_checkpointing: bool = False):
        super().__init__(embed_dim, size, vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
                         transformer_width, transformer_heads, transformer_layers, vision_heads=vision_heads,
                         drop_path=drop_path, grad_checkpointing=grad_checkpointing)
        self.num_features = embed_dim
        self.token_embedding.weight.requires_grad_(train_token_embedding)
        self.token_embedding_from = token_embedding_from
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.texts = ClassTexts(templates, descriptions)
        self.set_class_names(class_names)

    # -- text ---------------------------------------------------------------------------------

    def set_class_names(self, names) -> None:
        """Switch the label space: the logits score these classes from the next forward on."""
        self.texts.set_names(names)

    def class_features(self, names=None) -> torch.Tensor:
        """L2-normalised text features of the classes `names` (default: the label space) [K, D] (fp32):
        with a graph while training, from the cache otherwise."""
        return self.texts.features(self, names=names)

    # -- video --------------------------------------------------------------------------------

    def forward_features(self, clips: torch.Tensor, return_context: bool = False):
        """uint8 [B, T, 3, H, W] -> frame features averaged over T [B, D] (no context: (z, None))."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = ((clips.to(self.mean.dtype) - self.mean) / self.std).flatten(0, 1)
        z = self.visual(x).view(b, t, -1).mean(dim=1)
        return (z, None) if return_context else z

    def class_logits(self, z: torch.Tensor, names, context=None) -> torch.Tensor:
        """logit_scale.exp() * cos(z, text feature) for the classes `names` [B, K]."""
        v = F.normalize(z.float(), dim=-1)
        text = self.class_features(names)
        with torch.autocast(z.device.type, enabled=False):  # cosines in fp32: bf16 would blur the logits
            return self.logit_scale.exp() * v @ text.float().t()

    def forward_head(self, z: torch.Tensor, context=None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self) -> set:
        return {"visual.positional_embedding", "visual.class_embedding", "positional_embedding"}

    # -- weights ------------------------------------------------------------------------------

    def load_pretrained(self, spec, log=log_to_stderr) -> dict:
        checkpoint, source = read_pretrained(spec, "ViFi-CLIP", log=log)
        if source is None:
            return {"loaded": 0}
        return self.load_state_from(checkpoint, source, log=log)

    def load_state_from(self, obj, source: str, token_embedding: torch.Tensor = None, log=log_to_stderr) -> dict:
        """Load a read checkpoint: a ViFi-CLIP release (renamed, see the module docstring; its missing
        token_embedding from `token_embedding`, else from model.token_embedding_from), CLIP weights,
        or a checkpoint of this repository."""
        state = extract_state_dict(obj, source, containers=("model", "state_dict", "model_state"))
        state = {k: v for k, v in state.items() if k not in JIT_EXTRAS}
        if any(k.startswith(("image_encoder.", "text_encoder.")) for k in state):
            state, dropped = vifi_to_clip_names(state)
            if dropped:
                log(f"vificlip: left out the {len(dropped)} class-dependent prompt buffers of {source} "
                    f"({short_list(dropped)}); they are rebuilt from the current class names")
            if "token_embedding.weight" not in state:
                if token_embedding is None:
                    token_embedding = self.clip_token_embedding(source, log=log)
                state["token_embedding.weight"] = token_embedding
        elif "visual.conv1.weight" not in state:
            raise SystemExit(f"error: {source} holds neither ViFi-CLIP nor CLIP weights (no image_encoder.* or "
                             f"visual.conv1.weight; first keys: {short_list(state)})")
        fit_pos_embed(state, "visual.positional_embedding", self.visual.grid, source, "vificlip", log=log)
        return load_checked(self, state, source, name="vificlip", log=log)

    def clip_token_embedding(self, source: str, log=log_to_stderr) -> torch.Tensor:
        spec = self.token_embedding_from
        if no_weights(spec):
            raise SystemExit(f"error: {source} is a ViFi-CLIP release, which has no token_embedding; set "
                             f"model.token_embedding_from to the CLIP weights it was trained from (ViT-B/16 or a path)")
        clip_state = load_clip_state_dict(spec, log=log)
        if "token_embedding.weight" not in clip_state:
            raise SystemExit(f"error: model.token_embedding_from {spec} holds no token_embedding.weight")
        log(f"vificlip: token_embedding.weight (absent from {source}) taken from CLIP {spec}")
        return clip_state["token_embedding.weight"]


Model = ViFiCLIP


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = ViFiCLIP(class_names, inp["size"], inp["mean"], inp["std"], **text_settings(cfg), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model
