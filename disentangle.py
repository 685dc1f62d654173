"""Disentangling coarse and fine motion: the study's coarse-to-fine method, for any model, against its base.

    python disentangle.py --model i3d_small --data synta --splits cache/synta_small_coupled/splits
    python disentangle.py --model x3d --data ssv2ta --train-set 1 --seeds 0,1,2 --json ssv2.json
    python disentangle.py --experiment --json docs/disentangle.json --plot docs/disentangle.png   # the README's

The study (arXiv 2508.00085) reports that "disentangling coarse and fine motions can improve recognition
in temporally challenging datasets", with a residual design on EZ-CLIP that "reliably corrects the base
model's mistakes". Its architecture, losses and numbers are not public (the official repository has no
code for it), so this is our reading of it, for any model that follows the contract of models/:

    z   = model.forward_features(clips)      the model's pooled video representation [B, D]
    z_c = z + r_c(z)                         the coarse representation
    z_f = z_c + r_f(z)                       the fine one: the coarse one plus what only fine classes need
    coarse logits = the model's own head on z_c (text models: z_c against the coarse class texts)
    fine logits   = a new linear head on z_f (text models: z_f against the training set's fine class texts)
    loss          = CE(coarse) + lambda * CE(fine), with the fine labels of the training set's videos

r_c and r_f are Linear(D, D/4) - GELU - Linear(D/4, D) with the last layer at zero, so at step 0 the
model is exactly the base model (same initial weights, same outputs). D/4 is the bottleneck EZ-CLIP's
adapters use (`--branch-ratio`): a branch costs D^2/2 weights, small beside the backbone and large
enough not to be the bottleneck of the head. The coarse task is tested exactly as train.py tests it,
from z_c (the model's `forward` is the coarse prediction; evaluate.py re-scores these checkpoints too).

Every call trains four variants with the same data order, the same seeds and the same initial backbone
(each run is a train.py run folder: ckpt.pt, log.jsonl, results.json; interrupted runs resume, finished
ones are read back):

    base          the model alone, coarse labels only: train.py's loss
    disentangled  the method above
    multitask     both heads on z, no residual branches (plain multi-task learning: the fine labels alone)
    fine_only     only the fine head on z, fine loss only; the coarse prediction is the parent of the argmax
                  fine class (each coarse class scores its best fine child)

All four read (coarse, fine) label pairs, so no variant flips clips horizontally where fine classes have
a direction (Syn-TA, SSv2-TA): the base run differs from a plain train.py run in that alone. It prints
Known / Unknown / D_abs / HM per direction and averaged as mean +- std over seeds, and, on the Unknown
videos, the base model's mistakes each variant corrects and the new ones it makes, with McNemar's exact
p-value per seed and pooled over seeds. One process runs the runs one after another (--jobs N: N at once).
"""
import argparse
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import train
from data.hierarchy import DATASETS, check_dataset, load_hierarchy
from evaluate import average_directions, load_checkpoint, plot_known_unknown
from models import build_model, check_model, list_models

VARIANTS = ("base", "disentangled", "multitask", "fine_only")
METRICS = ("known", "unknown", "d_abs", "hm")
# Models whose training forward adds a loss of its own, which forward_features does not return: the heads on
# z would silently train without it, so those runs are refused unless it is switched off for every variant.
OWN_LOSS = {"ezclip": "motion_loss", "froster": "distillation_ratio"}
# The README's experiment: generated Syn-TA (small profile), both appearance modes, two families trained from
# scratch, 3 seeds, 4 variants, 2 directions = 96 runs. Epochs: what fits 96 runs in 60 min on a 2-core CPU
# (measured with decoded frames cached and no loader workers: 3.0-3.4 s per i3d_small epoch, 4.3 s per
# x3d_small epoch on 2 threads, fp32 matmul peak 0.16 TFLOP/s).
EXPERIMENT = {"models": {"i3d_small": 8, "x3d_small": 8}, "appearance": ("coupled", "shared"), "seeds": (0, 1, 2)}


# ---------------------------------------------------------------------------------------------
# the method


def branch(width: int, ratio: float) -> nn.Sequential:
    """A residual branch Linear - GELU - Linear whose last layer starts at zero (the branch adds nothing)."""
    hidden = max(1, round(width * ratio))
    layers = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
    nn.init.zeros_(layers[2].weight)
    nn.init.zeros_(layers[2].bias)
    return layers


def coarse_from_fine(fine_logits: torch.Tensor, parents: torch.Tensor, num_coarse: int) -> torch.Tensor:
    """Fine logits [B, F] -> coarse scores [B, C]: each coarse class scores its best fine child (-inf without
    one), so the argmax coarse class is the parent of the argmax fine class."""
    scores = fine_logits.new_full((len(fine_logits), num_coarse), float("-inf"))
    return scores.scatter_reduce(1, parents.expand(len(fine_logits), -1), fine_logits, "amax")


class Disentangled(nn.Module):
    """A model of models/ with a coarse and a fine head (see the module docstring); `variant` one of VARIANTS.
    It follows the same contract: forward(clips) -> coarse logits (in training a dict with "fine_logits"
    and the model's own "aux_loss" where it has one), forward_features -> z_c, forward_head(z_c) -> coarse
    logits.

    placement "inside" (EZ-CLIP only; the study's placement, "beside its adapters"): r_c and r_f act on
    the class token of every frame inside EZ-CLIP's last visual block, beside its Adapter: with x the
    Adapter's input and y its output, c = y + r_c(x) and f = c + r_f(x) each go on through the rest of
    the block (c + MLP(LN(c))), ln_post and the projection, then the frame average: z_c and z_f. The
    branches are as wide as the visual tower; EZ-CLIP's motion loss reads the coarse stream's frames."""

    def __init__(self, model: nn.Module, variant: str, coarse_names: list, fine_names: list, parents: list,
                 branch_ratio: float = 0.25, placement: str = "head"):
        super().__init__()
        self.model, self.variant, self.placement = model, variant, placement
        self.num_features, self.coarse_names, self.num_coarse = model.num_features, list(coarse_names), len(coarse_names)
        self.text = hasattr(model, "class_logits")
        self.fine_names = list(fine_names)
        self.register_buffer("parents", torch.tensor(parents), persistent=False)
        if variant == "disentangled":
            width = model.visual.transformer.width if placement == "inside" else model.num_features
            self.coarse_branch = branch(width, branch_ratio)  # r_c
            self.fine_branch = branch(width, branch_ratio)  # r_f
        if variant != "base" and not self.text:
            self.fine_head = nn.Linear(model.num_features, len(fine_names))
            nn.init.normal_(self.fine_head.weight, std=0.01)  # as the PySlowFast heads (fc_init_std)
            nn.init.zeros_(self.fine_head.bias)

    def representations(self, clips):
        """-> (z_c, z_f, context, the coarse stream's frame features [B, T, D] ("inside") or None)"""
        if self.placement == "inside":
            return self.inside(clips)
        z, context = self.model.forward_features(clips, return_context=True) if self.text else (self.model.forward_features(clips), None)
        if self.variant != "disentangled":
            return z, z, context, None
        z_c = z + self.coarse_branch(z)
        return z_c, z_c + self.fine_branch(z), context, None

    def inside(self, clips):
        """EZ-CLIP's frame features with the branches beside its last visual Adapter (see the class docstring)."""
        block, seen = self.model.visual.transformer.resblocks[-1], {}
        hook = block.Adapter.register_forward_hook(lambda module, args, out: seen.update(x=args[0][:, 0], y=out[:, 0]))
        try:
            frames = self.model.encode_frames(clips)
        finally:
            hook.remove()
        if self.variant != "disentangled":
            return frames.float().mean(1), frames.float().mean(1), None, frames
        c = seen["y"] + self.coarse_branch(seen["x"])
        f = c + self.fine_branch(seen["x"])
        coarse, fine = (self.model.visual.pool((s + block.drop_path(block.mlp(block.ln_2(s)))).unsqueeze(1)).unflatten(0, clips.shape[:2])
                        for s in (c, f))
        return coarse.float().mean(1), fine.float().mean(1), None, coarse

    def forward_features(self, clips, return_context: bool = False):
        z_c, _, context, _ = self.representations(clips)
        return (z_c, context) if return_context else z_c

    def fine_logits(self, z_f, context=None):
        return self.model.class_logits(z_f, self.fine_names, context) if self.text else self.fine_head(z_f)

    def forward_head(self, z_c, context=None):
        if self.variant == "fine_only":
            return coarse_from_fine(self.fine_logits(z_c, context), self.parents, self.num_coarse)
        return self.model.forward_head(z_c, context) if self.text else self.model.forward_head(z_c)

    def forward(self, clips):
        if self.variant == "base":
            return self.model(clips)
        z_c, z_f, context, frames = self.representations(clips)
        fine = self.fine_logits(z_f, context) if self.training or self.variant == "fine_only" else None
        coarse = coarse_from_fine(fine, self.parents, self.num_coarse) if self.variant == "fine_only" else self.forward_head(z_c, context)
        if not self.training:
            return coarse
        out = {"logits": coarse, "fine_logits": fine}
        if frames is not None and self.model.motion_weight:  # EZ-CLIP's own loss, on the coarse stream
            from models.ezclip import motion_loss
            out["aux_loss"] = self.model.motion_weight * motion_loss(frames)
        return out

    def set_class_names(self, names) -> None:
        """The coarse label space (evaluation sets it); only text models can score other classes."""
        if self.text:
            self.model.set_class_names(names)
        elif list(names) != self.coarse_names:
            raise SystemExit(f"error: {type(self.model).__name__} is a classifier with fixed classes ({len(self.coarse_names)} "
                             "coarse classes); only a text model scores other class names")

    def no_weight_decay(self) -> set:
        return {f"model.{n}" for n in self.model.no_weight_decay()} if hasattr(self.model, "no_weight_decay") else set()

    def lr_multipliers(self) -> dict:
        return self.model.lr_multipliers() if hasattr(self.model, "lr_multipliers") else {}


def build_disentangled(cfg: dict, class_names: list) -> Disentangled:
    """train.setup's make_model (and evaluate.py's, for a checkpoint of this script): the model of `cfg`,
    built as train.py builds it (same seed, same initial weights), inside the wrapper its
    cfg["disentangle"] describes; the fine classes are the training set's."""
    settings = cfg["disentangle"]
    if cfg["task"] != "coarse":
        raise SystemExit("error: disentangle.py trains the coarse task (with fine labels as a second target); leave out --task")
    if settings["placement"] == "inside" and cfg["model_name"] != "ezclip":
        raise SystemExit(f"error: --placement inside is EZ-CLIP's (beside its adapters); {cfg['model_name']} takes --placement head")
    own_loss = OWN_LOSS.get(cfg["model_name"])
    if own_loss and cfg["model"][own_loss] and settings["placement"] == "head":
        raise SystemExit(f"error: {cfg['model_name']} adds a loss of its own in training (model.{own_loss}), which the coarse "
                         f"and fine heads on forward_features cannot add; pass --set model.{own_loss}=0 (it then holds for "
                         f"every variant, the base one included){' or --placement inside' * (cfg['model_name'] == 'ezclip')}")
    hierarchy = load_hierarchy(cfg["dataset"])
    model = build_model(cfg, class_names)
    return Disentangled(model, settings["variant"], class_names, hierarchy.fine_names(cfg["train_set"]),
                        hierarchy.coarse_of(cfg["train_set"]), settings["branch_ratio"], settings["placement"])


def loss_fn(model, clips, labels, variant: str, fine_weight: float, label_smoothing: float = 0.0):
    """train.py's Run.loss_fn for `variant`: labels [B, 2] (coarse, fine) -> (loss, coarse logits).
    base: train.py's own loss; fine_only: CE(fine); the others: CE(coarse) + fine_weight * CE(fine); plus the
    model's own loss where the wrapper returns one (EZ-CLIP inside)."""
    if variant == "base":
        return train.compute_loss(model, clips, labels[:, 0], label_smoothing)
    out = model(clips)
    loss = F.cross_entropy(out["fine_logits"].float(), labels[:, 1], label_smoothing=label_smoothing)
    if variant != "fine_only":
        loss = F.cross_entropy(out["logits"].float(), labels[:, 0], label_smoothing=label_smoothing) + fine_weight * loss
    return loss + out.get("aux_loss", 0), out["logits"]


# ---------------------------------------------------------------------------------------------
# statistics


def mcnemar(b: int, c: int) -> float:
    """McNemar's exact test, two-sided: the binomial test of b against b + c discordant pairs at 1/2
    (b: base wrong and the method right, c: base right and the method wrong)."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def discordant(base: dict, method: dict) -> tuple:
    """Per-video predictions of one val split ({"index", "pred", "label"}) of the base model and a method
    -> (b: mistakes of the base the method corrects, c: new mistakes of the method), on the videos both scored."""
    right = [{i: p == y for i, p, y in zip(r["index"], r["pred"], r["label"])} for r in (base, method)]
    both = right[0].keys() & right[1].keys()
    return sum(not right[0][i] and right[1][i] for i in both), sum(right[0][i] and not right[1][i] for i in both)


def mean_std(values: list) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return {"mean": mean, "std": std, "values": values}


# ---------------------------------------------------------------------------------------------
# the runs: each a train.py run folder, trained through train.py's setup -> fit -> final_evaluation

RUN_FLAGS = ("splits", "root", "workers", "backend", "device", "log_every")  # flags a resumed run takes too
NEW_RUN_FLAGS = ("epochs", "batch_size", "lr")


def flags(args, names) -> list:
    return [part for name in names if getattr(args, name) is not None for part in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def run_folder(root, variant: str, seed: int, train_set: int) -> Path:
    return Path(root) / f"{variant}_seed{seed}_set{train_set}"


def run_config(args, variant: str) -> dict:
    """What this script adds to a run's config (stored in its checkpoint: evaluate.py rebuilds the wrapper from it)."""
    return {"disentangle": {"variant": variant, "fine_weight": args.fine_weight, "branch_ratio": args.branch_ratio,
                            "placement": args.placement}}


def run_one(args, variant: str, seed: int, train_set: int, out: Path) -> dict:
    """One run: trained, continued where it stopped, or read back when finished (its results.json); a
    folder holding a run with other settings is refused. -> train.final_evaluation's result."""
    argv = ["--model", args.model, "--data", args.data, "--train-set", str(train_set), "--seed", str(seed), "--out", str(out)]
    argv += flags(args, RUN_FLAGS + NEW_RUN_FLAGS) + ["--tiny"] * args.tiny + ["--cache-frames"] * args.cache_frames
    argv += [f"--set={s}" for s in args.set]
    run_args, config = train.parse_args(argv), run_config(args, variant)
    if (out / "ckpt.pt").is_file():
        train.check_same_settings({**train.make_config(run_args), **config}, load_checkpoint(out / "ckpt.pt", mmap=True)["config"], out)
        results = out / "results.json"
        if results.is_file() and "predictions" in json.loads(results.read_text()):
            return json.loads(results.read_text())
        run_args = train.parse_args(["--resume", "--out", str(out)] + flags(args, RUN_FLAGS) + ["--cache-frames"] * args.cache_frames)
    state = train.setup(run_args, make_model=build_disentangled, label="both", config=config)
    state.loss_fn = partial(loss_fn, variant=variant, fine_weight=args.fine_weight,
                            label_smoothing=state.cfg["train"]["label_smoothing"])
    state.resume_command = "the same disentangle.py command (it continues unfinished runs and reads finished ones)"
    train.fit(state)
    result = train.final_evaluation(state)
    if state.log_file:
        state.log_file.close()
    return result


def run_in_child(args, cell: tuple, out: Path, threads: int) -> None:
    """A run in a process of its own (--jobs): its output goes to <out>.log."""
    torch.set_num_threads(threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.log", "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        run_one(args, *cell, out)


def grid(args, root: Path) -> dict:
    """Every (variant, seed, training set) run under `root`, one after another or --jobs at a time
    -> {(variant, seed, train_set): result}."""
    cells = [(v, seed, s) for seed in args.seeds for s in args.train_sets for v in args.variants]
    if args.jobs == 1:
        return {cell: run_one(args, *cell, run_folder(root, *cell)) for cell in cells}
    context, running, failed = multiprocessing.get_context("spawn"), {}, None
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    todo = [c for c in cells if not (run_folder(root, *c) / "results.json").is_file()]
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))
    try:
        while (todo and not failed) or running:
            while todo and not failed and len(running) < args.jobs:
                cell = todo.pop(0)
                running[cell] = context.Process(target=run_in_child, args=(args, cell, run_folder(root, *cell), threads))
                running[cell].start()
                print(f"started {run_folder(root, *cell)} (output in {run_folder(root, *cell)}.log)", file=sys.stderr)
            time.sleep(0.2)
            for cell, process in list(running.items()):
                if process.exitcode is None:
                    continue
                del running[cell]
                log = Path(f"{run_folder(root, *cell)}.log").read_text().strip().splitlines() or [""]
                if process.exitcode != 0:
                    failed = failed or f"error: {run_folder(root, *cell)} stopped (exit code {process.exitcode}): {log[-1]}"
                else:
                    print(f"finished {run_folder(root, *cell)}", file=sys.stderr)
    except KeyboardInterrupt as stop:  # Ctrl-C reaches every run itself; SIGTERM only this process: pass it on
        for process in running.values():
            if str(stop) == "SIGTERM":
                os.kill(process.pid, signal.SIGINT)
            process.join()
        raise SystemExit("stopped: every unfinished run saved a checkpoint; run the same command again to continue") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        raise SystemExit(failed)
    return {cell: run_one(args, *cell, run_folder(root, *cell)) for cell in cells}  # now all finished: read back


# ---------------------------------------------------------------------------------------------
# the table


def summarise(args, runs: dict, root: Path) -> dict:
    """Mean and std over seeds of Known / Unknown / D_abs / HM per variant, per direction and averaged
    (each seed's two directions averaged as the official tables do, then over seeds), and McNemar's
    test of every variant against the base model on the Unknown videos."""
    table = {}
    for v in args.variants:
        table[v] = {f"set{s}": {m: mean_std([runs[v, seed, s]["top1"][m] for seed in args.seeds]) for m in METRICS}
                    for s in args.train_sets}
        if len(args.train_sets) == 2:
            per_seed = [average_directions([runs[v, seed, s]["top1"] for s in (1, 2)]) for seed in args.seeds]
            table[v]["average"] = {m: mean_std([a[m] for a in per_seed]) for m in METRICS}
    tests = {}
    for v in (v for v in args.variants if v != "base" and "base" in args.variants):
        seeds = []
        for seed in args.seeds:
            directions = {}
            for s in args.train_sets:
                unknown = f"val_set{3 - s}"
                b, c = discordant(runs["base", seed, s]["predictions"][unknown], runs[v, seed, s]["predictions"][unknown])
                directions[f"set{s}"] = {"corrected": b, "new_mistakes": c, "p": mcnemar(b, c)}
            b, c = (sum(d[k] for d in directions.values()) for k in ("corrected", "new_mistakes"))
            seeds.append({"seed": seed, "corrected": b, "new_mistakes": c, "p": mcnemar(b, c), "directions": directions})
        b, c = (sum(d[k] for d in seeds) for k in ("corrected", "new_mistakes"))
        tests[v] = {"seeds": seeds, "pooled": {"corrected": b, "new_mistakes": c, "p": mcnemar(b, c)}}
    return {
        "model": args.model, "dataset": args.data, "splits": args.splits, "seeds": args.seeds, "train_sets": args.train_sets,
        "variants": args.variants, "fine_weight": args.fine_weight, "branch_ratio": args.branch_ratio, "folder": str(root),
        "epochs": args.epochs, "tiny": args.tiny, "set": args.set,
        "runs": [{"variant": v, "seed": seed, "train_set": s, "folder": str(run_folder(root, v, seed, s)),
                  "top1": r["top1"], "mean_class": r["mean_class"]} for (v, seed, s), r in runs.items()],
        "table": table, "mcnemar": tests,
    }


def format_mean_std(x: dict) -> str:
    return f"{x['mean']:.2f}" + ("" if math.isnan(x["std"]) else f" ± {x['std']:.2f}")


def format_summary(summary: dict, title: str = "") -> str:
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [f"{title or summary['model'] + ' | ' + summary['dataset']} | coarse task | top-1 %, mean ± std over seeds {seeds} "
             f"| fine loss weight {summary['fine_weight']}",
             f"{'':18}" + "".join(f"{name:>16}" for name in ("Known", "Unknown", "D_abs", "HM"))]
    parts = [(f"set{s}", f"trained on set {s} (Known: val set {s}, Unknown: val set {3 - s})") for s in summary["train_sets"]]
    for key, heading in parts + [("average", "average of the two directions")] * (len(summary["train_sets"]) == 2):
        lines.append(heading)
        for v in summary["variants"]:
            lines.append(f"  {v:16}" + "".join(f"{format_mean_std(summary['table'][v][key][m]):>16}" for m in METRICS))
    if summary["mcnemar"]:
        lines += ["", "Unknown videos: base mistakes corrected / new mistakes made (both directions), McNemar's exact p",
                  f"{'':18}" + "".join(f"{'seed %d' % s:>20}" for s in summary["seeds"]) + f"{'pooled over seeds':>22}"]
        for v, test in summary["mcnemar"].items():
            cells = [f"{t['corrected']} / {t['new_mistakes']}  p={t['p']:.3f}" for t in test["seeds"] + [test["pooled"]]]
            lines.append(f"  {v:16}" + "".join(f"{c:>20}" for c in cells[:-1]) + f"{cells[-1]:>22}")
    return "\n".join(lines)


def plot_points(summary: dict, group: str) -> list:
    """The points of evaluate.plot_known_unknown for a summary: every variant's two-direction average (one
    direction where only one ran), with mean - std .. mean + std over seeds as its bars."""
    key = "average" if "average" in summary["table"][summary["variants"][0]] else f"set{summary['train_sets'][0]}"
    points = []
    for v in summary["variants"]:
        row = summary["table"][v][key]
        errors = {f"{m}_ci": [row[m]["mean"] - row[m]["std"], row[m]["mean"] + row[m]["std"]]
                  for m in ("known", "unknown") if not math.isnan(row[m]["std"])}
        points.append({"label": v, "group": group, "known": row["known"]["mean"], "unknown": row["unknown"]["mean"], **errors})
    return points


def plot_limit(points: list) -> float:
    """The axes' end in %: the next multiple of 10 above the highest point or bar (at most 100), so that
    CPU-sized runs at 10-40 % are not squeezed into a corner."""
    top = max(max(p.get("known_ci", [0, p["known"]])[1], p.get("unknown_ci", [0, p["unknown"]])[1]) for p in points)
    return min(100, 10 * math.ceil(top / 10 + 0.01))


# ---------------------------------------------------------------------------------------------
# command line


def number_list(text: str, kind=int) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated values, e.g. 0,1,2, got {text!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"one of: {', '.join(list_models())}")
    p.add_argument("--data", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--train-set", type=int, choices=[1, 2], help="one direction only (default: both)")
    p.add_argument("--seeds", type=number_list, help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--variants", type=lambda t: number_list(t, str), help=f"a subset of {','.join(VARIANTS)} (default: all)")
    p.add_argument("--lambda", dest="fine_weight", type=float, default=1.0, help="weight of the fine cross-entropy (default 1)")
    p.add_argument("--branch-ratio", type=float, default=0.25, help="hidden width of r_c and r_f / D (default 0.25)")
    p.add_argument("--placement", default="head", choices=["head", "inside"],
                   help="head: the branches on forward_features (every model); inside: beside EZ-CLIP's last visual Adapter")
    p.add_argument("--splits", help="prepared split folder (default: splits/<data>)")
    p.add_argument("--root", help="video root (default: the one recorded with the splits)")
    p.add_argument("--out", help="folder of the runs (default: runs/disentangle/<model>_<data>; --experiment: runs/disentangle)")
    p.add_argument("--tiny", action="store_true", help="the recipes' CPU-sized variants (tests, smoke runs)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--workers", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe key, for every run")
    p.add_argument("--backend", default="decord", choices=["decord", "pyav"])
    p.add_argument("--cache-frames", action="store_true", help="decode each split once into cache/frames (train.py --cache-frames; "
                   "always on with --experiment)")
    p.add_argument("--device")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process with cores/jobs threads")
    p.add_argument("--json", help="write every number to this file")
    p.add_argument("--plot", help="write the Known-vs-Unknown figure to this PNG (needs matplotlib)")
    g = p.add_argument_group("the README's experiment (generated Syn-TA, both appearance modes, two families)")
    g.add_argument("--experiment", action="store_true",
                   help=f"generate the data if needed and run {', '.join(EXPERIMENT['models'])} x "
                        f"{', '.join(EXPERIMENT['appearance'])} appearance, seeds {','.join(map(str, EXPERIMENT['seeds']))}")
    g.add_argument("--models", type=lambda t: number_list(t, str), help="the experiment's models (default: "
                   f"{','.join(EXPERIMENT['models'])}, at {', '.join(f'{e} epochs' for e in EXPERIMENT['models'].values())})")
    g.add_argument("--appearance", type=lambda t: number_list(t, str), help="the experiment's Syn-TA appearance modes (default coupled,shared)")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args) -> None:
    """Every mistake in the flags, before any data is generated or read."""
    if args.experiment:
        given = [f"--{k.replace('_', '-')}" for k in ("model", "data", "splits", "root") if getattr(args, k)]
        if given:
            raise SystemExit(f"error: {given[0]} does not go with --experiment (its data is the generated Syn-TA); use --models")
        args.models = args.models or list(EXPERIMENT["models"])
        args.cache_frames = True
        args.workers = 0 if args.workers is None else args.workers  # frames come from the cache: a loader process costs more than it saves
        args.appearance = args.appearance or list(EXPERIMENT["appearance"])
        for name in args.models:
            check_model(name)
        odd = [a for a in args.appearance if a not in ("coupled", "shared")]
        if odd:
            raise SystemExit(f"error: --appearance takes coupled and/or shared, got {odd[0]!r}")
    else:
        if args.models or args.appearance:
            raise SystemExit(f"error: {'--models' if args.models else '--appearance'} belongs to --experiment; use --model and --data")
        if not (args.model and args.data):
            raise SystemExit("error: give --model and --data (e.g. --model i3d_small --data synta), or --experiment")
        check_model(args.model)
        check_dataset(args.data)
    args.seeds = args.seeds if args.seeds is not None else list(EXPERIMENT["seeds"])
    args.variants = args.variants or list(VARIANTS)
    args.train_sets = [args.train_set] if args.train_set else [1, 2]
    odd = [v for v in args.variants if v not in VARIANTS]
    if odd:
        raise SystemExit(f"error: --variants: unknown variant {odd[0]!r}; choose from {', '.join(VARIANTS)}")
    if len(set(args.variants)) < len(args.variants) or len(set(args.seeds)) < len(args.seeds):
        raise SystemExit("error: --variants and --seeds name each value once")
    if any(not 0 <= s < 2 ** 32 for s in args.seeds):
        raise SystemExit(f"error: --seeds must be in [0, 2**32), got {args.seeds}")
    if not (0 < args.fine_weight < float("inf")) or not (0 < args.branch_ratio < float("inf")):
        raise SystemExit(f"error: --lambda and --branch-ratio must be > 0, got {args.fine_weight} and {args.branch_ratio}")
    if args.jobs < 1:
        raise SystemExit(f"error: --jobs must be at least 1, got {args.jobs}")
    for flag in ("json", "plot"):
        path = getattr(args, flag)
        if path and (Path(path).is_dir() or not Path(path).resolve().parent.is_dir()):
            raise SystemExit(f"error: --{flag} {path}: give a file in an existing folder")


def experiment(args) -> list:
    """The README's experiment: every model x appearance mode on the generated small Syn-TA (generated and
    prepared once, as the main job's), all variants, seeds and directions -> the summaries."""
    summaries = []
    for appearance in args.appearance:
        splits = train.small_synta(appearance)
        for model in args.models:
            cell = argparse.Namespace(**{**vars(args), "model": model, "data": "synta", "splits": str(splits),
                                         "epochs": args.epochs or EXPERIMENT["models"].get(model)})
            root = Path(args.out or "runs/disentangle") / f"{model}_synta_{appearance}"
            summary = summarise(cell, grid(cell, root), root)
            summaries.append({**summary, "appearance": appearance})
            print("\n" + format_summary(summary, f"{model} | Syn-TA ({appearance} appearance)"), flush=True)
    return summaries


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.experiment:
        summaries = experiment(args)
        points = [p for s in summaries for p in plot_points(s, f"{s['model']}, {s['appearance']} appearance")]
        title = f"generated Syn-TA, mean ± std over seeds {','.join(map(str, args.seeds))}"
    else:
        root = Path(args.out or f"runs/disentangle/{args.model}_{args.data}")
        summaries = [summarise(args, grid(args, root), root)]
        print("\n" + format_summary(summaries[0]))
        points, title = plot_points(summaries[0], f"{args.model} | {args.data}"), None
    if args.json:
        Path(args.json).write_text(json.dumps({"summaries": summaries}, indent=1))
    if args.plot:
        plot_known_unknown(points, args.plot, title, limit=plot_limit(points))
    return {"summaries": summaries}


if __name__ == "__main__":
    main()
