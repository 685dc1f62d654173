"""ViT: the CLIP ViT-B/16 image tower applied to every frame, frame features averaged, a linear head.

A baseline outside the paper's 13 models: the frame-averaged image model that
every CLIP-based video model of the benchmark starts from, without their temporal modules or text.

    video uint8 [B, T, 3, H, W] -> CLIP normalisation -> visual (per frame: ln_post(class token) @ proj)
    -> [B, T, 512] -> mean over T -> dropout -> head (Linear 512 -> classes)

`self.visual` is models.clip.VisionTransformer, so its state dict holds exactly the released
`visual.*` keys of OpenAI's ViT-B-16.pt and `pretrained: ViT-B/16` loads them by name (the text
tower's tensors are ignored). Recipe: models/vit.yaml.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from models.clip import CLIP_MEAN_255, CLIP_STD_255, VisionTransformer
from models.weights import fit_pos_embed, load_checked, load_clip_visual_state, log_to_stderr


class CLIPFrameAverage(nn.Module):
    """The arguments after `*` are the recipe's model section (CLIP's ViT-B/16 image tower by default)."""

    def __init__(self, num_classes: int = 400, size: int = 224, mean: Sequence[float] = CLIP_MEAN_255,
                 std: Sequence[float] = CLIP_STD_255, *, width: int = 768, layers: int = 12, heads: Optional[int] = None,
                 patch_size: int = 16, output_dim: int = 512, drop_path: float = 0.0, dropout: float = 0.0,
                 head_lr_mult: float = 1.0, grad_checkpointing: bool = False):
        super().__init__()
        self.visual = VisionTransformer(size, patch_size, width, layers, heads or max(width // 64, 1), output_dim,
                                        drop_path=drop_path, grad_checkpointing=grad_checkpointing)
        self.num_features = output_dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(output_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.head_lr_mult = float(head_lr_mult)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, H, W] -> frame features averaged over T [B, output_dim]."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = (clips.to(self.mean.dtype) - self.mean) / self.std
        return self.visual(x.flatten(0, 1)).view(b, t, -1).mean(1)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(z))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self) -> set:
        return {"visual.class_embedding", "visual.positional_embedding"}

    def lr_multipliers(self) -> dict:
        return {"head.": self.head_lr_mult} if self.head_lr_mult != 1.0 else {}

    def load_clip_weights(self, spec, log=log_to_stderr) -> dict:
        """The image tower of CLIP weights `spec` (a name, or the path of CLIP or image-tower weights; see
        models.weights.load_clip_visual_state) into self.visual. positional_embedding is resampled
        (bicubic) when the input size differs from the weights'."""
        _, visual, source = load_clip_visual_state(spec, "ViT", log=log)
        if visual is None:
            return {"loaded": 0}
        fit_pos_embed(visual, "positional_embedding", self.visual.grid, source, "vit", log=log)
        return load_checked(self.visual, visual, source, name="vit.visual", log=log)


Model = CLIPFrameAverage


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = CLIPFrameAverage(len(class_names), inp["size"], inp["mean"], inp["std"], **cfg["model"])
    model.load_clip_weights(cfg["pretrained"])
    return model
