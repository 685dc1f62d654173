"""Train a model on one set of a benchmark dataset, then test it on Known and Unknown context.

    python train.py --model vit --data synta --train-set 1
    python train.py --model vit --data synta --train-set 2 --set train.lr=3e-5
    torchrun --nproc_per_node 8 train.py --model timesformer --data k400ta
    python train.py --resume --out runs/vit_synta_coarse_set1        # after an interruption
    python train.py                                                  # the main job (below)
    python train.py --model xclip --data k400ta --train-set both --task both      # a grid: 4 runs (see grid)
    python train.py --model x3d,i3d --data synta,k400ta --train-set both --print-commands 8   # torchrun lines

The main job, `python train.py` with no model or dataset: Syn-TA's small profile is generated once
(cache/synta_small_<appearance>, by the data/synta package), its splits are decoded once (--cache-frames), a
small 3D CNN (models/i3d_small.yaml) is trained
from scratch on set 1 and on set 2, and the two-direction Known / Unknown / D_abs / HM table is printed.

Defaults come from the model's recipe (models/<model>.yaml and its section for the dataset); the
flags and --set KEY=VALUE override them. Each epoch writes <out>/ckpt.pt atomically; Ctrl-C saves
one at the next step and stops; --resume continues exactly where it stopped.

A run is run(args) = setup (settings, split files, model, optimizer, resumed state: every check
before any video is read) -> fit (train_one_epoch per epoch, then end_of_epoch and a checkpoint)
-> final_evaluation (with the averaged weights where train.weight_averaging is on). Another
script can call these with its own model, labels and loss (see setup).
"""
import argparse
import bisect
import contextlib
import copy
import inspect
import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from data.hierarchy import DATASETS, check_dataset, load_hierarchy
from data.loader import TrainSampler, VideoDataset, cache_frames, flip_allowed, make_loader
from evaluate import (
    autocast, average_directions, average_runs, evaluate_direction, first_line, format_average, format_direction, git_commit,
    init_distributed, load_checkpoint, load_model_state, pick_device, read_result, read_splits, resolve_data, results_json, unwrap,
    weight_average_note,
)
from models import apply_override, build_model, check_config, check_model, list_models, load_recipe, model_class, parse_override

FRAME_CACHE = Path("cache") / "frames"  # --cache-frames: data.loader.cache_frames writes one folder per split there
FLAG_OVERRIDES = {  # flag -> recipe key
    "frames": ("input", "frames"),
    "batch_size": ("train", "batch_size"),
    "accum_steps": ("train", "accum_steps"),
    "lr": ("train", "lr"),
    "epochs": ("train", "epochs"),
    "workers": ("train", "workers"),
    "precision": ("train", "precision"),
    "seed": ("train", "seed"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"one of: {', '.join(list_models())}; several separated by commas run a grid")
    p.add_argument("--data", help=f"one of: {', '.join(DATASETS)}; several separated by commas run a grid")
    p.add_argument("--train-set", choices=["1", "2", "both"], help="the set trained on (default 1); both: a run on each")
    p.add_argument("--task", choices=["coarse", "fine", "both"], help="default coarse; both: the fine task too (text models)")
    p.add_argument("--splits", help="prepared split folder (default: splits/<data>)")
    p.add_argument("--root", help="video root (default: the one recorded with the splits)")
    p.add_argument("--out", help="output folder (default: runs/<model>_<data>_<task>_set<N>; of a grid: the folder of its runs, default runs)")
    p.add_argument("--print-commands", nargs="?", type=int, const=1, metavar="GPUS",
                   help="print the grid as one torchrun line per run (GPUS processes each, default 1) for a scheduler "
                        "instead of running it: --resume where a run was interrupted, nothing for a finished one")
    p.add_argument("--resume", nargs="?", const=True, help="continue the run in --out (or this checkpoint)")
    p.add_argument("--tiny", action="store_true", help="the recipe's CPU-sized variant (tests, smoke runs)")
    p.add_argument("--frames", type=int)
    p.add_argument("--batch-size", type=int, help="clips per optimizer step, all processes together")
    p.add_argument("--accum-steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--seed", type=int)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe key, e.g. train.warmup_epochs=2")
    p.add_argument("--backend", default="decord", choices=["decord", "pyav"], help="video decoder")
    p.add_argument("--cache-frames", action="store_true",
                   help=f"decode every video of the splits used once into {FRAME_CACHE}/ (uint8, memory-mapped, shared by "
                        "runs) and read clips from there: the same frames, no decoding per clip (the main job always does)")
    p.add_argument("--device")
    p.add_argument("--log-every", type=int, default=10, help="optimizer steps between log lines")
    p.add_argument("--appearance", choices=["coupled", "shared"],
                   help="main job only: Syn-TA appearance (default coupled: set-specific shapes and backgrounds, as the benchmark)")
    args = p.parse_args(argv)
    if args.train_set in ("1", "2"):
        args.train_set = int(args.train_set)
    if args.print_commands is not None and args.print_commands < 1:
        raise SystemExit(f"error: --print-commands GPUS is the number of processes per run, at least 1; got {args.print_commands}")
    return args


# ---------------------------------------------------------------------------------------------
# optimizer and schedule


def param_groups(model, cfg_train: dict) -> list:
    """Weight decay off for 1-D parameters and the model's no_weight_decay(); lr multipliers from
    the model's lr_multipliers() ({name substring: factor})."""
    no_wd = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    multipliers = model.lr_multipliers() if hasattr(model, "lr_multipliers") else {}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1 and not any(name == n or name.endswith("." + n) for n in no_wd)
        mult = next((m for key, m in multipliers.items() if key in name), 1.0)
        groups.setdefault((decay, mult), []).append(p)
    return [
        {"params": ps, "lr": cfg_train["lr"] * mult, "weight_decay": cfg_train["weight_decay"] if decay else 0.0}
        for (decay, mult), ps in groups.items()
    ]


def make_optimizer(model, cfg_train: dict, device):
    groups = param_groups(model, cfg_train)
    if cfg_train["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, betas=tuple(cfg_train["betas"]), fused=device.type == "cuda")
    if cfg_train["optimizer"] == "sgd":
        return torch.optim.SGD(groups, momentum=cfg_train["momentum"], nesterov=True)
    raise SystemExit(f"error: train.optimizer must be adamw or sgd, found {cfg_train['optimizer']!r}")


def make_scheduler(optimizer, cfg_train: dict, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg_train, steps_per_epoch))


def lr_factor(step: int, cfg_train: dict, steps_per_epoch: int) -> float:
    """The learning rate at optimizer step `step`, relative to train.lr: linear warmup from
    warmup_start_factor to the policy's value where the warmup ends, then the policy. Policies: cosine to
    min_lr over the epochs after the warmup, or over all of them (cosine_after_warmup false, PySlowFast's
    default, where the warmup ramps up to the cosine); steps: lr_step_factors[i] from epoch lr_steps[i]
    (PySlowFast's steps_with_relative_lrs, at fractional epochs as it evaluates them)."""
    tc = cfg_train
    warmup, total = round(tc["warmup_epochs"] * steps_per_epoch), tc["epochs"] * steps_per_epoch

    def policy(step):
        if tc["lr_policy"] == "steps":
            return tc["lr_step_factors"][bisect.bisect_right(tc["lr_steps"], step / steps_per_epoch) - 1]
        start, min_ratio = (warmup if tc["cosine_after_warmup"] else 0), tc["min_lr"] / tc["lr"]
        progress = (step - start) / max(1, total - start)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    if step < warmup:
        return tc["warmup_start_factor"] + (policy(warmup) - tc["warmup_start_factor"]) * step / warmup
    return policy(step)


def mix_batch(clips, labels, num_classes: int, tc: dict, rng):
    """Mixup / CutMix on a uint8 batch on the device -> (clips, soft targets [B, K]): one lambda per
    batch, each clip mixed with the batch reversed; every draw comes from the numpy generator `rng`."""
    use_cutmix = tc["cutmix"] > 0 and (tc["mixup"] <= 0 or rng.random() < tc["mix_switch_prob"])
    alpha = tc["cutmix"] if use_cutmix else tc["mixup"]
    lam = float(rng.beta(alpha, alpha))
    partner = clips.flip(0)
    if use_cutmix:
        h, w = clips.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1, x0, x1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        clips = clips.clone()
        clips[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        clips = (lam * clips.float() + (1 - lam) * partner.float()).round_().to(torch.uint8)
    one_hot = F.one_hot(labels, num_classes).float()
    return clips, lam * one_hot + (1 - lam) * one_hot.flip(0)


def compute_loss(model, clips, labels, label_smoothing: float = 0.0, num_classes: int = None):
    """The training loss -> (loss, logits). labels: class ids [B] or soft targets [B, K]. A model with
    an objective of its own (its forward takes `targets`, see models/__init__.py) returns
    {"logits", "loss"}, label smoothing reaching it as soft targets over num_classes; any other
    model is trained with the cross-entropy of its logits."""
    if has_objective(model):
        if label_smoothing:
            soft = labels if labels.ndim == 2 else F.one_hot(labels, num_classes).float()
            labels = soft * (1 - label_smoothing) + label_smoothing / soft.shape[1]
        out = model(clips, targets=labels)
        return out["loss"], out["logits"]
    logits = model(clips)
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing), logits


def has_objective(model) -> bool:
    return "targets" in inspect.signature(unwrap(model).forward).parameters


def optimizer_step(model, optimizer, scaler, grad_clip: float) -> None:
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# checkpoints


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": list(np.random.get_state()[1].tolist())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), 624, 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **state) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------


class Progress:
    """One line per `log_every` steps in logs; a live bar with ETA on a terminal; the clips/s since
    the last line (or the epoch's start)."""

    def __init__(self, total_steps: int, done: int, enabled: bool):
        self.total, self.start_done, self.enabled = total_steps, done, enabled
        self.t0, self.tty = time.time(), sys.stderr.isatty()
        self.restart_rate()

    def restart_rate(self):
        self.clips, self.t_last = 0, time.time()

    def count(self, clips: int):
        self.clips += clips

    def update(self, done: int, epoch: int, epochs: int, loss: float, lr: float) -> float:
        """-> clips/s since the last update"""
        clips_per_s = self.clips / max(time.time() - self.t_last, 1e-9)
        self.restart_rate()
        if not self.enabled:
            return clips_per_s
        elapsed = time.time() - self.t0
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0
        eta = (self.total - done) / rate if rate > 0 else 0
        frac = done / self.total
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = (f"epoch {epoch + 1}/{epochs} [{bar}] {done}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                f"{clips_per_s:.1f} clips/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        return clips_per_s

    def close(self):
        if self.enabled and self.tty:
            print(file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    if args.print_commands is not None or "both" in (args.train_set, args.task) or "," in f"{args.model or ''}{args.data or ''}":
        return grid(args)
    if not (args.model or args.data or args.resume):
        check_flags(args)
        return main_job(args)
    return run(args)


def check_flags(args) -> None:
    """The flags that are not recipe keys (models.check_config checks those), and flags a run would ignore."""
    given = [f"--{k.replace('_', '-')}" for k in FLAG_OVERRIDES if getattr(args, k) is not None]
    given += ["--set"] * bool(args.set) + ["--tiny"] * args.tiny + ["--compile"] * args.compile
    if not (args.model or args.data or args.resume):
        given += [f"--{k.replace('_', '-')}" for k in ("splits", "root", "task", "train_set") if getattr(args, k) is not None]
        if set(given) - {"--tiny", "--workers"}:
            raise SystemExit(f"error: {sorted(set(given) - {'--tiny', '--workers'})[0]} needs --model and --data; the main job "
                             "(python train.py alone) runs its own recipe")
    elif args.appearance:
        raise SystemExit("error: --appearance belongs to the main job (python train.py without --model and --data)")
    elif args.resume and set(given) - {"--workers"}:
        raise SystemExit(f"error: {sorted(set(given) - {'--workers'})[0]} cannot change a resumed run: its settings come from "
                         "its checkpoint; start a new run (another --out) to change them")
    if args.log_every < 1:
        raise SystemExit(f"error: --log-every must be at least 1 (optimizer steps between log lines), got {args.log_every}")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"error: --out {args.out} is a file; give a folder for the run")


MAIN_JOB_MODEL = "i3d_small"


def small_synta(appearance: str) -> Path:
    """Syn-TA's small profile in cache/synta_small_<appearance>, generated and prepared once -> its splits folder."""
    from data.prepare import prepare
    from data.synta import PROFILES, generate

    root = Path("cache") / f"synta_small_{appearance}"
    generate(root, **PROFILES["small"], appearance=appearance, progress=sys.stderr.isatty())
    splits = root / "splits"
    if not (splits / "dataset.yaml").is_file():
        prepare("synta", root, splits)
    return splits


def main_job(args) -> dict:
    """Generate (once) the small Syn-TA profile, train the small model on each set, print the table."""
    from data.splits import read_dataset
    from evaluate import data_fingerprint

    appearance = args.appearance or "coupled"
    print(f"main job: Syn-TA small profile ({appearance} appearance) in cache/synta_small_{appearance}, {MAIN_JOB_MODEL} "
          "from scratch, both directions", file=sys.stderr)
    splits = small_synta(appearance)
    root = splits.parent
    runs, fingerprint = Path(args.out or "runs") / f"main_job_{appearance}", data_fingerprint(root, read_dataset(splits)[1])
    for ckpt in runs.glob("set[12]/ckpt.pt"):  # a run of videos rendered before the cache was made again
        if load_checkpoint(ckpt, mmap=True)["config"].get("data_fingerprint", fingerprint) != fingerprint:
            raise SystemExit(f"error: {ckpt.parent} was trained on other videos than {root} holds now (it was rendered "
                             f"again, by another generator version or options); delete {runs} to train on these, or keep "
                             f"it and write the new runs elsewhere: python train.py --out DIR")
    args.cache_frames = True  # the main job decodes its videos once; then a loader process costs more than it saves
    args.workers = 0 if args.workers is None else args.workers  # (3.0 against 4.0 s per epoch on 2 cores)
    directions = launch([(runs / f"set{s}", ["--model", MAIN_JOB_MODEL, "--data", "synta", "--splits", str(splits),
                                              "--train-set", str(s), *["--tiny"] * args.tiny]) for s in (1, 2)], args)
    summary = {"directions": directions, "average": average_directions([d["top1"] for d in directions])}
    print("\n" + format_average(directions, summary["average"]))
    return summary


SETTING_FLAGS = [*(k for k in FLAG_OVERRIDES if k != "workers"), "tiny", "compile", "set"]  # a new run's settings
RUNTIME_FLAGS = ["workers", "splits", "root", "backend", "device", "log_every", "cache_frames"]  # flags a resumed run takes too


def grid(args) -> list:
    """One run per model x dataset x task x training set (several --model or --data, --train-set both,
    --task both), each in <out>/<model>_<data>_<task>_set<N> (--out: default runs): run one after another
    here, or printed as torchrun lines (--print-commands); then the two-direction tables."""
    if args.resume or not (args.model and args.data):
        raise SystemExit("error: a grid (several --model or --data, --train-set both, --task both, --print-commands) needs "
                         "--model and --data, and resumes interrupted runs itself (leave out --resume)")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise SystemExit("error: a grid runs its runs one after another in one process; for several GPUs per run, "
                         "print them with --print-commands GPUS and start each line (or a scheduler array job)")
    check_flags(args)
    models = [check_model(m) for m in args.model.split(",")]
    datasets = [check_dataset(d) for d in args.data.split(",")]
    if len(datasets) > 1 and (args.splits or args.root):
        raise SystemExit("error: --splits and --root name one dataset's folders; give one --data with them")
    sets = (1, 2) if args.train_set == "both" else (args.train_set or 1,)
    runs = []
    for model in models:
        tasks = ("coarse", "fine") if args.task == "both" else (args.task or "coarse",)
        if "fine" in tasks and not hasattr(model_class(load_recipe(model)), "set_class_names"):
            if args.task == "fine":
                raise SystemExit(f"error: the fine task needs a text model; {model} is a classifier with fixed classes")
            print(f"note: {model} is a classifier: the coarse task only (the fine task needs a text model)", file=sys.stderr)
            tasks = ("coarse",)
        runs += [(Path(args.out or "runs") / f"{model}_{data}_{task}_set{s}",
                  ["--model", model, "--data", data, "--task", task, "--train-set", str(s), *given_flags(args, SETTING_FLAGS)])
                 for data in datasets for task in tasks for s in sets]
    results = launch(runs, args)
    average_runs(results)
    return results


def given_flags(args, names: list) -> list:
    """The command-line flags `names` as given (those left at their defaults are left out)."""
    defaults, argv = vars(parse_args([])), []
    for name in names:
        value, flag = getattr(args, name), "--" + name.replace("_", "-")
        if value != defaults[name]:
            argv += [flag] if value is True else [x for v in value for x in (flag, v)] if isinstance(value, list) else [flag, str(value)]
    return argv


def launch(runs: list, args) -> list:
    """`runs`: (output folder, flags of a new run). A finished run (results.json) is skipped, an interrupted
    one (ckpt.pt) resumed, after checking that it was made with the settings asked for now; the rest start.
    One after another here, or one torchrun line each with --print-commands. -> the runs' results"""
    runtime, plan = given_flags(args, RUNTIME_FLAGS), []
    for out, argv in runs:  # every run checked before the first starts
        argv = [*argv, "--out", str(out), *runtime]
        cfg = make_config(parse_args(argv))
        if (out / "ckpt.pt").is_file():
            check_same_settings(cfg, load_checkpoint(out / "ckpt.pt", mmap=True)["config"], out)
            argv = ["--resume", "--out", str(out), *runtime]
        plan.append((out, None if (out / "results.json").is_file() else argv))
    if args.print_commands is not None:
        for _, argv in plan:
            if argv:
                print(shlex.join(["torchrun", "--standalone", "--nproc_per_node", str(args.print_commands), "train.py", *argv]))
        done = sum(argv is None for _, argv in plan)
        print(f"{len(plan) - done} run(s) to do, {done} finished", file=sys.stderr)
        return []
    return [read_result(out / "results.json") if argv is None else run(parse_args(argv)) for out, argv in plan]


def flat_settings(cfg: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1e-4, ...}, ...} -> {"train.lr": 1e-4, ...}"""
    flat = {}
    for key, value in cfg.items():
        flat.update(flat_settings(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def check_same_settings(cfg: dict, saved: dict, out: Path) -> None:
    """A run found in `out` continues or counts only if it was made with the settings asked for now (a
    setting its checkpoint lacks was added to the code later and takes its default there)."""
    new, old = flat_settings(cfg), flat_settings(saved)
    differ = [k for k in sorted(old) if k not in ("splits", "train.workers", "data_fingerprint") and new.get(k) != old[k]]
    if differ:
        raise SystemExit(f"error: {out} holds a run with {differ[0]}={old[differ[0]]!r}, this command asks for "
                         f"{new.get(differ[0])!r}; give another --out, or move that run away")


def run(args) -> dict:
    """Train, checkpoint every epoch, evaluate both val sets; returns the result dict."""
    state = setup(args)
    fit(state)
    result = final_evaluation(state)
    if state.world > 1:
        dist.destroy_process_group()
    return result


# ---------------------------------------------------------------------------------------------
# set-up: settings, data, model, optimizer, resumed state


@dataclass
class Run:
    """What the set-up gives the training loop and the final evaluation."""

    cfg: dict
    out: Path
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module  # checkpoints and evaluation use the bare model
    train_model: torch.nn.Module  # the loop calls it: wrapped in DistributedDataParallel and/or torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loss_fn: Callable  # (model, clips, targets) -> (loss, logits scored against the labels)
    dataset: VideoDataset
    sampler: TrainSampler
    val_videos: dict  # {"val_set1": [Video, ...], "val_set2": [...]}
    video_root: Path
    num_classes: int
    micro_batch: int  # videos per process and forward pass (each gives train.repeated_augmentation clips)
    workers: int
    backend: str
    log_every: int
    frame_cache: Path = None  # the folder of decoded-frame caches (--cache-frames), or None: decode every clip
    start_epoch: int = 0  # where training continues: epoch, and optimizer steps done in it
    start_step: int = 0
    decode_failures: int = 0
    stop_requested: bool = False
    weight_average: dict = None  # train.weight_averaging: {"epochs": n, "model": the mean of the n epochs' weights}
    log_file: object = None
    resume_command: str = ""  # printed after a stop; default: python train.py --resume <out>/ckpt.pt

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> str:
        return self.cfg["train"]["precision"] if self.device.type == "cuda" else "fp32"

    def log(self, record: dict) -> None:
        if self.is_main:
            self.log_file = self.log_file or open(self.out / "log.jsonl", "a")
            self.log_file.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")
            self.log_file.flush()

    def save(self, epoch: int, step_in_epoch: int) -> None:
        if self.is_main:
            save_checkpoint(self.out / "ckpt.pt", model=unwrap(self.model).state_dict(), optimizer=self.optimizer.state_dict(),
                            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(), epoch=epoch,
                            step_in_epoch=step_in_epoch, rng=rng_state(), config=self.cfg, git=git_commit(),
                            weight_average=self.weight_average)
        if self.world > 1:
            dist.barrier()


def setup(args, make_model=None, label=None, config=None) -> Run:
    """Everything before the first step, cheapest checks first: the settings, all four split files,
    the model, optimizer and schedule, then a resumed run's state. Another script trains its own
    model through the same loop with `make_model(cfg, class_names)` and `label` ("coarse", "fine" or
    "both"; default: the task's), then replaces `loss_fn` on the result where its loss differs;
    `config` ({"disentangle": {...}}) adds its settings to the run's config (checkpoint, log), and
    a resumed run must have been started with the same."""
    check_flags(args)
    rank, world, local_rank = init_distributed()
    device = pick_device(args.device, local_rank)
    cfg, out, ckpt = new_or_resumed(args, config or {})
    tc, label = cfg["train"], label or cfg["task"]
    if label == "both" and (tc["mixup"] > 0 or tc["cutmix"] > 0):
        raise SystemExit("error: train.mixup and train.cutmix mix one kind of label; set them to 0 to train on coarse and fine labels")
    if args.cache_frames and world > 1:
        raise SystemExit("error: --cache-frames is for single-process runs; leave it out with torchrun")
    micro_batch, rest = divmod(tc["batch_size"], world * tc["accum_steps"])
    if micro_batch == 0 or rest:
        raise SystemExit(f"error: train.batch_size {tc['batch_size']} must be a multiple of processes x accum_steps "
                         f"({world} x {tc['accum_steps']})")
    splits_dir, video_root = resolve_data(cfg, args.splits, args.root)
    train_split = f"train_set{cfg['train_set']}"
    videos = read_splits(splits_dir, cfg["dataset"], ["train_set1", "train_set2", "val_set1", "val_set2"])
    sampler = TrainSampler(len(videos[train_split]), micro_batch, tc["accum_steps"], rank, world, tc["seed"])
    if sampler.steps_per_epoch() == 0:
        raise SystemExit(f"error: {train_split} has {len(videos[train_split])} videos, fewer than one batch of "
                         f"{tc['batch_size']}; lower --batch-size")
    class_names = load_hierarchy(cfg["dataset"]).class_names(cfg["task"], cfg["train_set"])
    torch.manual_seed(tc["seed"])
    model = (make_model or build_model)(cfg if ckpt is None else {**cfg, "pretrained": "none"}, class_names).to(device)
    if cfg["task"] == "fine" and not hasattr(model, "set_class_names"):
        raise SystemExit(f"error: the fine task needs a text model; {cfg['model_name']} is a classifier with fixed classes")
    if (tc["precise_bn"] or tc["sync_bn"]) and not batchnorm_layers(model):
        raise SystemExit(f"error: train.{'precise_bn' if tc['precise_bn'] else 'sync_bn'} acts on BatchNorm layers and "
                         f"{cfg['model_name']} has none; set it to {0 if tc['precise_bn'] else 'false'}")
    if tc["sync_bn"] and world > 1:
        if device.type != "cuda":
            raise SystemExit("error: train.sync_bn needs CUDA devices (torch's SyncBatchNorm); set it false to train on the CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, tc, device)
    scheduler = make_scheduler(optimizer, tc, sampler.steps_per_epoch())
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tc["precision"] == "fp16")
    flip = all(flip_allowed(cfg["dataset"], kind) for kind in (("coarse", "fine") if label == "both" else (label,)))
    dataset = VideoDataset(videos[train_split], video_root, label, cfg, train=True, seed=tc["seed"], backend=args.backend, flip=flip,
                           repeats=tc["repeated_augmentation"])
    state = Run(cfg=cfg, out=out, device=device, rank=rank, world=world, model=model, train_model=model, optimizer=optimizer,
                scheduler=scheduler, scaler=scaler,
                loss_fn=partial(compute_loss, label_smoothing=tc["label_smoothing"], num_classes=len(class_names)),
                dataset=dataset, sampler=sampler, val_videos={k: videos[k] for k in ("val_set1", "val_set2")},
                video_root=video_root, num_classes=len(class_names), micro_batch=micro_batch,
                workers=min(tc["workers"], os.cpu_count() or 1), backend=args.backend, log_every=args.log_every,
                frame_cache=FRAME_CACHE if args.cache_frames else None)
    if ckpt:
        restore(state, ckpt, out / "ckpt.pt")
    else:
        torch.manual_seed(tc["seed"] + rank)
    if state.frame_cache:  # after every check: decoding a split's videos is the first thing that reads them
        dataset.frames = cache_frames(dataset.videos, video_root, args.backend, state.frame_cache, state.workers, train_split)
    if world > 1:
        state.train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if tc["compile"]:
        state.train_model = torch.compile(state.train_model)
    out.mkdir(parents=True, exist_ok=True)
    if state.is_main and not ckpt:
        repeats = tc["repeated_augmentation"]
        batch = f"{tc['batch_size']} clips" if repeats == 1 else f"{tc['batch_size']} videos x {repeats} clips"
        print(f"{cfg['model_name']} on {cfg['dataset']} set {cfg['train_set']} ({cfg['task']}): {len(dataset)} videos, "
              f"{len(class_names)} classes, {tc['epochs']} epochs x {sampler.steps_per_epoch()} steps of {batch}, "
              f"{world} process(es) on {device}, {state.precision}; writing to {out}", file=sys.stderr)
        state.log({"type": "config", "config": cfg, "git": git_commit(), "world": world})
    return state


def new_or_resumed(args, config: dict) -> tuple:
    """-> (cfg, out folder, checkpoint or None): a new run's settings from the recipe, the flags and a
    calling script's `config`, or a resumed run's from its checkpoint; checked either way."""
    if not args.resume:
        cfg = check_config({**make_config(args), **config})
        out = Path(args.out or f"runs/{cfg['model_name']}_{cfg['dataset']}_{cfg['task']}_set{cfg['train_set']}")
        if (out / "ckpt.pt").exists():
            raise SystemExit(f"error: {out} already holds a run; continue it with --resume or choose another --out")
        return cfg, out, None
    path = Path(args.resume) if isinstance(args.resume, str) else None
    if path is None:
        if not args.out and not (args.model and args.data):
            raise SystemExit("error: --resume needs --out DIR of the run (or the path of its ckpt.pt)")
        path = Path(args.out or f"runs/{args.model}_{args.data}_{args.task or 'coarse'}_set{args.train_set or 1}") / "ckpt.pt"
    ckpt = load_checkpoint(path)
    missing = [k for k in RUN_STATE if k not in ckpt]
    if missing:
        raise SystemExit(f"error: {path} has no {missing[0]!r} entry, which resuming needs; was it written by another program?")
    cfg = ckpt["config"]
    if "disentangle" in cfg and "disentangle" not in config:
        raise SystemExit(f"error: {path} is a run of disentangle.py ({cfg['disentangle']['variant']}); continue it with "
                         "the disentangle.py command that started it (it resumes unfinished runs)")
    for key, value in config.items():
        if cfg.get(key) != value:
            raise SystemExit(f"error: {path} is a run with {key} {cfg.get(key)}, not {value}; choose another --out")
    for flag, key in (("model", "model_name"), ("data", "dataset"), ("task", "task"), ("train_set", "train_set")):
        given = getattr(args, flag)
        if given is not None and given != cfg[key]:
            raise SystemExit(f"error: {path} is a run of --{flag.replace('_', '-')} {cfg[key]}, not {given}")
    if args.workers is not None:
        cfg["train"]["workers"] = args.workers
    return check_config(cfg), path.parent, ckpt


def make_config(args) -> dict:
    if not args.model or not args.data:
        raise SystemExit("error: give --model and --data (e.g. python train.py --model vit --data synta)")
    check_model(args.model)
    check_dataset(args.data)
    task, train_set = args.task or "coarse", args.train_set or 1
    cfg = load_recipe(args.model, args.data, tiny=args.tiny, task=task)
    for flag, keys in FLAG_OVERRIDES.items():
        if getattr(args, flag) is not None:
            apply_override(cfg, list(keys), getattr(args, flag))
    for text in args.set:
        apply_override(cfg, *parse_override(text))
    if args.compile:
        cfg["train"]["compile"] = True
    cfg.update(dataset=args.data, task=task, train_set=train_set, splits=str(Path(args.splits or f"splits/{args.data}").resolve()))
    return check_config(cfg)


RUN_STATE = ("optimizer", "scheduler", "scaler", "epoch", "step_in_epoch", "rng")


def restore(state: Run, ckpt: dict, path: Path) -> None:
    """A resumed run's weights, optimizer, schedule, grad scaler, RNG and position; a part that does not
    fit this run (a hand-edited file, another model's optimizer) is one line naming it."""
    load_model_state(state.model, ckpt["model"], str(path))
    fresh_keys = [set(g) for g in state.optimizer.param_groups]
    parts = {"optimizer": state.optimizer.load_state_dict, "scheduler": state.scheduler.load_state_dict,
             "scaler": state.scaler.load_state_dict, "rng": set_rng_state}
    for name, load in parts.items():
        try:
            load(ckpt[name])
            if name == "optimizer":
                check_optimizer_state(state.optimizer, fresh_keys)
            if name == "scheduler" and len(state.scheduler.base_lrs) != len(state.optimizer.param_groups):
                raise ValueError(f"{len(state.scheduler.base_lrs)} learning rates for {len(state.optimizer.param_groups)} parameter groups")
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
            raise SystemExit(f"error: {path}: its {name} state does not fit this run ({type(e).__name__}: {first_line(e)}); "
                             "was the file edited, or written for another model?") from None
    epoch, step = ckpt["epoch"], ckpt["step_in_epoch"]
    if not (isinstance(epoch, int) and isinstance(step, int) and 0 <= epoch <= state.cfg["train"]["epochs"]
            and 0 <= step < state.sampler.steps_per_epoch()):
        raise SystemExit(f"error: {path}: its position (epoch {epoch!r}, step {step!r}) is outside this run's "
                         f"{state.cfg['train']['epochs']} epochs of {state.sampler.steps_per_epoch()} steps")
    state.start_epoch, state.start_step = epoch, step
    average, first = ckpt.get("weight_average"), state.cfg["train"]["weight_averaging"]
    averaged = max(0, epoch - first + 1) if first else 0
    if (average or {}).get("epochs", 0) != averaged:
        raise SystemExit(f"error: {path}: after {epoch} epochs it should hold the weight average of {averaged} "
                         f"(train.weight_averaging {first}), it holds {(average or {}).get('epochs', 0)}; was the file edited?")
    if average:
        state.weight_average = {"epochs": averaged, "model": {k: v.to(state.device) for k, v in average["model"].items()}}


def check_optimizer_state(optimizer, fresh_keys: list) -> None:
    """After load_state_dict: every group keeps the settings this optimizer reads, every per-parameter
    tensor has its parameter's shape (torch checks neither)."""
    for group, keys in zip(optimizer.param_groups, fresh_keys):
        if keys - set(group):
            raise ValueError(f"a parameter group lacks {sorted(keys - set(group))[0]!r} (another optimizer's state?)")
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.ndim and value.shape != p.shape:
                    raise ValueError(f"{name} of shape {list(value.shape)} for a parameter of shape {list(p.shape)}")


# ---------------------------------------------------------------------------------------------
# training


@contextlib.contextmanager
def stop_on_signal(state: Run):
    """Ctrl-C or SIGTERM asks the loop to write a checkpoint at the next step and stop; a second one aborts."""

    def on_signal(signum, frame):
        if state.stop_requested:
            raise KeyboardInterrupt
        state.stop_requested = True
        if state.is_main:
            print("\nstopping: a checkpoint is written after this step (press Ctrl-C again to abort without one)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def fit(state: Run) -> None:
    """The epochs from where the run stands, a checkpoint and a log line after each."""
    tc, steps = state.cfg["train"], state.sampler.steps_per_epoch()
    progress = Progress(tc["epochs"] * steps, state.start_epoch * steps + state.start_step, state.is_main)
    with stop_on_signal(state):
        for epoch in range(state.start_epoch, tc["epochs"]):
            train_loss, train_top1 = train_one_epoch(state, epoch, progress)
            end_of_epoch(state, epoch)
            state.save(epoch + 1, 0)
            state.log({"type": "epoch", "epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_top1": round(train_top1, 2),
                       "decode_failures": state.decode_failures})
    progress.close()
    if state.world > 1:
        counts = torch.tensor(float(state.decode_failures), device=state.device)
        dist.all_reduce(counts)
        state.decode_failures = int(counts.item())


def end_of_epoch(state: Run, epoch: int) -> None:
    """What is done to the model after an epoch's last step, before its checkpoint: precise BatchNorm
    statistics, then the weight average."""
    if state.cfg["train"]["precise_bn"]:
        precise_bn(state, epoch)
    first = state.cfg["train"]["weight_averaging"]
    if first and epoch + 1 >= first:
        update_weight_average(state)


def update_weight_average(state: Run) -> None:
    """train.weight_averaging N: the mean of the weights at the end of epochs N, N+1, ... (1-based),
    as Open-VCLIP's and FROSTER's weight_average_tool.py averages their epoch checkpoints (from
    checkpoint_epoch_00002 there), kept as a running mean; every floating-point entry of the state
    dict is averaged, the others (counters) are the latest."""
    weights = unwrap(state.model).state_dict()
    average = state.weight_average or {"epochs": 0, "model": {k: v.detach().clone() for k, v in weights.items()}}
    n = average["epochs"] = average["epochs"] + 1
    with torch.no_grad():
        for k, v in weights.items():
            mean = average["model"][k]
            if mean.is_floating_point():
                mean.add_((v - mean) / n)
            else:
                mean.copy_(v)
    state.weight_average = average


def train_one_epoch(state: Run, epoch: int, progress) -> tuple:
    """One epoch, or what a resumed run has left of it -> (mean loss, top-1 %) on its training clips."""
    tc, accum, steps = state.cfg["train"], state.cfg["train"]["accum_steps"], state.sampler.steps_per_epoch()
    skip = state.start_step if epoch == state.start_epoch else 0  # optimizer steps already done in this epoch
    state.sampler.set_epoch(epoch, skip * accum)
    state.dataset.set_epoch(epoch)
    loader = make_loader(state.dataset, state.micro_batch, state.sampler, state.workers, state.device.type == "cuda")
    state.train_model.train()
    step, seen, micro_batches = skip, 0, 0
    progress.restart_rate()
    loss_sum, correct = torch.zeros((), device=state.device), torch.zeros((), device=state.device)
    bad_step = torch.tensor(-1, device=state.device)  # first optimizer step with a non-finite loss, kept on the device
    for i, (clips, labels, _, failures) in enumerate(loader):
        state.decode_failures += failures
        clips, labels = clips.to(state.device, non_blocking=True), labels.to(state.device, non_blocking=True)
        targets = labels
        if tc["mixup"] > 0 or tc["cutmix"] > 0:  # mixed clips, soft targets; drawn from (seed, epoch, micro-batch, rank)
            mix_rng = np.random.default_rng([tc["seed"], epoch, skip * accum + i, state.rank])
            clips, targets = mix_batch(clips, labels, state.num_classes, tc, mix_rng)
        last_micro = (i + 1) % accum == 0  # the optimizer steps after `accum` micro-batches
        # with several processes, gradients are all-reduced only in the backward of the last micro-batch
        no_sync = state.train_model.no_sync() if state.world > 1 and not last_micro else contextlib.nullcontext()
        with no_sync, autocast(state.device, state.precision):  # bf16/fp16 on CUDA, fp32 on the CPU
            loss, logits = state.loss_fn(state.train_model, clips, targets)
        state.scaler.scale(loss / accum).backward()  # accumulate the mean over the step's micro-batches (fp16: scaled)
        loss_sum += loss.detach()
        correct += (logits.argmax(-1) == (labels if labels.ndim == 1 else labels[:, 0])).sum()  # "both": (coarse, fine)
        seen += len(labels)
        micro_batches += 1
        progress.count(len(labels) * state.world)
        if not last_micro:
            continue
        optimizer_step(state.model, state.optimizer, state.scaler, tc["grad_clip"])  # unscale, clip, step, zero the grads
        state.scheduler.step()  # lr_factor: per optimizer step
        bad = torch.tensor(epoch * steps + step, device=state.device)
        bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), bad, bad_step)  # no sync with the host
        step += 1
        if step % state.log_every == 0 or step == steps or (state.world == 1 and state.stop_requested):
            check_in(state, progress, epoch, step, bad_step, loss_sum.item() / micro_batches)
    return loss_sum.item() / max(1, micro_batches), 100.0 * correct.item() / max(1, seen)


def batchnorm_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def precise_bn(state: Run, epoch: int) -> None:
    """PySlowFast's precise BN after an epoch (update_bn_statistics) over train.precise_bn micro-batches
    of training clips per process (fewer if the epoch has fewer); the processes average their statistics.
    The clips are drawn as in a training epoch from a stream of their own (seed + 2**32; training seeds are
    below 2**32), as PySlowFast draws them with a loader of their own."""
    dataset = copy.copy(state.dataset)
    dataset.seed += 2**32
    dataset.set_epoch(epoch)
    sampler = TrainSampler(len(dataset), state.micro_batch, 1, state.rank, state.world, dataset.seed)
    sampler.set_epoch(epoch)
    order = list(sampler)[: state.cfg["train"]["precise_bn"] * state.micro_batch]
    loader = make_loader(dataset, state.micro_batch, order, state.workers, state.device.type == "cuda")
    with autocast(state.device, state.precision):
        update_bn_statistics(state.model, (clips.to(state.device, non_blocking=True) for clips, *_ in loader))
    for bn in batchnorm_layers(state.model) if state.world > 1 else ():
        for stats in (bn.running_mean, bn.running_var):
            dist.all_reduce(stats)
            stats /= state.world


def update_bn_statistics(model, inputs) -> None:
    """fvcore's update_bn_stats, which PySlowFast's precise BN calls: the running mean and variance of every
    BatchNorm layer become the average over `inputs` (forward passes in training mode, no gradient) of each
    batch's mean and unbiased variance; the layers' momentum is kept."""
    layers = batchnorm_layers(model)
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # torch's cumulative average: after n batches, the mean of their n statistics
    model.train()
    with torch.no_grad():
        for x in inputs:
            model(x)
    for bn, momentum in zip(layers, momenta):
        bn.momentum = momentum


def check_in(state: Run, progress, epoch: int, step: int, bad_step, mean_loss: float) -> None:
    """Every --log-every steps, at the end of an epoch and when a stop was asked for: all processes
    agree on a non-finite loss (the run ends) and on a stop (checkpoint, exit 130); progress and log."""
    steps = state.sampler.steps_per_epoch()
    flags = torch.stack([bad_step.float(), torch.tensor(float(state.stop_requested), device=state.device)])
    if state.world > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    if flags[0] >= 0:
        progress.close()
        bad, ckpt_path = int(flags[0]), state.out / "ckpt.pt"
        raise SystemExit(f"error: non-finite loss at epoch {bad // steps + 1}, step {bad % steps + 1}; training stopped. "
                         f"The last good checkpoint is {ckpt_path if ckpt_path.exists() else 'none (first epoch)'}; "
                         "lower train.lr or check the data")
    lr = state.optimizer.param_groups[0]["lr"]
    clips_per_s = progress.update(epoch * steps + step, epoch, state.cfg["train"]["epochs"], mean_loss, lr)
    state.log({"type": "step", "epoch": epoch, "step": step, "loss": round(mean_loss, 5), "lr": lr, "clips_per_s": round(clips_per_s, 2)})
    if flags[1] > 0:
        if step == steps:  # the epoch's end-of-epoch work belongs to its checkpoint
            end_of_epoch(state, epoch)
            state.save(epoch + 1, 0)
        else:
            state.save(epoch, step)
        progress.close()
        if state.is_main:
            command = state.resume_command or f"python train.py --resume {state.out / 'ckpt.pt'}"
            print(f"stopped at epoch {epoch + 1} step {step}/{steps}; checkpoint {state.out / 'ckpt.pt'}. "
                  f"Continue with: {command}", file=sys.stderr)
        state.log({"type": "interrupted", "epoch": epoch, "step": step})
        sys.exit(130)


def final_evaluation(state: Run) -> dict:
    """Known and Unknown on both val sets, with the averaged weights where the run averages them
    (train.weight_averaging); results.json and the table (main process)."""
    note = weight_average_note(state.cfg, state.weight_average, state.cfg["train"]["epochs"])
    if state.weight_average:
        load_model_state(unwrap(state.model), state.weight_average["model"], "the weight average")
    if note and state.is_main:
        print(f"evaluating {note}", file=sys.stderr)
    result = evaluate_direction(state.model, state.cfg, state.val_videos, state.video_root, state.device, state.rank,
                                state.world, state.backend, progress=state.is_main, frame_cache=state.frame_cache)
    result["checkpoint"] = str(state.out / "ckpt.pt")
    result["train_decode_failures"] = state.decode_failures
    if state.is_main:
        state.log({"type": "eval", **{k: v for k, v in result.items() if k != "predictions"}})
        (state.out / "results.json").write_text(results_json(result) + "\n")
        print("\n" + format_direction(result))
        print(f"videos that failed to decode during training: {state.decode_failures}")
    return result


if __name__ == "__main__":
    main()
