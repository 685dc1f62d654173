"""Evaluate checkpoints on the Known and Unknown context val sets and print the benchmark table.

    python evaluate.py --ckpt runs/vit_synta_coarse_set1/ckpt.pt
    python evaluate.py --ckpt runs/vit_synta_coarse_set1/ckpt.pt runs/vit_synta_coarse_set2/ckpt.pt --json results.json
    python evaluate.py --ckpt runs/xclip_synta_{coarse,fine}_set{1,2}/ckpt.pt      # coarse and fine tables

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
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from data.augment import crop_views
from data.hierarchy import DATASETS, check_dataset, load_hierarchy
from data.loader import VideoDataset, load_videos, make_loader
from data.splits import read_dataset_info
from data.video import open_video, sample_indices
from models import apply_override, build_model, check_config, check_model, list_models, load_recipe, parse_override
from models.weights import load_checked

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


def evaluate_split(model, cfg, split, videos, video_root, label, class_names, device, rank=0, world=1, backend="decord", progress=False):
    """Accuracy of `model` on the videos of one val split, scored against `class_names`."""
    if hasattr(unwrap(model), "set_class_names"):
        unwrap(model).set_class_names(class_names)
    dataset = VideoDataset(videos, video_root, label, cfg, train=False, seed=cfg["train"]["seed"], backend=backend)
    shard = list(range(rank, len(dataset), world))
    workers = min(cfg["train"]["workers"], os.cpu_count() or 1)
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
        # per decoded video: its row in the split CSV, the predicted and the true class (McNemar, bootstrap)
        "predictions": {"index": ok.nonzero().flatten().tolist(), "pred": pred[ok].tolist(), "label": labels[ok].tolist()},
    }


def evaluate_direction(model, cfg, val_videos, video_root, device, rank=0, world=1, backend="decord", progress=False):
    """Known (same-set val) and Unknown (other-set val) accuracies of a model trained on one set;
    `val_videos` as read_splits returns them."""
    hierarchy = load_hierarchy(cfg["dataset"])
    task, s = cfg["task"], cfg["train_set"]
    known, unknown = (
        evaluate_split(model, cfg, f"val_set{k}", val_videos[f"val_set{k}"], video_root, task, hierarchy.class_names(task, k),
                       device, rank, world, backend, progress)
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
    return result


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
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, the answer is the same
        raise SystemExit(f"error: {path} is not a checkpoint written by train.py, or is truncated "
                         f"({type(e).__name__}: {first_line(e) or 'empty file'})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("model"), dict):
        raise SystemExit(f"error: {path} is not a checkpoint written by train.py (no 'config'/'model' entries)")
    missing = [k for k in ("model_name", "dataset", "task", "train_set") if k not in ckpt["config"]]
    if missing:
        raise SystemExit(f"error: {path}: its config has no {missing[0]!r}, which train.py always writes")
    if ckpt["config"]["dataset"] not in DATASETS:
        raise SystemExit(f"error: {path}: its config names the dataset {ckpt['config']['dataset']!r}; known: {', '.join(DATASETS)}")
    check_config(ckpt["config"], source=str(path))
    return ckpt


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


def resolve_data(cfg: dict, splits: str = None, root: str = None):
    """-> (splits_dir, video_root) from the command line or what the run recorded."""
    if not (splits or cfg.get("splits")):
        raise SystemExit("error: the run records no split folder; pass --splits DIR")
    splits_dir = Path(splits or cfg["splits"])
    info = read_dataset_info(splits_dir)
    if info.get("dataset") != cfg["dataset"]:
        raise SystemExit(f"error: {splits_dir} holds {info.get('dataset')}, but the model was trained on {cfg['dataset']}")
    video_root = Path(root or info["video_root"])
    if not video_root.is_dir():
        raise SystemExit(f"error: video root {video_root} not found; pass --root DIR (where the videos are now)")
    return splits_dir, video_root


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
    test.crops crops of input.size -> uint8 [V, T, 3, S, S]."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: video {path} not found")
    try:
        reader = open_video(path, backend)
        frames = reader.get(sample_indices(len(reader), cfg["input"], None, 0.5))
    except Exception as e:  # noqa: BLE001 - decoders raise their own error types
        raise SystemExit(f"error: cannot decode video {path} ({type(e).__name__}: {first_line(e)})") from None
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return torch.stack(crop_views(clip, cfg["input"]["size"], cfg["test"]["short_side"], cfg["test"]["crops"]))


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
        load_model_state(model, ckpt["model"], args.ckpt[0])
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
    if args.video:
        return demo(args)
    if not args.ckpt:
        raise SystemExit("error: give --ckpt CHECKPOINT [...] to evaluate, or --video FILE to classify one video")
    stray = [f"--{k}" for k in ("classes", "model", "pretrained", "data", "top") if getattr(args, k)]
    stray += ["--tiny"] * args.tiny + ["--set"] * bool(args.set)
    if stray:
        raise SystemExit(f"error: {stray[0]} belongs to the one-video demo; add --video FILE")
    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        raise SystemExit(f"error: --json {args.json}: give a file in an existing folder")

    rank, world, local_rank = init_distributed()
    device = pick_device(args.device, local_rank)
    runs = [checked_run(path, args) for path in args.ckpt]  # every checkpoint and its splits, before evaluating any
    paired_directions([cfg for _, cfg, _, _ in runs], key=lambda c: (c["model_name"], c["dataset"], c["task"]))
    results = []
    for path, (ckpt, cfg, val_videos, video_root) in zip(args.ckpt, runs):
        names = load_hierarchy(cfg["dataset"]).class_names(cfg["task"], cfg["train_set"])
        model = build_without_weights(cfg, names)
        load_model_state(model, ckpt["model"], path)
        model.to(device)
        result = evaluate_direction(model, cfg, val_videos, video_root, device, rank, world, args.backend, progress=True)
        result["checkpoint"] = str(path)
        results.append(result)
        if rank == 0:
            print(format_direction(result) + "\n")
    summary = {"directions": results, "averages": average_runs(results, rank)}
    if args.json and rank == 0:
        Path(args.json).write_text(json.dumps(summary, indent=1))
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
    splits_dir, video_root = resolve_data(cfg, args.splits, args.root)
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
