"""FROSTER: a fine-tuned video CLIP distilled towards a frozen CLIP through residual projectors.

After "FROSTER: Frozen CLIP is a Strong Teacher for Open-Vocabulary Action Recognition" (Huang et
al., ICLR 2024). The authors' code (Visual-AI/FROSTER) is CC BY-NC-SA: nothing here comes from it
but the module names and tensor shapes of its released checkpoints. The temporal attention follows
Open-VCLIP (wengzejia1/Open-VCLIP), the codebase FROSTER forks. Written on the shared CLIP core
(models/clip.py). Recipe: models/froster.yaml.

    student `model`: CLIP ViT-B/16 whose image blocks use Open-VCLIP's `expand_temporal_view`
    attention; all of it fine-tuned (both towers).
        video uint8 [B, T, 3, H, W] -> CLIP normalisation -> per-frame features f_t -> unit length
        -> v = mean over T (not renormalised: the mean of the per-frame logits, as Open-VCLIP)
        -> logits = exp(logit_scale) * v @ class_text.T        (class_text: unit length)
    teacher `raw_model`: plain CLIP with the same pretrained weights, frozen, in eval mode, run under
        no_grad in training only.
    `projector_v`, `projector_t`: residual MLPs g(x) = x + W2 act(W1 x) (Linear 512->512 and
        512->512, no biases; W2 zero-initialised, so g starts as the identity).

expand_temporal_view (Open-VCLIP): in every image block, the queries of frame t attend to the keys
and values of frames t+1, t-1 and t (3L keys for L queries). At the first/last frame the missing
neighbour contributes L all-zero keys and values: they are not masked, so they take part in the
softmax with score 0 and add nothing to the output. Because of those zero keys the key bias of
in_proj_bias changes the result here, so these blocks apply the full bias (the core leaves the key
third out, which is exact only without zero keys).

Training loss (forward(clips, targets) in training returns {"logits", "loss"}):
    L = CE(logits, targets) + distillation_ratio * (L_v + L_t),   distillation_ratio = 2.0 as the
    study's configs; the cross-entropy takes class ids or soft targets (PySlowFast's
    soft_cross_entropy; mixup, label smoothing)
    L_v = mean over the batch of ||g_v(v') - u||^2, v' = v / |v| (student), u = the teacher's
          video feature computed the same way and normalised
    L_t = mean over the classes of ||g_t(s) - r||^2, s / r = student / teacher class-text features
          (unit length)
i.e. a squared-L2 (MSE summed over the 512 dimensions) feature distillation between unit vectors,
the paper's residual feature distillation; our choice where the paper leaves the form open: the
features are L2-normalised before the projector and the distance (so g(x) = x at the start gives
L = 2 - 2 cos). With identity projectors L is 0 where student and teacher compute the same
function: at initialisation that holds for L_t only, since the expanded attention already moves the
student's video features away from the teacher's. Logits and distances are computed in fp32 under
autocast.

The teacher is a registered submodule (so .to(), autocast and DDP see it) with requires_grad False,
kept in eval mode; its tensors are left out of state_dict() (and hence out of our checkpoints,
600 MB less, and of the optimizer, which only takes parameters that require grad) and never
reported missing by load_state_dict. It is rebuilt at construction from `model.teacher` (the CLIP
weights it distils from, default ViT-B/16, as FROSTER's CLIP_ORI_PATH), so a resumed or evaluated
run gets the same teacher without storing it; `teacher: none` makes it a frozen copy of the
student's starting weights (tests, CPU runs).

Class text: the class names through `text.templates` ("{}" by default), or one text per class from
`text.descriptions` (FROSTER's LLM-rephrased names as a `name,description` CSV). The student's text
features are recomputed at every training step (the text tower trains); the teacher's and, outside
training, the student's are cached per label space.

Weights: `pretrained` is OpenAI CLIP (a name or a file: student and, when the names agree, teacher)
or a FROSTER release inside PySlowFast's {'model_state': ...}: the per-epoch training checkpoint
(`model.*`, `raw_model.*`, `projector_v.*`, `projector_t.*`; the teacher then comes from
raw_model.*) or the weight-averaged file (`model.*` and the projectors only; the teacher comes from
`model.teacher`, logged). Our state dict is exactly the averaged file's 306 keys.

Weight averaging: FROSTER evaluates the average of the weights of its epochs (Open-VCLIP's
weight_average_tool.py: the checkpoints of epochs 2 to 22, 1-based); the recipe's
train.weight_averaging does it in train.py, and evaluation uses the averaged weights.

Deviations from the published method: weight decay spares 1-D tensors (the harness's rule); the projector activation (GELU)
and the exact distance are not in the release and are our reading of the paper; the projectors
only serve the loss, so released weights evaluate identically whatever they are.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.class_texts import ClassTexts, TextFeatureCache, text_settings
from models.clip import CLIP, CLIP_MEAN_255, CLIP_STD_255, ResidualAttentionBlock
from models.weights import fit_pos_embed, load_checked, log_to_stderr, no_weights, read_pretrained_state, short_list

TEACHER = "raw_model."
RELEASE_CONTAINERS = ("model_state", "state_dict", "model", "model_state_dict")


# ---------------------------------------------------------------------------------------------
# blocks


def neighbour_view(t: torch.Tensor, frames: int) -> torch.Tensor:
    """Keys or values [B*T, heads, L, d] -> [B*T, heads, 3L, d]: those of frame t+1, frame t-1 (zeros
    where the video has no such frame) and frame t itself."""
    t = t.unflatten(0, (-1, frames))
    zero = torch.zeros_like(t[:, :1])
    after = torch.cat([t[:, 1:], zero], dim=1)
    before = torch.cat([zero, t[:, :-1]], dim=1)
    return torch.cat([after, before, t], dim=-2).flatten(0, 1)


class ExpandedViewBlock(ResidualAttentionBlock):
    """CLIP image block whose attention also sees the neighbouring frames' tokens (Open-VCLIP's
    expand_temporal_view). forward(x [B*T, L, D], frames=T); no new parameters."""

    def attention(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        q, k, v = self.attn.project(x, key_bias=True)  # full bias: see the module docstring
        return self.attn.attend(q, neighbour_view(k, frames), neighbour_view(v, frames))

    def forward(self, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.ln_1(x), frames))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class ResidualProjector(nn.Sequential):
    """g(x) = x + W2 act(W1 x): layers `0` and `2` as in the release (bias-free), W2 starts at zero."""

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim, bias=False), nn.GELU(), nn.Linear(dim, dim, bias=False))
        nn.init.zeros_(self[2].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


# ---------------------------------------------------------------------------------------------
# the model


class FROSTER(nn.Module):
    """Student (`model`), frozen teacher (`raw_model`) and projectors; the arguments after `*` are the
    recipe's model section (ViT-B/16 by default)."""

    def __init__(self, class_names: Sequence[str], size: int = 224, mean: Sequence[float] = CLIP_MEAN_255,
                 std: Sequence[float] = CLIP_STD_255, templates: Sequence[str] = ("{}",), descriptions: dict = None, *,
                 embed_dim: int = 512, width: int = 768, layers: int = 12, heads: Optional[int] = None,
                 patch_size: int = 16, text_width: int = 512, text_layers: int = 12, text_heads: int = 8,
                 context_length: int = 77, vocab_size: int = 49408, temporal_modeling: str = "expand_temporal_view",
                 teacher: str = "ViT-B/16", distillation_ratio: float = 2.0, train_text: bool = True,
                 drop_path: float = 0.0, grad_checkpointing: bool = False):
        super().__init__()
        if temporal_modeling != "expand_temporal_view":
            raise SystemExit(f"error: model.temporal_modeling: only expand_temporal_view is implemented, "
                             f"found {temporal_modeling!r}")
        dims = dict(embed_dim=embed_dim, image_resolution=size, vision_layers=layers, vision_width=width,
                    vision_patch_size=patch_size, context_length=context_length, vocab_size=vocab_size,
                    transformer_width=text_width, transformer_heads=text_heads, transformer_layers=text_layers,
                    vision_heads=heads or max(width // 64, 1))
        self.model = CLIP(**dims, vision_block=ExpandedViewBlock, drop_path=drop_path,
                          grad_checkpointing=grad_checkpointing)
        self.raw_model = CLIP(**dims)
        self.num_features = embed_dim
        self.projector_v = ResidualProjector(embed_dim)
        self.projector_t = ResidualProjector(embed_dim)
        self.teacher_spec = teacher
        self.ratio = float(distillation_ratio)
        self.train_text = train_text
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1), persistent=False)
        self.raw_model.requires_grad_(False)
        self.raw_model.eval()
        if not self.train_text:
            for name, p in self.model.named_parameters():
                if not name.startswith("visual."):
                    p.requires_grad_(False)
            self.projector_t.requires_grad_(False)
        # the teacher is not saved, not loaded and not synchronised by DDP (identical on every rank)
        self._register_state_dict_hook(_drop_teacher)
        self.register_load_state_dict_post_hook(_teacher_never_missing)
        self._ddp_params_and_buffers_to_ignore = [TEACHER + n for n, _ in self.raw_model.named_parameters()] + \
            [TEACHER + n for n, _ in self.raw_model.named_buffers()]
        self.texts = ClassTexts(templates, descriptions)
        self.teacher_text_cache = TextFeatureCache()  # the teacher's features of self.texts
        self.set_class_names(class_names)

    def train(self, mode: bool = True):
        super().train(mode)
        self.raw_model.eval()  # the teacher always runs as at inference
        return self

    # -- text side ----------------------------------------------------------------------------

    def set_class_names(self, names) -> None:
        """Switch the label space (fine base-to-novel: the other set's classes)."""
        self.texts.set_names(names)

    def class_features(self, names=None) -> torch.Tensor:
        """The student's unit-length text features of the classes `names` (default: the label space) [K, D]."""
        return self.texts.features(self.model, names=names)

    def teacher_class_features(self) -> torch.Tensor:
        return self.texts.features(self.raw_model, cache=self.teacher_text_cache)

    # -- image side ---------------------------------------------------------------------------

    def _frames(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(video.shape)}")
        return ((video.to(self.mean.dtype) - self.mean) / self.std).flatten(0, 1)

    def _video(self, x: torch.Tensor, b: int, t: int, teacher: bool = False) -> torch.Tensor:
        feats = self.raw_model.visual(x) if teacher else self.model.visual(x, frames=t)
        return F.normalize(feats.float(), dim=-1).view(b, t, -1).mean(1)

    def encode_video(self, video: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        """uint8 clip batch -> mean over frames of unit-length frame features [B, D] (fp32, not renormalised)."""
        return self._video(self._frames(video), *video.shape[:2], teacher=teacher)

    def forward_features(self, clips: torch.Tensor, return_context: bool = False):
        """The student's encode_video [B, D] (no context: (z, None))."""
        z = self.encode_video(clips)
        return (z, None) if return_context else z

    def class_logits(self, z: torch.Tensor, names, context=None) -> torch.Tensor:
        """exp(logit_scale) * z @ text features of the classes `names` [B, K]."""
        return self.logits(z, self.class_features(names))

    def logits(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):  # logits and distances in fp32, not bf16
            return self.model.logit_scale.exp().float() * z.float() @ text.float().t()

    def forward_head(self, z: torch.Tensor, context=None) -> torch.Tensor:
        return self.class_logits(z, self.texts.names)

    def forward(self, clips: torch.Tensor, targets: torch.Tensor = None):
        """The class logits [B, K]; in training with `targets` (class ids [B] or soft targets [B, K])
        {"logits", "loss"} (see the module docstring)."""
        b, t = clips.shape[:2]
        x = self._frames(clips)
        v = self._video(x, b, t)
        text = self.class_features()  # once: the logits and the text distillation term share it
        logits = self.logits(v, text)
        if not (self.training and targets is not None):
            return logits
        with torch.no_grad():
            u = F.normalize(self._video(x, b, t, teacher=True), dim=-1)
        with torch.autocast(clips.device.type, enabled=False):
            loss = self.distance(self.projector_v, F.normalize(v, dim=-1), u)
            if self.train_text:
                loss = loss + self.distance(self.projector_t, text, self.teacher_class_features())
            loss = F.cross_entropy(logits, targets) + self.ratio * loss
        return {"logits": logits, "loss": loss}

    @staticmethod
    def distance(projector: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Mean squared L2 distance between projected unit student features and unit teacher features."""
        w = projector[0].weight
        return (projector(student.to(w.dtype)).float() - teacher.float()).pow(2).sum(-1).mean()

    def no_weight_decay(self) -> set:
        return {"model.visual.class_embedding", "model.visual.positional_embedding", "model.positional_embedding"}

    # -- weights ------------------------------------------------------------------------------

    def load_pretrained(self, spec, teacher_spec=None, log=log_to_stderr) -> dict:
        """Student (+ projectors) from `spec`; teacher from the file's raw_model.*, else from
        `teacher_spec` (CLIP weights; default model.teacher), else a copy of the student. See the
        module docstring."""
        teacher_spec = self.teacher_spec if teacher_spec is None else teacher_spec
        report, clip_states = {"loaded": 0}, {}
        raw = None
        state, source = read_pretrained_state(spec, "FROSTER", RELEASE_CONTAINERS, log=log)
        if source is not None:
            if any(k.startswith("model.") for k in state):  # a FROSTER release
                student = self._fit({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}, source, log)
                own = {f"model.{k}": v for k, v in student.items()}
                own.update({k: v for k, v in state.items() if not k.startswith(("model.", TEACHER))})
                report = load_checked(self, own, source, name="froster", log=log)
                teacher = {k[len(TEACHER):]: v for k, v in state.items() if k.startswith(TEACHER)}
                if teacher:
                    raw = (teacher, f"{source} (raw_model.*)")
            else:
                clip_states[str(spec)] = state
                report = load_checked(self.model, self._fit(state, source, log), source, name="froster.model", log=log)
                log("froster: projectors start as the identity (not in CLIP weights)")
        if raw is None and not no_weights(teacher_spec):
            teacher_spec = str(teacher_spec)
            state = clip_states.get(teacher_spec)
            if state is None:
                state, _ = read_pretrained_state(teacher_spec, "FROSTER teacher", RELEASE_CONTAINERS, log=log)
            raw = (state, f"CLIP weights {teacher_spec}")
            if not no_weights(spec) and str(spec) != teacher_spec:
                log(f"froster: the teacher (raw_model) is not in {spec}; filled from CLIP weights {teacher_spec}")
        if raw is None:
            self.raw_model.load_state_dict(self.model.state_dict())
            log("froster: teacher = frozen copy of the student as built (model.teacher: none)")
        else:
            load_checked(self.raw_model, self._fit(raw[0], raw[1], log), raw[1], name="froster.raw_model", log=log)
        return report

    def _fit(self, state: dict, source: str, log) -> dict:
        """A CLIP state dict with positional_embedding resampled to this input size."""
        if "visual.conv1.weight" not in state:
            raise SystemExit(f"error: {source} holds neither FROSTER nor CLIP weights (first keys: {short_list(state)})")
        state = dict(state)  # the caller may load the same tensors into the teacher
        fit_pos_embed(state, "visual.positional_embedding", self.model.visual.grid, source, "froster", log=log)
        return state


def _drop_teacher(module, state_dict, prefix, local_metadata):
    for k in [k for k in state_dict if k.startswith(prefix + TEACHER)]:
        del state_dict[k]


def _teacher_never_missing(module, incompatible):
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if TEACHER not in k]


Model = FROSTER


def build_model(cfg: dict, class_names: list) -> nn.Module:
    inp = cfg["input"]
    model = FROSTER(class_names, inp["size"], inp["mean"], inp["std"], **text_settings(cfg), **cfg["model"])
    model.load_pretrained(cfg["pretrained"])
    return model

