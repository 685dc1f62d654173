"""Train a model on one set of a benchmark dataset, then test it on Known and Unknown context.

    python train.py --model vit --data synta --train-set 1
    python train.py --model vit --data synta --train-set 2 --set train.lr=3e-5
    torchrun --nproc_per_node 8 train.py --model timesformer --data k400ta
    python train.py --resume --out runs/vit_synta_coarse_set1        # after an interruption
    python train.py                                                  # the main job (below)

The main job, `python train.py` with no model or dataset: Syn-TA's small profile is generated once
(cache/synta_small_<appearance>, from data/synta.py), a small 3D CNN (models/i3d_small.yaml) is trained
from scratch on set 1 and on set 2, and the two-direction Known / Unknown / D_abs / HM table is printed.

Defaults come from the model's recipe (models/<model>.yaml and its section for the dataset); the
flags and --set KEY=VALUE override them. Each epoch writes <out>/ckpt.pt atomically; Ctrl-C saves
one at the next step and stops; --resume continues exactly where it stopped.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from data.hierarchy import DATASETS, check_dataset, load_hierarchy
from data.loader import TrainSampler, VideoDataset, flip_allowed, load_videos, make_loader
from evaluate import (
    autocast, average_directions, evaluate_direction, format_average, format_direction, git_commit, init_distributed,
    load_checkpoint, load_model_state, pick_device, resolve_data, unwrap,
)
from models import apply_override, build_model, check_model, list_models, load_recipe, parse_override

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
    p.add_argument("--model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--data", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--train-set", type=int, choices=[1, 2], default=1)
    p.add_argument("--task", choices=["coarse", "fine"], default="coarse")
    p.add_argument("--splits", help="prepared split folder (default: splits/<data>)")
    p.add_argument("--root", help="video root (default: the one recorded with the splits)")
    p.add_argument("--out", help="output folder (default: runs/<model>_<data>_<task>_set<N>)")
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
    p.add_argument("--device")
    p.add_argument("--log-every", type=int, default=10, help="optimizer steps between log lines")
    p.add_argument("--appearance", choices=["coupled", "shared"], default="coupled",
                   help="main job only: Syn-TA appearance (coupled: set-specific shapes and backgrounds, as the benchmark)")
    return p.parse_args(argv)


def make_config(args) -> dict:
    if not args.model or not args.data:
        raise SystemExit("error: give --model and --data (e.g. python train.py --model vit --data synta)")
    check_model(args.model)
    check_dataset(args.data)
    cfg = load_recipe(args.model, args.data, tiny=args.tiny, task=args.task)
    for flag, keys in FLAG_OVERRIDES.items():
        if getattr(args, flag) is not None:
            apply_override(cfg, list(keys), getattr(args, flag))
    for text in args.set:
        apply_override(cfg, *parse_override(text))
    if args.compile:
        cfg["train"]["compile"] = True
    cfg.update(dataset=args.data, task=args.task, train_set=args.train_set, splits=str(Path(args.splits or f"splits/{args.data}").resolve()))
    return cfg


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


def lr_factor(step: int, total: int, warmup: int, start_factor: float, min_ratio: float) -> float:
    """Linear warmup from start_factor, then cosine down to min_ratio (per optimizer step)."""
    if step < warmup:
        return start_factor + (1 - start_factor) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


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


def compute_loss(model, clips, labels, label_smoothing: float = 0.0):
    """Cross-entropy of the model's logits (labels: class ids or soft targets) plus any loss the model
    adds itself -> (loss, logits)."""
    out = model(clips)
    logits = out["logits"] if isinstance(out, dict) else out
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if isinstance(out, dict) and "aux_loss" in out:
        loss = loss + out["aux_loss"]
    return loss, logits


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
    """One line per `log_every` steps in logs; a live bar with ETA on a terminal."""

    def __init__(self, total_steps: int, done: int, enabled: bool):
        self.total, self.start_done, self.enabled = total_steps, done, enabled
        self.t0, self.tty = time.time(), sys.stderr.isatty()

    def update(self, done: int, epoch: int, epochs: int, loss: float, lr: float, clips_per_s: float):
        if not self.enabled:
            return
        elapsed = time.time() - self.t0
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0
        eta = (self.total - done) / rate if rate > 0 else 0
        frac = done / self.total
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = (f"epoch {epoch + 1}/{epochs} [{bar}] {done}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                f"{clips_per_s:.1f} clips/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self):
        if self.enabled and self.tty:
            print(file=sys.stderr)


def main(argv=None):
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    args = parse_args(argv)
    try:
        if not (args.model or args.data or args.resume):
            return main_job(args)
        return run(args)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


MAIN_JOB_MODEL = "i3d_small"


def main_job(args) -> dict:
    """Generate (once) the small Syn-TA profile, train the small model on each set, print the table."""
    from data.prepare import prepare
    from data.synta import PROFILES, generate

    root = Path("cache") / f"synta_small_{args.appearance}"
    print(f"main job: Syn-TA small profile ({args.appearance} appearance) in {root}, {MAIN_JOB_MODEL} from scratch, "
          "both directions", file=sys.stderr)
    generate(root, **PROFILES["small"], appearance=args.appearance, progress=sys.stderr.isatty())
    splits = root / "splits"
    if not (splits / "dataset.yaml").is_file():
        prepare("synta", root, splits)
    directions = []
    for s in (1, 2):
        out = Path(args.out or "runs") / f"main_job_{args.appearance}" / f"set{s}"
        if (out / "ckpt.pt").is_file():  # finished runs are only re-evaluated; interrupted ones continue
            argv = ["--resume", "--out", str(out)]
        else:
            argv = ["--model", MAIN_JOB_MODEL, "--data", "synta", "--splits", str(splits), "--train-set", str(s), "--out", str(out)]
            argv += ["--tiny"] if args.tiny else []
        argv += ["--workers", str(args.workers)] if args.workers is not None else []
        directions.append(run(parse_args(argv + ["--backend", args.backend])))
    summary = {"directions": directions, "average": average_directions([d["top1"] for d in directions])}
    print("\n" + format_average(directions, summary["average"]))
    return summary


def run(args):
    """Train, checkpoint every epoch, evaluate both val sets; returns the result dict."""
    rank, world, local_rank = init_distributed()
    device = pick_device(args.device, local_rank)
    is_main = rank == 0

    ckpt = None
    if args.resume:
        resume_path = Path(args.resume) if isinstance(args.resume, str) else None
        if resume_path is None:
            if not args.out and not (args.model and args.data):
                raise SystemExit("error: --resume needs --out DIR of the run (or the path of its ckpt.pt)")
            resume_path = Path(args.out or f"runs/{args.model}_{args.data}_{args.task}_set{args.train_set}") / "ckpt.pt"
        ckpt = load_checkpoint(resume_path)
        cfg = ckpt["config"]
        for name, given in (("model", args.model), ("data", args.data)):
            recorded = cfg["model_name"] if name == "model" else cfg["dataset"]
            if given and given != recorded:
                raise SystemExit(f"error: {resume_path} is a run of --{name} {recorded}, not {given}")
        if args.workers is not None:
            cfg["train"]["workers"] = args.workers
        out = resume_path.parent
    else:
        cfg = make_config(args)
        out = Path(args.out or f"runs/{cfg['model_name']}_{cfg['dataset']}_{cfg['task']}_set{cfg['train_set']}")
        if (out / "ckpt.pt").exists():
            raise SystemExit(f"error: {out} already holds a run; continue it with --resume or choose another --out")
    ckpt_path = out / "ckpt.pt"
    tc = cfg["train"]
    precision = tc["precision"] if device.type == "cuda" else "fp32"

    splits_dir, video_root = resolve_data(cfg, None if ckpt else args.splits, args.root)
    hierarchy = load_hierarchy(cfg["dataset"])
    class_names = hierarchy.class_names(cfg["task"], cfg["train_set"])
    videos = load_videos(splits_dir, f"train_set{cfg['train_set']}", cfg["dataset"])

    micro_batch, rest = divmod(tc["batch_size"], world * tc["accum_steps"])
    if micro_batch == 0 or rest:
        raise SystemExit(f"error: train.batch_size {tc['batch_size']} must be a multiple of processes x accum_steps "
                         f"({world} x {tc['accum_steps']})")
    sampler = TrainSampler(len(videos), micro_batch, tc["accum_steps"], rank, world, tc["seed"])
    steps_per_epoch = sampler.steps_per_epoch()
    if steps_per_epoch == 0:
        raise SystemExit(f"error: train_set{cfg['train_set']} has {len(videos)} videos, fewer than one batch of "
                         f"{tc['batch_size']}; lower --batch-size")
    total_steps = tc["epochs"] * steps_per_epoch

    torch.manual_seed(tc["seed"])
    model = build_model(cfg if ckpt is None else {**cfg, "pretrained": "none"}, class_names).to(device)
    if cfg["task"] == "fine" and not hasattr(model, "set_class_names"):
        raise SystemExit(f"error: the fine task needs a text model; {cfg['model_name']} is a classifier with fixed classes")
    optimizer = make_optimizer(model, tc, device)
    warmup = round(tc["warmup_epochs"] * steps_per_epoch)
    min_ratio = tc["min_lr"] / tc["lr"] if tc["lr"] else 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, tc["warmup_start_factor"], min_ratio))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    start_epoch, start_step = 0, 0
    if ckpt:
        load_model_state(model, ckpt["model"], str(ckpt_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_step = ckpt["epoch"], ckpt["step_in_epoch"]
        set_rng_state(ckpt["rng"])
    else:
        torch.manual_seed(tc["seed"] + rank)

    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if tc.get("compile"):
        train_model = torch.compile(train_model)

    dataset = VideoDataset(videos, video_root, cfg["task"], cfg, train=True, seed=tc["seed"], backend=args.backend,
                           flip=flip_allowed(cfg["dataset"], cfg["task"]))
    workers = min(tc["workers"], os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.jsonl", "a") if is_main else None

    def log(record):
        if log_file:
            log_file.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")
            log_file.flush()

    def checkpoint(epoch, step_in_epoch):
        if is_main:
            save_checkpoint(ckpt_path, model=unwrap(model).state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), epoch=epoch,
                            step_in_epoch=step_in_epoch, rng=rng_state(), config=cfg, git=git_commit())
        if world > 1:
            dist.barrier()

    stop = {"requested": False}

    def on_signal(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        if is_main:
            print("\nstopping: a checkpoint is written after this step (press Ctrl-C again to abort without one)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    interrupt_at = int(os.environ.get("MT_INTERRUPT_AT_STEP", -1))  # tests: raise a real SIGINT at this step

    if is_main and ckpt is None:
        print(f"{cfg['model_name']} on {cfg['dataset']} set {cfg['train_set']} ({cfg['task']}): {len(videos)} videos, "
              f"{len(class_names)} classes, {tc['epochs']} epochs x {steps_per_epoch} steps of {tc['batch_size']} clips, "
              f"{world} process(es) on {device}, {precision}; writing to {out}", file=sys.stderr)
        log({"type": "config", "config": cfg, "git": git_commit(), "world": world})
    progress = Progress(total_steps, start_epoch * steps_per_epoch + start_step, is_main)
    failures_total = 0
    bad_step = torch.tensor(-1, device=device)  # first optimizer step with a non-finite loss, kept on the device

    for epoch in range(start_epoch, tc["epochs"]):
        skip = start_step if epoch == start_epoch else 0
        sampler.set_epoch(epoch, skip * tc["accum_steps"])
        dataset.set_epoch(epoch)
        loader = make_loader(dataset, micro_batch, sampler, workers, device.type == "cuda")
        train_model.train()
        step = skip
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen, t_last, clips_since = 0, time.time(), 0
        for i, (clips, labels, _, failures) in enumerate(loader):
            failures_total += failures
            clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            targets = labels
            if tc["mixup"] > 0 or tc["cutmix"] > 0:
                mix_rng = np.random.default_rng([tc["seed"], epoch, skip * tc["accum_steps"] + i, rank])
                clips, targets = mix_batch(clips, labels, len(class_names), tc, mix_rng)
            last_micro = (i + 1) % tc["accum_steps"] == 0
            sync = train_model.no_sync() if world > 1 and not last_micro and hasattr(train_model, "no_sync") else contextlib.nullcontext()
            with sync, autocast(device, precision):
                loss, logits = compute_loss(train_model, clips, targets, tc["label_smoothing"])
            scaler.scale(loss / tc["accum_steps"]).backward()
            loss_sum += loss.detach()
            correct += (logits.argmax(-1) == labels).sum()
            seen += len(labels)
            clips_since += len(labels) * world
            if not last_micro:
                continue
            optimizer_step(model, optimizer, scaler, tc["grad_clip"])
            scheduler.step()
            global_step = epoch * steps_per_epoch + step
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), torch.tensor(global_step, device=device), bad_step)
            step += 1
            if global_step + 1 == interrupt_at:
                signal.raise_signal(signal.SIGINT)
            check_now = step % args.log_every == 0 or step == steps_per_epoch or (world == 1 and stop["requested"])
            if not check_now:
                continue
            flags = torch.stack([bad_step.float(), torch.tensor(float(stop["requested"]), device=device)])
            if world > 1:
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            if flags[0] >= 0:
                progress.close()
                bad = int(flags[0])
                raise SystemExit(f"error: non-finite loss at epoch {bad // steps_per_epoch + 1}, step {bad % steps_per_epoch + 1}; training stopped. "
                                 f"The last good checkpoint is {ckpt_path if ckpt_path.exists() else 'none (first epoch)'}; "
                                 "lower train.lr or check the data")
            now = time.time()
            rate = clips_since / max(now - t_last, 1e-9)
            t_last, clips_since = now, 0
            mean_loss = loss_sum.item() / max(1, seen / micro_batch)
            lr = optimizer.param_groups[0]["lr"]
            progress.update(epoch * steps_per_epoch + step, epoch, tc["epochs"], mean_loss, lr, rate)
            log({"type": "step", "epoch": epoch, "step": step, "loss": round(mean_loss, 5), "lr": lr, "clips_per_s": round(rate, 2)})
            if flags[1] > 0:
                checkpoint(*((epoch + 1, 0) if step == steps_per_epoch else (epoch, step)))
                progress.close()
                if is_main:
                    print(f"stopped at epoch {epoch + 1} step {step}/{steps_per_epoch}; checkpoint {ckpt_path}. "
                          f"Continue with: python train.py --resume {ckpt_path}", file=sys.stderr)
                log({"type": "interrupted", "epoch": epoch, "step": step})
                sys.exit(130)
        train_loss = loss_sum.item() / max(1, seen / micro_batch)
        train_acc = 100.0 * correct.item() / max(1, seen)
        checkpoint(epoch + 1, 0)
        log({"type": "epoch", "epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_top1": round(train_acc, 2),
             "decode_failures": failures_total})
    progress.close()
    if world > 1:
        counts = torch.tensor(float(failures_total), device=device)
        dist.all_reduce(counts)
        failures_total = int(counts.item())

    result = evaluate_direction(model, cfg, splits_dir, video_root, device, rank, world, args.backend, progress=is_main)
    result["checkpoint"] = str(ckpt_path)
    result["train_decode_failures"] = failures_total
    if is_main:
        log({"type": "eval", **result})
        (out / "results.json").write_text(json.dumps(result, indent=1))
        print("\n" + format_direction(result))
        print(f"videos that failed to decode during training: {failures_total}")
    if world > 1:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
