"""Evaluate checkpoints on the Known and Unknown context val sets and print the benchmark table.

    python evaluate.py --ckpt runs/vit_synta_coarse_set1/ckpt.pt
    python evaluate.py --ckpt runs/vit_synta_coarse_set1/ckpt.pt runs/vit_synta_coarse_set2/ckpt.pt --json results.json
    python evaluate.py --ckpt runs/xclip_synta_{coarse,fine}_set{1,2}/ckpt.pt      # coarse and fine tables

Every finished run under a folder, in the official table layout beside the published numbers
(docs/published_results.csv), with 95 % bootstrap intervals (see study_table()):

    python evaluate.py --table runs --csv study.csv --json study.json --plot study.png

One video, any class names (text models; see demo()):

    python evaluate.py --video clip.mp4 --classes "punching bag,punching person" --model vificlip --pretrained ViT-B/16
    python evaluate.py --video clip.mp4 --classes "punching bag,punching person" --ckpt runs/xclip_k400ta_fine_set1/ckpt.pt
    python evaluate.py --video clip.mp4 --ckpt runs/vit_synta_coarse_set1/ckpt.pt   # a checkpoint's own classes

Model, dataset, task and training set come from the checkpoint. Given one checkpoint per training
set (of the same model, dataset and task) it also prints the two-direction average of the official
tables: Known, Unknown, D_abs and HM each averaged over the directions (HM computed per direction,
then averaged).

This file also holds what train.py shares with it: the device/precision set-up, distributed
helpers, the prediction loop and the metrics.
"""
import argparse
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from data.augment import crop_views, view_size
from data.hierarchy import DATASETS, check_dataset, load_hierarchy
from data.loader import VideoDataset, cache_frames, load_videos, make_loader
from data.splits import SPLITS, read_dataset, read_dataset_info
from data.video import DecodeError, open_video, sample_indices
from models import DEFAULTS, apply_override, build_model, check_config, check_model, list_models, load_recipe, parse_override
from models.weights import load_checked, reason

# ---------------------------------------------------------------------------------------------
# runtime: processes, device, precision


def init_distributed():
    """-> (rank, world, local_rank); starts a process group when launched by torchrun."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return 0, 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


def pick_device(name: str = None, local_rank: int = 0) -> torch.device:
    if not name:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"error: --device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device {name}: training and evaluation run on cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but PyTorch sees no GPU; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SystemExit(f"error: --device {name}: PyTorch sees {torch.cuda.device_count()} GPU(s), numbered from 0")
    return device


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast on CUDA; CPU runs in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise SystemExit(f"error: train.precision must be bf16, fp16 or fp32, found {precision!r}")
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    return (str(e).strip().splitlines() or [""])[0][:200]


def unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


# ---------------------------------------------------------------------------------------------
# metrics


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (pred == labels).float().mean().item() if len(labels) else float("nan")


def mean_class_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy averaged over the classes present in `labels`."""
    accs = [(pred[labels == c] == c).float().mean().item() for c in labels.unique()]
    return 100.0 * sum(accs) / len(accs) if accs else float("nan")


def harmonic_mean(known: float, unknown: float) -> float:
    return 2 * known * unknown / (known + unknown) if known + unknown > 0 else 0.0


def direction_metrics(known: float, unknown: float) -> dict:
    return {"known": known, "unknown": unknown, "d_abs": known - unknown, "hm": harmonic_mean(known, unknown)}


def average_directions(directions: list) -> dict:
    """Official tables: every column, HM included, is the mean of the per-direction values."""
    avg = {k: sum(d[k] for d in directions) / len(directions) for k in ("known", "unknown", "d_abs", "hm")}
    avg["hm_of_means"] = harmonic_mean(avg["known"], avg["unknown"])
    return avg


BOOTSTRAP = {"resamples": 1000, "seed": 0, "level": 95}


def bootstrap_intervals(directions: list, resamples: int = BOOTSTRAP["resamples"], seed: int = BOOTSTRAP["seed"]) -> dict:
    """95 % percentile intervals of top-1 Known, Unknown, D_abs, HM and HM of the means, averaged over
    `directions` (results of one model, dataset and task holding "predictions"), from resampling each
    val split's videos with replacement.

    Every direction is scored on the same two val splits, so one resample of a split serves them all:
    the intervals of D_abs and HM keep the correlation between the directions' errors on a video.
    Drawing n videos with replacement only changes how many videos of each kind the sample holds (kind:
    right, wrong or not scored, per direction), so a resample is one multinomial draw over the kinds:
    the same distribution as resampling the videos, at a cost that does not grow with n."""
    rng = np.random.default_rng(seed)
    accuracy = {}  # (train_set, split) -> top-1 of every resample
    for split in ("val_set1", "val_set2"):
        scored = [d["predictions"][split] for d in directions]
        index = sorted(set().union(*(p["index"] for p in scored)))
        if not index:  # no video scored (every one failed to decode): no interval
            accuracy.update({(d["train_set"], split): np.full(resamples, np.nan) for d in directions})
            continue
        position = {i: k for k, i in enumerate(index)}
        states = np.full((len(directions), len(index)), 2)  # 0 wrong, 1 right, 2 not scored (failed to decode)
        for row, p in zip(states, scored):
            row[[position[i] for i in p["index"]]] = np.equal(p["label"], p["pred"])
        kinds, counts = np.unique(states, axis=1, return_counts=True)
        drawn = rng.multinomial(len(index), counts / len(index), size=resamples)  # [resamples, kinds]
        with np.errstate(invalid="ignore", divide="ignore"):
            for d, state in zip(directions, kinds):
                accuracy[d["train_set"], split] = 100.0 * (drawn @ (state == 1)) / (drawn @ (state != 2))
    pairs = [(accuracy[s, f"val_set{s}"], accuracy[s, f"val_set{3 - s}"]) for s in (d["train_set"] for d in directions)]
    known, unknown = np.mean([k for k, _ in pairs], 0), np.mean([u for _, u in pairs], 0)

    def hm(k, u):  # harmonic_mean of every resample
        return np.divide(2 * k * u, k + u, out=np.where(np.isnan(k + u), np.nan, 0.0), where=k + u > 0)

    def interval(v):  # a resample that drew no scored video has no accuracy: left out
        v = v[~np.isnan(v)]
        tail = (100 - BOOTSTRAP["level"]) / 2
        return [float(x) for x in np.percentile(v, [tail, 100 - tail])] if len(v) else [float("nan")] * 2

    values = {"known": known, "unknown": unknown, "d_abs": known - unknown,
              "hm": np.mean([hm(k, u) for k, u in pairs], 0), "hm_of_means": hm(known, unknown)}
    return {**BOOTSTRAP, "resamples": resamples, "seed": seed, **{k: interval(v) for k, v in values.items()}}


# ---------------------------------------------------------------------------------------------
# prediction


@torch.no_grad()
def predict(model, loader, device, precision: str, rank: int = 0, world: int = 1, progress: bool = False):
    """Softmax averaged over each video's views -> (probs [N, K], labels [N], failed [N] bool), gathered
    over all processes in dataset order; every video is counted exactly once."""
    progress = progress and sys.stderr.isatty()
    model.eval()
    local = []
    for i, (clips, labels, indices, _) in enumerate(loader):
        b, v = clips.shape[:2]
        clips = clips.to(device, non_blocking=True).flatten(0, 1)
        with autocast(device, precision):
            out = model(clips)
        logits = out["logits"] if isinstance(out, dict) else out
        probs = logits.float().softmax(-1).view(b, v, -1).mean(1).cpu()
        local += list(zip(indices.tolist(), labels.tolist(), probs))
        if progress and rank == 0:
            print(f"\r  evaluating {i + 1}/{len(loader)}", end="", file=sys.stderr, flush=True)
    if progress and rank == 0:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, local)
        local = [r for part in gathered for r in part]
    failed_marker = [idx < 0 for idx, _, _ in local]
    order = sorted(range(len(local)), key=lambda i: local[i][0] if local[i][0] >= 0 else -1 - local[i][0])
    probs = torch.stack([local[i][2] for i in order])
    labels = torch.tensor([local[i][1] for i in order])
    failed = torch.tensor([failed_marker[i] for i in order])
    return probs, labels, failed


def evaluate_split(model, cfg, split, videos, video_root, label, class_names, device, rank=0, world=1, backend="decord", progress=False,
                   frame_cache=None):
    """Accuracy of `model` on the videos of one val split, scored against `class_names`; frame_cache: a
    folder of decoded-frame caches (data.loader.cache_frames) or None."""
    if hasattr(unwrap(model), "set_class_names"):
        unwrap(model).set_class_names(class_names)
    workers = min(cfg["train"]["workers"], os.cpu_count() or 1)
    frames = cache_frames(videos, video_root, backend, frame_cache, workers, split) if frame_cache else None
    dataset = VideoDataset(videos, video_root, label, cfg, train=False, seed=cfg["train"]["seed"], backend=backend, frames=frames)
    shard = list(range(rank, len(dataset), world))
    loader = make_loader(dataset, cfg["test"]["batch_size"], shard, workers, device.type == "cuda")
    probs, labels, failed = predict(model, loader, device, cfg["train"]["precision"], rank, world, progress)
    ok = ~failed
    pred = probs.argmax(-1)
    return {
        "split": split,
        "videos": len(videos),
        "failed_to_decode": int(failed.sum()),
        "top1": top1(pred[ok], labels[ok]),
        "mean_class": mean_class_accuracy(pred[ok], labels[ok]),
        # per scored video: its row in the split's list, its label and the top-1 class (bootstrap, paired tests)
        "predictions": {"index": torch.arange(len(ok))[ok].tolist(), "label": labels[ok].tolist(), "pred": pred[ok].tolist()},
    }


def evaluate_direction(model, cfg, val_videos, video_root, device, rank=0, world=1, backend="decord", progress=False, frame_cache=None):
    """Known (same-set val) and Unknown (other-set val) accuracies of a model trained on one set;
    `val_videos` as read_splits returns them."""
    hierarchy = load_hierarchy(cfg["dataset"])
    task, s = cfg["task"], cfg["train_set"]
    known, unknown = (
        evaluate_split(model, cfg, f"val_set{k}", val_videos[f"val_set{k}"], video_root, task, hierarchy.class_names(task, k),
                       device, rank, world, backend, progress, frame_cache)
        for k in (s, 3 - s)
    )
    result = {"model": cfg["model_name"], "dataset": cfg["dataset"], "task": task, "train_set": s}
    result["views"] = f"{cfg['test']['clips']}x{cfg['test']['crops']}"
    if "disentangle" in cfg:
        result["disentangle"] = cfg["disentangle"]
    result["predictions"] = {part["split"]: part.pop("predictions") for part in (known, unknown)}
    result["known"], result["unknown"] = known, unknown
    result["top1"] = direction_metrics(known["top1"], unknown["top1"])
    result["mean_class"] = direction_metrics(known["mean_class"], unknown["mean_class"])
    result["bootstrap"] = bootstrap_intervals([result])  # of the top-1 numbers
    return result


def results_json(value, pad: str = "") -> str:
    """JSON as json.dumps(indent=1) writes it, but every list of plain values on one line: a run's
    per-video predictions (tens of thousands of numbers) stay one line each."""
    inner = pad + " "
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(str(k))}: {results_json(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + results_json(v, inner) for v in value) + f"\n{pad}]"
    return json.dumps(value, separators=(", ", ": "))


# ---------------------------------------------------------------------------------------------
# tables


def format_direction(r: dict) -> str:
    s = r["train_set"]
    lines = [
        f"{r['model']} | {r['dataset']} | {r['task']} task | trained on set {s} | views {r['views']}",
        f"{'':22}{'top-1':>8}{'mean-class':>12}{'videos':>9}",
    ]
    for name, key, set_id in (("Known", "known", s), ("Unknown", "unknown", 3 - s)):
        part = r[key]
        failed = f"  ({part['failed_to_decode']} failed to decode)" if part["failed_to_decode"] else ""
        lines.append(f"{name + f' (val set {set_id})':22}{part['top1']:8.2f}{part['mean_class']:12.2f}{part['videos']:9d}{failed}")
    lines.append(f"{'D_abs':22}{r['top1']['d_abs']:8.2f}{r['mean_class']['d_abs']:12.2f}")
    lines.append(f"{'HM':22}{r['top1']['hm']:8.2f}{r['mean_class']['hm']:12.2f}")
    return "\n".join(lines)


def format_average(results: list, avg: dict) -> str:
    head = f"{results[0]['model']} | {results[0]['dataset']} | {results[0]['task']} task | top-1, average of the two directions"
    cols = "".join(f"{'set %d->%d' % (r['train_set'], 3 - r['train_set']):>11}" for r in results) + f"{'average':>11}"
    lines = [head, f"{'':22}{cols}"]
    for name, key in (("Known", "known"), ("Unknown", "unknown"), ("D_abs", "d_abs"), ("HM", "hm")):
        lines.append(f"{name:22}" + "".join(f"{r['top1'][key]:11.2f}" for r in results) + f"{avg[key]:11.2f}")
    lines.append(f"{'HM of the averages':22}" + " " * 11 * len(results) + f"{avg['hm_of_means']:11.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# checkpoints


def load_checkpoint(path, mmap: bool = False) -> dict:
    """A checkpoint of train.py, checked before anything uses it: a file torch reads, holding weights
    and a run's config whose every setting is valid (models.check_config). A defect is one line."""
    path = Path(path)
    if path.is_dir():
        inside = path / "ckpt.pt"
        raise SystemExit(f"error: {path} is a folder; give a checkpoint file{f', e.g. {inside}' if inside.is_file() else ''}")
    if not path.is_file():
        raise SystemExit(f"error: checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch.load names torch.jit.load for a TorchScript archive: it refuses it here
            warnings.filterwarnings("ignore", message=".torch.load. received a zip file that looks like a TorchScript")
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, the answer is the same
        raise SystemExit(f"error: {path} is not a checkpoint written by train.py, or is truncated "
                         f"({type(e).__name__}: {reason(e) or 'empty file'})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("model"), dict):
        raise SystemExit(f"error: {path} is not a checkpoint written by train.py (no 'config'/'model' entries)")
    missing = [k for k in ("model_name", "dataset", "task", "train_set") if k not in ckpt["config"]]
    if missing:
        raise SystemExit(f"error: {path}: its config has no {missing[0]!r}, which train.py always writes")
    if ckpt["config"]["dataset"] not in DATASETS:
        raise SystemExit(f"error: {path}: its config names the dataset {ckpt['config']['dataset']!r}; known: {', '.join(DATASETS)}")
    for section in ("input", "train", "test"):  # settings an older version did not write: their defaults, its behaviour
        if isinstance(ckpt["config"].get(section), dict):
            ckpt["config"][section] = {**DEFAULTS[section], **ckpt["config"][section]}
    check_config(ckpt["config"], source=str(path))
    return ckpt


def weight_average_note(cfg: dict, average: dict, epochs_done) -> str:
    """What a run that averages its weights (train.weight_averaging) is evaluated with, in words;
    '' for a run that does not."""
    first = cfg["train"]["weight_averaging"]
    if not first:
        return ""
    if not average:
        return f"its latest weights: the run averages them from epoch {first} on and stopped after epoch {epochs_done}"
    return f"the average of its weights after epochs {first} to {first + average['epochs'] - 1} (train.weight_averaging)"


def evaluation_weights(ckpt: dict, source) -> dict:
    """The weights of a checkpoint that evaluation uses: the average of its epochs' weights where the
    run averages them (train.weight_averaging, as FROSTER evaluates), else its latest ones."""
    average = ckpt.get("weight_average") if ckpt["config"]["train"]["weight_averaging"] else None
    note = weight_average_note(ckpt["config"], average, ckpt.get("epoch"))
    if note:
        print(f"{source}: evaluating {note}", file=sys.stderr)
    return (average or ckpt)["model"]


def build_without_weights(cfg: dict, class_names: list):
    """The model of `cfg` with nothing read from outside: its weights come from a checkpoint next, and a
    distillation teacher (FROSTER's `model.teacher`) only matters in training."""
    cfg = {**cfg, "pretrained": "none", "model": dict(cfg["model"])}
    if "teacher" in cfg["model"]:
        cfg["model"]["teacher"] = "none"
    if "disentangle" in cfg:  # a run of disentangle.py: the model inside its coarse/fine wrapper
        from disentangle import build_disentangled
        return build_disentangled(cfg, class_names)
    return build_model(cfg, class_names)


def load_model_state(model, state: dict, source: str) -> None:
    """Our own checkpoints must fit exactly; a mismatch is a one-line error."""
    try:
        load_checked(model, state, source, name=type(model).__name__, log=lambda message: None)
    except SystemExit as e:
        raise SystemExit(f"{e}; was it trained with another model or class count?") from None


def resolve_data(cfg: dict, splits: str = None, root: str = None, source: str = "the run"):
    """-> (splits_dir, video_root) from the command line or what the run recorded. A new run records
    the fingerprint of its data (cfg['data_fingerprint']); a run on other data than it was trained on
    is refused, or, where --splits names the folder, goes on with a note."""
    if not (splits or cfg.get("splits")):
        raise SystemExit("error: the run records no split folder; pass --splits DIR")
    splits_dir = Path(splits or cfg["splits"])
    info, lists = read_dataset(splits_dir)
    if info.get("dataset") != cfg["dataset"]:
        raise SystemExit(f"error: {splits_dir} holds {info.get('dataset')}, but the model was trained on {cfg['dataset']}")
    video_root = Path(root or info["video_root"])
    if not video_root.is_dir():
        raise SystemExit(f"error: video root {video_root} not found; pass --root DIR (where the videos are now)")
    found = data_fingerprint(video_root, lists)
    recorded = cfg.setdefault("data_fingerprint", found)
    if recorded != found:
        what = (f"{source} was trained on other data than {splits_dir} and {video_root} hold now (data fingerprint "
                f"{recorded}, now {found}: the split lists or the generated videos' options changed)")
        if splits is None:
            raise SystemExit(f"error: {what}; train a new run on these data, or use them anyway by naming the folder: "
                             f"--splits {splits_dir}")
        print(f"note: {what}; going on, as --splits names them", file=sys.stderr)
    return splits_dir, video_root


def data_fingerprint(video_root, lists: dict) -> str:
    """16 hex digits that name a dataset's content: its four split lists (paths and labels, in order)
    and, for videos this repository generated, the generator's content options (version, size, seed,
    ...; data/synta's manifest), so that a re-rendered Syn-TA with the same file names differs."""
    from data.synta.generator import MANIFEST

    h = hashlib.sha256(json.dumps({name: [dataclasses.astuple(v) for v in lists[name]] for name in SPLITS}).encode())
    manifest = Path(video_root) / MANIFEST
    if manifest.is_file():
        try:
            options = json.loads(manifest.read_text()).get("options")
        except (OSError, ValueError, AttributeError):
            options = "unreadable"
        h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def read_splits(splits_dir, dataset: str, names) -> dict:
    """The split files a run uses, read and checked before anything else happens: a missing, malformed
    or empty one is a one-line error naming the file. -> {name: [Video, ...]}"""
    videos = {name: load_videos(splits_dir, name, dataset) for name in names}
    for name, listed in videos.items():
        if not listed:
            raise SystemExit(f"error: {Path(splits_dir) / name}.csv lists no videos; prepare the splits again "
                             "(python -m data.prepare) or pass --splits")
    return videos


# ---------------------------------------------------------------------------------------------
# one video (the demo)


def parse_class_list(text: str) -> list:
    names = [c.strip() for c in (text or "").split(",")]
    if not any(names) or not all(names):
        raise SystemExit(f"error: --classes expects class names separated by commas, e.g. "
                         f"--classes \"punching bag,punching person\", got {text!r}")
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise SystemExit(f"error: --classes names {repeated[0]!r} more than once")
    return names


def read_clip(path, cfg: dict, backend: str = "decord") -> torch.Tensor:
    """The test views of one video as the recipe samples them for testing: the centre temporal clip
    (input.sampling / frames / stride at position 0.5), resized to test.short_side and cut into
    test.crops crops of the test crop size -> uint8 [V, T, 3, S, S]."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: video {path} not found")
    try:  # only a file that cannot be decoded is reported as such; a setting error is its own error
        reader = open_video(path, backend)
        frames = reader.get(sample_indices(len(reader), cfg["input"], None, 0.5))
    except DecodeError as e:
        raise SystemExit(f"error: cannot decode video {e}") from None
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return torch.stack(crop_views(clip, view_size(cfg["input"], cfg["test"]), cfg["test"]["short_side"], cfg["test"]["crops"]))


def demo(args) -> dict:
    """Rank class names for one video: probabilities (softmax averaged over the test crops).

    The model comes from a checkpoint of train.py (--ckpt) or from a recipe and its pretrained
    weights (--model, --pretrained, optionally --data / --tiny / --set). Text models score any
    --classes; without --classes a checkpoint ranks the classes it was trained on, which is the only
    thing a classifier (fixed softmax head) can do, so --classes with a classifier is an error."""
    if not Path(args.video).is_file():  # before any weights are loaded or downloaded
        raise SystemExit(f"error: video {args.video} not found")
    device = pick_device(args.device)
    classes = parse_class_list(args.classes) if args.classes is not None else None
    if args.ckpt and args.model:
        raise SystemExit("error: give either --ckpt RUN/ckpt.pt or --model NAME for --video, not both")
    if args.ckpt:
        if len(args.ckpt) != 1:
            raise SystemExit("error: --video takes one checkpoint")
        ckpt = load_checkpoint(args.ckpt[0])
        cfg = ckpt["config"]
        own = load_hierarchy(cfg["dataset"]).class_names(cfg["task"], cfg["train_set"])
        model = build_without_weights(cfg, own)
        load_model_state(model, evaluation_weights(ckpt, args.ckpt[0]), args.ckpt[0])
        source = args.ckpt[0]
        if classes is not None and not hasattr(model, "set_class_names"):
            raise SystemExit(f"error: {source} is a {cfg['model_name']} classifier with {len(own)} fixed classes; "
                             f"leave out --classes to rank its own classes, or use a text model for --classes")
        if classes is not None:
            model.set_class_names(classes)
        names = classes or own
    else:
        if not args.model:
            raise SystemExit("error: --video needs a model: --ckpt RUN/ckpt.pt, or --model NAME [--pretrained WEIGHTS]")
        check_model(args.model)
        if args.data:
            check_dataset(args.data)
        cfg = load_recipe(args.model, args.data, tiny=args.tiny)
        if args.pretrained:
            cfg["pretrained"] = args.pretrained
        for text in args.set:
            apply_override(cfg, *parse_override(text))
        check_config(cfg)
        with torch.device("meta"):
            probe = build_without_weights(cfg, classes or ["class"])
        if not hasattr(probe, "set_class_names"):
            raise SystemExit(f"error: {args.model} is a classifier with fixed classes; --model needs a text model "
                             f"for --classes, or pass a trained checkpoint with --ckpt")
        if classes is None:
            raise SystemExit("error: --model needs --classes (class names separated by commas)")
        model = build_model(cfg, classes)
        names, source = classes, f"pretrained {cfg['pretrained']}"
    model.to(device).eval()
    clips = read_clip(args.video, cfg, args.backend).to(device)
    with torch.no_grad(), autocast(device, cfg["train"]["precision"]):
        out = model(clips)
    logits = out["logits"] if isinstance(out, dict) else out
    probs = logits.float().softmax(-1).mean(0).cpu()
    order = probs.argsort(descending=True).tolist()
    shown = order[: args.top] if args.top else order
    inp = cfg["input"]
    print(f"{args.video}: {cfg['model_name']} ({source}); {inp['frames']} frames of the centre clip, "
          f"{cfg['test']['crops']} crop(s) of {inp['size']} px")
    width = max(len(names[i]) for i in shown)
    for rank, i in enumerate(shown, 1):
        print(f"{rank:4d}. {names[i]:<{width}}  {100 * probs[i].item():6.2f}%")
    return {"video": str(args.video), "model": cfg["model_name"], "classes": [names[i] for i in order],
            "probs": [probs[i].item() for i in order]}


# ---------------------------------------------------------------------------------------------
# the study's table: every finished run under a folder, beside the published numbers (--table)

PUBLISHED = Path(__file__).resolve().parent / "docs" / "published_results.csv"
DATASET_NAMES = {"synta": "Syn-TA", "k400ta": "K400-TA", "ssv2ta": "SSv2-TA"}
COLUMNS = ("known", "unknown", "d_abs", "hm")


def read_published(path=PUBLISHED) -> dict:
    """The official result tables, transcribed once into docs/published_results.csv (its `source` column
    names where from) -> {(task, model, dataset): row with the numbers as floats}, in the official order."""
    with open(path, newline="", encoding="utf-8") as f:
        return {(r["table"], r["model"], r["dataset"]): {**r, **{k: float(r[k]) for k in COLUMNS}} for r in csv.DictReader(f)}


def read_result(path: Path) -> dict:
    """A finished run's results.json (train.py writes it at the end of a run), checked: anything else is a
    one-line error naming the file."""
    again = f"write it again with python train.py --resume --out {path.parent}, or move it out of the folder"
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: {path} is not readable JSON ({type(e).__name__}: {first_line(e)}); {again}") from None
    if not isinstance(r, dict) or any(k not in r for k in ("model", "dataset", "task", "train_set", "top1")):
        raise SystemExit(f"error: {path} is not a run's results.json (it needs model, dataset, task, train_set and top1); {again}")
    numbers = r["top1"] if isinstance(r["top1"], dict) else {}
    if r["train_set"] not in (1, 2) or not all(isinstance(numbers.get(k), (int, float)) for k in COLUMNS):
        raise SystemExit(f"error: {path}: train_set must be 1 or 2 and top1 hold {', '.join(COLUMNS)} as numbers; {again}")
    for split, p in (r.get("predictions") or {}).items():
        if not (isinstance(p, dict) and all(isinstance(p.get(k), list) for k in ("index", "label", "pred"))
                and len(p["index"]) == len(p["label"]) == len(p["pred"])):
            raise SystemExit(f"error: {path}: predictions.{split} must hold the lists index, label and pred of one length; {again}")
    return r


def collect_runs(folders) -> dict:
    """Every results.json under one folder or several, grouped by (task, dataset, model, run): `run` is the
    run's folder, from the folders' common parent, without its training set (runs/x3d_synta_coarse_set1 ->
    x3d_synta_coarse, runs/main_job_shared/set2 -> main_job_shared), so the two directions of one run meet
    and different runs of one model stay apart. -> {(task, dataset, model, run): {train_set: result}}"""
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"error: --table {folder}: not a folder; give the folder that holds the runs, e.g. runs")
    files = sorted({path.resolve() for folder in folders for path in folder.rglob("results.json")})
    if not files:
        raise SystemExit(f"error: no results.json under {' '.join(map(str, folders))}; a run writes it when it finishes "
                         "(python train.py ...)")
    common = Path(os.path.commonpath([f.resolve() for f in folders])) if len(folders) > 1 else folders[0].resolve()
    groups = {}
    for path in files:
        r = {**read_result(path), "file": str(path)}
        run = re.sub(r"(^|[_/])set[12]$", "", path.parent.relative_to(common).as_posix())
        group = groups.setdefault((r["task"], r["dataset"], r["model"], run), {})
        if r["train_set"] in group:
            raise SystemExit(f"error: {group[r['train_set']]['file']} and {path} are both runs of {r['model']} on {r['dataset']} "
                             f"({r['task']} task) trained on set {r['train_set']}; keep one run per set in a folder")
        group[r["train_set"]] = r
    return groups


def table_records(groups: dict, published: dict) -> list:
    """One record per group of runs, and one per published model of a task and dataset that has runs:
    the directions (with 95 % bootstrap intervals where the predictions are stored), their average where
    both directions are there (an incomplete group is not averaged), the published numbers, ours minus them."""
    records = []
    for (task, dataset, model, run), by_set in groups.items():
        directions = [by_set[s] for s in sorted(by_set)]
        average = average_directions([d["top1"] for d in directions]) if len(directions) == 2 else None
        paper = published.get((task, model, dataset))
        records.append({
            "task": task, "dataset": dataset, "model": model, "run": run, "complete": average is not None,
            "directions": [{"train_set": d["train_set"], "file": d["file"], "top1": {k: d["top1"][k] for k in COLUMNS},
                            "interval": bootstrap_intervals([d]) if "predictions" in d else None} for d in directions],
            "average": average,
            "interval": bootstrap_intervals(directions) if average and all("predictions" in d for d in directions) else None,
            "paper": paper and {k: paper[k] for k in ("name", *COLUMNS, "source")},
            "difference": {k: average[k] - paper[k] for k in COLUMNS} if average and paper else None,
        })
    blocks, ran = {(r["task"], r["dataset"]) for r in records}, {(r["task"], r["model"], r["dataset"]) for r in records}
    for (task, model, dataset), paper in published.items():
        if (task, dataset) in blocks and (task, model, dataset) not in ran:
            records.append({"task": task, "dataset": dataset, "model": model, "run": None, "complete": False, "directions": [],
                            "average": None, "interval": None, "paper": {k: paper[k] for k in ("name", *COLUMNS, "source")},
                            "difference": None})
    tasks, models = ["coarse", "fine"], list(dict.fromkeys(model for _, model, _ in published))
    records.sort(key=lambda r: (tasks.index(r["task"]) if r["task"] in tasks else 2, r["task"],
                                DATASETS.index(r["dataset"]) if r["dataset"] in DATASETS else 3, r["dataset"],
                                models.index(r["model"]) if r["model"] in models else len(models), r["model"], r["run"] or ""))
    return records


def record_name(r: dict) -> str:
    """The model, and the run's folder where it is not the default one (several runs of a model)."""
    plain = r["run"] in (None, "", ".", f"{r['model']}_{r['dataset']}_{r['task']}")
    return r["model"] if plain else f"{r['model']} ({r['run']})"


def format_study_table(records: list) -> str:
    """The official layout, a block per task and dataset: ours (the mean of the two directions, or the one
    direction of an incomplete group, marked), its 95 % bootstrap interval, the published numbers, ours minus them."""
    width = max(len(record_name(r)) for r in records) + 2
    lines = []
    for (task, dataset), block in itertools.groupby(records, key=lambda r: (r["task"], r["dataset"])):
        lines += ["", f"{task} task | {DATASET_NAMES.get(dataset, dataset)} | top-1 %; ours: the mean of the two directions "
                      f"and its 95 % bootstrap interval over videos; paper: the official tables",
                  f"{'':{width + 11}}" + "".join(f"{c:>16}" for c in ("Known", "Unknown", "D_abs", "HM"))]
        for r in block:
            rows = []
            if r["complete"]:
                rows.append(("ours", r["average"], "{:16.2f}", "", r["interval"]))
            for d in r["directions"] if not r["complete"] else []:
                s = d["train_set"]
                rows.append((f"set {s}->{3 - s}", d["top1"], "{:16.2f}", f"   incomplete: trained on set {s} only, not averaged", d["interval"]))
            if rows and rows[0][4]:
                rows.insert(1, ("95 % CI", {k: "[{:.2f}, {:.2f}]".format(*rows[0][4][k]) for k in COLUMNS}, "{:>16}", "", None))
            if r["paper"]:
                rows.append(("paper", r["paper"], "{:16.2f}", "", None))
            if r["difference"]:
                rows.append(("ours-paper", r["difference"], "{:+16.2f}", "", None))
            for i, (kind, values, cell, note, _) in enumerate(rows):
                cells = (cell.format(round(values[k], 2) + 0.0 if isinstance(values[k], float) else values[k]) for k in COLUMNS)  # no "-0.00"
                lines.append(f"{record_name(r) if i == 0 else '':{width}}{kind:11}" + "".join(cells) + note)
    return "\n".join(lines[1:])


def write_table_csv(records: list, path) -> None:
    """Every number of the table, a row per direction, average, published row and difference."""
    columns = ["task", "dataset", "model", "run", "complete", "row", *COLUMNS, "hm_of_means",
               *(f"{k}_{end}" for k in (*COLUMNS, "hm_of_means") for end in ("low", "high")), "source"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, columns, lineterminator="\n")
        out.writeheader()
        for r in records:
            rows = [(f"set{d['train_set']}->{3 - d['train_set']}", d["top1"], d["interval"], d["file"]) for d in r["directions"]]
            rows += [("average", r["average"], r["interval"], "")] if r["average"] else []
            rows += [("paper", r["paper"], None, r["paper"]["source"])] if r["paper"] else []
            rows += [("ours-paper", r["difference"], None, "")] if r["difference"] else []
            for row, values, interval, source in rows:
                ends = {f"{k}_{end}": v for k, pair in (interval or {}).items() if k in (*COLUMNS, "hm_of_means")
                        for end, v in zip(("low", "high"), pair)}
                numbers = {k: round(values[k], 4) for k in (*COLUMNS, "hm_of_means") if k in values}
                out.writerow({"task": r["task"], "dataset": r["dataset"], "model": r["model"], "run": r["run"] or "",
                              "complete": r["complete"] if r["directions"] else "", "row": row, **numbers,
                              **{k: round(v, 4) for k, v in ends.items()}, "source": source})


def table_points(records: list) -> list:
    """The points of plot_known_unknown: ours (with intervals) and the published numbers, a panel per dataset and task."""
    ours, paper = [], []
    for r in records:
        group = f"{DATASET_NAMES.get(r['dataset'], r['dataset'])}, {r['task']} task"
        runs = [(r["average"], r["interval"], "ours: mean of the two directions")] if r["complete"] else \
            [(d["top1"], d["interval"], "ours: one direction only (incomplete)") for d in r["directions"]]
        for values, interval, series in runs:
            ours.append({"label": record_name(r), "group": group, "series": series, "known": values["known"], "unknown": values["unknown"],
                         **({"known_ci": interval["known"], "unknown_ci": interval["unknown"]} if interval else {})})
        if r["paper"]:
            paper.append({"label": r["model"], "group": group, "series": "paper (official tables)",
                          "known": r["paper"]["known"], "unknown": r["paper"]["unknown"]})
    return ours + paper  # ours first: filled markers


def plot_known_unknown(points: list, path, title: str = None, limit: float = 100) -> None:
    """Known (x) against Unknown (y) accuracy in %, a panel per point["group"] (in order of appearance), a
    colour per point["label"], a marker per point["series"] (the first filled, the others hollow), error
    bars from the optional point["known_ci"] / point["unknown_ci"] ([low, high]); the points of one label in
    a panel are joined by a thin line. In grey: the diagonal Known = Unknown and curves of equal HM (every 20
    points; every 10 where `limit`, the axes' end in %, is below 60)."""
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise SystemExit("error: plotting needs matplotlib; pip install matplotlib") from None
    groups, labels = list(dict.fromkeys(p["group"] for p in points)), list(dict.fromkeys(p["label"] for p in points))
    series = list(dict.fromkeys(p.get("series", "") for p in points))
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]  # tab20: its dark colours first, then the light ones
    colour = {label: palette(i % 10 if palette.N == 10 else (2 * i) % 20 + (i // 10) % 2) for i, label in enumerate(labels)}
    marker = {s: "osD^vPX*"[i % 8] for i, s in enumerate(series)}
    fig = Figure(figsize=(max(4.2 * len(groups), 7), 4.6 + 0.16 * len(labels + series) / 4), layout="constrained")
    for ax, group in zip(fig.subplots(1, len(groups), squeeze=False)[0], groups):
        ax.plot([0, limit], [0, limit], color="0.6", lw=0.8, ls="--")
        for hm in range(10 if limit < 60 else 20, 100, 10 if limit < 60 else 20):
            if hm >= limit:
                break
            known = np.linspace(hm / 2 + 0.01, limit, 400)
            unknown = hm * known / (2 * known - hm)
            ax.plot(known[unknown <= limit], unknown[unknown <= limit], color="0.8", lw=0.8)
            ax.text(0.99 * limit, hm * limit / (2 * limit - hm), f"HM {hm}", fontsize=7, color="0.5", ha="right", va="bottom")
        mine = [p for p in points if p["group"] == group]
        for label in labels:
            joined = [p for p in mine if p["label"] == label]
            if len(joined) > 1:
                ax.plot([p["known"] for p in joined], [p["unknown"] for p in joined], color=colour[label], lw=0.7, alpha=0.6)
        for p in mine:
            errors = [[[max(0.0, p[k] - p[f"{k}_ci"][0])], [max(0.0, p[f"{k}_ci"][1] - p[k])]] if f"{k}_ci" in p else None
                      for k in ("known", "unknown")]
            filled = p.get("series", "") == series[0]
            ax.errorbar(p["known"], p["unknown"], xerr=errors[0], yerr=errors[1], fmt=marker[p.get("series", "")],
                        color=colour[p["label"]], mfc=colour[p["label"]] if filled else "none", ms=6, elinewidth=0.8, capsize=2, clip_on=False)
        ax.set(xlim=(0, limit), ylim=(0, limit), aspect="equal", title=group, xlabel="Known top-1 (%)", ylabel="Unknown top-1 (%)")
    handles = [Line2D([], [], color=colour[label], marker="o", ls="", label=label) for label in labels]
    handles += [Line2D([], [], color="0.3", marker=marker[s], mfc="0.3" if s == series[0] else "none", ls="", label=s)
                for s in series if s]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.1)


def study_table(args) -> list:
    """--table DIR: print the table of every finished run under DIR; --json, --csv, --plot write it."""
    stray = [f"--{k.replace('_', '-')}" for k in ("ckpt", "video", "views", "splits", "root", "batch_size", "workers", "device")
             if getattr(args, k) is not None]
    if stray:
        raise SystemExit(f"error: {stray[0]} evaluates checkpoints; --table only reads the results.json of finished runs")
    records = table_records(collect_runs(args.table), read_published())
    print(format_study_table(records))
    if args.json:
        Path(args.json).write_text(results_json(records) + "\n")
    if args.csv:
        write_table_csv(records, args.csv)
    if args.plot:
        plot_known_unknown(table_points(records), args.plot, title=f"Known vs Unknown top-1 (%): the runs in {' '.join(args.table)} and the official tables")
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", nargs="+", help="checkpoints; one per training set gives the two-direction average")
    p.add_argument("--views", help="test views CLIPSxCROPS, e.g. 4x3 (default: the recipe's)")
    p.add_argument("--splits", help="prepared split folder (default: the one the run used)")
    p.add_argument("--root", help="video root (default: the one recorded with the splits)")
    p.add_argument("--batch-size", type=int, help="videos per evaluation batch")
    p.add_argument("--workers", type=int)
    p.add_argument("--backend", default="decord", choices=["decord", "pyav"])
    p.add_argument("--device")
    p.add_argument("--json", help="write every number to this file")
    table = p.add_argument_group("the study's table")
    table.add_argument("--table", metavar="DIR", nargs="+", help="collect every finished run (results.json) under DIR (one or "
                       "several folders): the official "
                       "table layout, a 95%% bootstrap interval per number, the published numbers and ours minus them")
    table.add_argument("--csv", help="write every number of --table to this CSV file")
    table.add_argument("--plot", help="draw --table's Known vs Unknown to this .png (.pdf, .svg): a panel per dataset and "
                       "task, the published points beside ours, the HM iso-curves (needs matplotlib)")
    demo_args = p.add_argument_group("one video (demo)")
    demo_args.add_argument("--video", help="rank class names for this video instead of evaluating val sets")
    demo_args.add_argument("--classes", help='class names separated by commas, e.g. "punching bag,punching person"')
    demo_args.add_argument("--model", help=f"a recipe instead of --ckpt: one of {', '.join(list_models())}")
    demo_args.add_argument("--pretrained", help="weights for --model (default: the recipe's), e.g. ViT-B/16 or a path")
    demo_args.add_argument("--data", help="the recipe's section for this dataset (--model)")
    demo_args.add_argument("--tiny", action="store_true", help="the recipe's CPU-sized variant (--model)")
    demo_args.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe key (--model)")
    demo_args.add_argument("--top", type=int, help="print only the N most likely classes")
    args = p.parse_args(argv)
    if args.top is not None and args.top < 1:
        raise SystemExit(f"error: --top must be at least 1, got {args.top}")
    for flag in ("json", "csv", "plot"):
        path = getattr(args, flag)
        if path and (Path(path).is_dir() or not Path(path).resolve().parent.is_dir()):
            raise SystemExit(f"error: --{flag} {path}: give a file in an existing folder")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise SystemExit(f"error: --plot {args.plot}: give a .png, .pdf or .svg file")
    stray = [f"--{k}" for k in ("classes", "model", "pretrained", "data", "top") if getattr(args, k)]
    stray += ["--tiny"] * args.tiny + ["--set"] * bool(args.set)
    if args.table:
        if stray:
            raise SystemExit(f"error: {stray[0]} belongs to the one-video demo, not to --table")
        return study_table(args)
    if args.csv or args.plot:
        raise SystemExit(f"error: --{'csv' if args.csv else 'plot'} writes the study table; add --table DIR (the folder of the runs)")
    if args.video:
        return demo(args)
    if not args.ckpt:
        raise SystemExit("error: give --ckpt CHECKPOINT [...] to evaluate, --table DIR to tabulate finished runs, "
                         "or --video FILE to classify one video")
    if stray:
        raise SystemExit(f"error: {stray[0]} belongs to the one-video demo; add --video FILE")

    rank, world, local_rank = init_distributed()
    device = pick_device(args.device, local_rank)
    runs = [checked_run(path, args) for path in args.ckpt]  # every checkpoint and its splits, before evaluating any
    paired_directions([cfg for _, cfg, _, _ in runs], key=lambda c: (c["model_name"], c["dataset"], c["task"]))
    results = []
    for path, (ckpt, cfg, val_videos, video_root) in zip(args.ckpt, runs):
        names = load_hierarchy(cfg["dataset"]).class_names(cfg["task"], cfg["train_set"])
        model = build_without_weights(cfg, names)
        load_model_state(model, evaluation_weights(ckpt, path), path)
        model.to(device)
        result = evaluate_direction(model, cfg, val_videos, video_root, device, rank, world, args.backend, progress=True)
        result["checkpoint"] = str(path)
        results.append(result)
        if rank == 0:
            print(format_direction(result) + "\n")
    summary = {"directions": results, "averages": average_runs(results, rank)}
    if args.json and rank == 0:
        Path(args.json).write_text(results_json(summary) + "\n")
    if world > 1:
        dist.destroy_process_group()
    return summary


def checked_run(path, args) -> tuple:
    """A checkpoint to evaluate with this command's overrides, checked with its two val splits
    -> (checkpoint, config, {split: videos}, video root)."""
    ckpt = load_checkpoint(path, mmap=True)  # memory-mapped: several checkpoints cost no memory until used
    cfg = ckpt["config"]
    if args.views:
        views = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", args.views.lower())
        if not views:
            raise SystemExit(f"error: --views expects CLIPSxCROPS such as 1x1 or 4x3, got {args.views!r}")
        cfg["test"]["clips"], cfg["test"]["crops"] = int(views[1]), int(views[2])
    if args.batch_size is not None:
        cfg["test"]["batch_size"] = args.batch_size
    if args.workers is not None:
        cfg["train"]["workers"] = args.workers
    check_config(cfg)
    splits_dir, video_root = resolve_data(cfg, args.splits, args.root, source=str(path))
    return ckpt, cfg, read_splits(splits_dir, cfg["dataset"], ["val_set1", "val_set2"]), video_root


def paired_directions(runs: list, key=lambda r: (r["model"], r["dataset"], r["task"])) -> dict:
    """{(model, dataset, task): runs}: where one is given more than once, it must be one run trained on
    set 1 and one on set 2 (sorted so); `runs` are results, or configs with another `key`."""
    groups = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    for (model, dataset, task), group in groups.items():
        group.sort(key=lambda r: r["train_set"])
        if len(group) > 1 and [r["train_set"] for r in group] != [1, 2]:
            raise SystemExit(f"error: to average {model} on {dataset} ({task} task) give one checkpoint trained on set 1 "
                             f"and one trained on set 2, got sets {[r['train_set'] for r in group]}")
    return groups


def average_runs(results: list, rank: int = 0) -> list:
    """The two-direction average of every (model, dataset, task) given for both training sets."""
    averages = []
    for (model, dataset, task), runs in paired_directions(results).items():
        if len(runs) == 2:
            averages.append({"model": model, "dataset": dataset, "task": task,
                             "top1": average_directions([r["top1"] for r in runs]),
                             "mean_class": average_directions([r["mean_class"] for r in runs])})
            if rank == 0:
                print(format_average(runs, averages[-1]["top1"]) + "\n")
    return averages


if __name__ == "__main__":
    main()
