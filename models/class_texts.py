"""Class texts: what the text models embed for a label space, and the embeddings, cached.

  * `load_descriptions(path)` / `describe(names, descriptions)`: one description per class from a CSV;
  * `class_prompts(names, templates, descriptions)`: the prompts of each class;
  * `text_features(encode_text, prompts)`: prompt-averaged text features, normalised or raw;
  * `text_settings(cfg)`: a recipe's `text:` section as the templates and descriptions arguments of a
    text model's constructor;
  * `TextFeatureCache`: text features kept until the text weights change;
  * `ClassTexts`, which a text model owns: the names, prompts and tokens of its label spaces (the
    current one, set by set_names, and the last few others it was asked to score) and their features
    through a CLIP text tower, cached per label space while no gradient can reach them;
  * `in_batch_loss`: ActionCLIP's and EZ-CLIP's training objectives, which match the clips of a batch
    with the texts of the batch's classes (ClassTexts.pair_features), and `check_in_batch_settings`.
"""
import csv
from collections import OrderedDict
from itertools import accumulate
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from models.tokenizer import tokenize
from models.weights import resolve_path


def load_descriptions(path) -> dict:
    """{class name: description} from a CSV: the project's own format (header `name,description`) or
    the benchmark's EZ-CLIP files (header `SNo,Class Name,GPT3 discription`). Whitespace and line
    breaks inside a description are collapsed, as EZ-CLIP does before tokenising."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: descriptions file {path} not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    if header[:2] == ["name", "description"]:
        name_col, text_col = 0, 1
    elif header[:3] == ["sno", "class name", "gpt3 discription"]:
        name_col, text_col = 1, 2
    else:
        raise SystemExit(f"error: {path}:1: expected the header name,description (or EZ-CLIP's SNo,Class Name,GPT3 discription)")
    out = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= text_col:
            raise SystemExit(f"error: {path}: record {line_no - 1} has {len(row)} fields, expected {text_col + 1}")
        out[row[name_col].strip()] = " ".join(row[text_col].split())
    return out


def describe(names: list, descriptions: dict) -> list:
    """The description of each class name (matched exactly, then ignoring case and outer spaces)."""
    folded = {k.strip().lower(): v for k, v in descriptions.items()}
    missing = [n for n in names if n not in descriptions and n.strip().lower() not in folded]
    if missing:
        raise SystemExit(f"error: no description for {len(missing)} classes (e.g. {missing[0]!r}); the file must cover every class of the task")
    return [descriptions.get(n) or folded[n.strip().lower()] for n in names]


def class_prompts(names: Sequence[str], templates: Sequence[str] = ("{}",), descriptions: dict = None) -> list:
    """Prompts of each class: its description when `descriptions` ({name: text}, see load_descriptions)
    is given, else every template filled with the class name ("a photo of a {}.")
    -> [[prompt, ...] per class]."""
    if descriptions is not None:
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


def text_settings(cfg: dict, default_templates: Sequence[str] = ("{}",)) -> dict:
    """A recipe's `text` section as a text model's constructor arguments {templates, descriptions}:
    `templates` (default `default_templates`) and, when `descriptions` names a CSV (see
    load_descriptions) for every task, or one per task ({coarse: path, fine: path}, the recipe's
    `task`, default coarse), {class name: description}, which then replaces the templates (one prompt
    per class); else None. A relative path not found from the working directory is taken from the
    repository root."""
    section = cfg.get("text") or {}
    templates = list(section.get("templates") or default_templates)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise SystemExit(f"error: text.templates: every template needs exactly one {{}} for the class name, got {bad[0]!r}")
    spec = section.get("descriptions")
    if isinstance(spec, dict):
        spec = spec.get(cfg.get("task", "coarse"))
    return {"templates": templates, "descriptions": load_descriptions(resolve_path(spec)) if spec else None}


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


class LabelSpace:
    """One list of class names: their prompts, prompts per class (`counts`), the tokens of every prompt
    (tokenised once: Python work, too slow to repeat at every step) and a TextFeatureCache."""

    def __init__(self, names, templates: Sequence[str], descriptions: dict = None):
        self.names = list(names)
        if not self.names:
            raise ValueError("a label space needs at least one class name")
        self.prompts = class_prompts(self.names, templates, descriptions)
        self.counts = [len(p) for p in self.prompts]
        self.tokens = tokenize([p for per_class in self.prompts for p in per_class], truncate=True)
        self.cache = TextFeatureCache()


class ClassTexts:
    """What a text model embeds for its label spaces, and the embeddings, cached.

    set_names(names) sets the current label space (`names`, `prompts`, `counts`, `tokens` and `cache`
    are the current one's); space(names) gives the LabelSpace of any list of names (the current one
    for None), kept for the last `keep` lists asked for, so that alternating label spaces (coarse and
    fine) are not re-tokenised and re-embedded.

    features(clip, normalize, names) -> text_features of a label space's prompts through clip's text
    tower [K, D] fp32. cached(clip, what, compute, names) -> compute(space) for features computed
    another way, `what` naming the computation (with its settings). Either recomputes with the autograd
    graph while a gradient can reach the text tower (gradients enabled and one of
    clip.text_parameters() requires grad); otherwise the value is computed once under no_grad and kept
    in the label space's TextFeatureCache (or `cache`, e.g. a teacher's) until the computation asked
    for (`what`), the autocast state or a text weight changes.

    pair_features(clip, class_ids, prompt_ids, names) -> the features of one prompt per clip [B, D],
    always with the autograd graph: the texts an in-batch objective matches the clips with."""

    def __init__(self, templates: Sequence[str] = ("{}",), descriptions: dict = None, keep: int = 4):
        self.templates, self.descriptions, self.keep = list(templates), descriptions, keep
        self.spaces, self.current = OrderedDict(), None

    def set_names(self, names) -> None:
        self.current = self.space(names)

    def space(self, names=None) -> LabelSpace:
        if names is None:
            return self.current
        key = tuple(names)
        if key not in self.spaces:
            self.spaces[key] = LabelSpace(key, self.templates, self.descriptions)
            while len(self.spaces) > self.keep:
                self.spaces.popitem(last=False)
        self.spaces.move_to_end(key)
        return self.spaces[key]

    names = property(lambda self: self.current.names)
    prompts = property(lambda self: self.current.prompts)
    counts = property(lambda self: self.current.counts)
    tokens = property(lambda self: self.current.tokens)
    cache = property(lambda self: self.current.cache)

    def features(self, clip, normalize: bool = True, names=None, cache: TextFeatureCache = None) -> torch.Tensor:
        def compute(space):
            space.tokens = space.tokens.to(clip.positional_embedding.device)  # copied once per label space
            return text_features(clip.encode_text, space.prompts, normalize=normalize, tokens=space.tokens)

        return self.cached(clip, ("features", normalize), compute, names, cache)

    def cached(self, clip, what, compute: Callable, names=None, cache: TextFeatureCache = None):
        space = self.space(names)
        params = clip.text_parameters()
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return compute(space)
        device = clip.positional_embedding.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (what, tuple(space.names), autocast)
        with torch.no_grad():
            return (space.cache if cache is None else cache).get(key, params, lambda: compute(space))

    def pair_features(self, clip, class_ids: torch.Tensor, prompt_ids: torch.Tensor, names=None) -> torch.Tensor:
        """L2-normalised features of prompt prompt_ids[b] of class class_ids[b] [B, D] (fp32)."""
        space = self.space(names)
        first = torch.tensor([0, *accumulate(space.counts)][:-1])  # each class's first prompt
        tokens = space.tokens[first[class_ids.cpu()] + prompt_ids.cpu()]
        return F.normalize(clip.encode_text(tokens.to(clip.positional_embedding.device)).float(), dim=-1)


# ---------------------------------------------------------------------------------------------
# in-batch video-text objectives

IN_BATCH_LOSSES = ("kl", "infonce")


def in_batch_loss(video: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, scale, kind: str) -> torch.Tensor:
    """The loss of matching the clips of a batch with the texts of their classes: video [B, D] and
    text [B, D] unit features (text b: a prompt of clip b's class), labels [B] class ids,
    logits_per_video = scale * video @ text.T [B, B] and logits_per_text its transpose.

    kl (ActionCLIP's KLLoss, github.com/sallymmx/ActionCLIP utils/KLLoss.py, also EZ-CLIP's): the
        target of row i is softmax(10 * [label_i == label_j]_j), so the clips of one class share the
        mass; KL(target || softmax(logits)) summed over a row, averaged over the rows; the two
        directions averaged.
    infonce (mmaction2 projects/actionclip): cross-entropy with the diagonal as the target, weight
        0.5 per direction; the other clips of a class count as negatives.

    With several processes the features and labels of all of them are gathered first (with their
    gradients, as the port's GatherLayer; ActionCLIP and EZ-CLIP ran one process on the whole batch),
    so the batch is the optimizer step's, not a process's."""
    if labels.ndim != 1:
        raise ValueError(f"an in-batch objective matches class ids [B], got targets of shape {tuple(labels.shape)}")
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        video, text, labels = (torch.cat(all_gather(t.contiguous())) for t in (video, text, labels))
    with torch.autocast(video.device.type, enabled=False):  # in fp32: bf16 would blur the logits
        logits = scale * video.float() @ text.float().t()
        if kind == "infonce":
            diagonal = torch.arange(len(labels), device=logits.device)
            return 0.5 * F.cross_entropy(logits, diagonal) + 0.5 * F.cross_entropy(logits.t(), diagonal)
        if kind != "kl":
            raise ValueError(f"in-batch objective must be one of {IN_BATCH_LOSSES}, got {kind!r}")
        target = (10.0 * (labels[:, None] == labels[None, :]).float()).softmax(-1)  # symmetric: both directions
        return sum(F.kl_div(d.log_softmax(-1), target, reduction="batchmean") for d in (logits, logits.t())) / 2


def check_in_batch_settings(cfg: dict, loss: str) -> None:
    """An in-batch objective (model.loss kl or infonce) pairs each clip with the text of its class:
    the train settings that make soft targets (mixup, cutmix, label smoothing) cannot apply to it."""
    soft = [k for k in ("mixup", "cutmix", "label_smoothing") if (cfg.get("train") or {}).get(k)]
    if loss in IN_BATCH_LOSSES and soft:
        raise SystemExit(f"error: train.{soft[0]} makes soft targets, which model.loss {loss} cannot use (it matches each "
                         f"clip with the text of its class); set train.{soft[0]} to 0, or model.loss to ce")
