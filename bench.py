"""Throughput: the training step, the data pipeline, and both together. One JSON line per configuration.

    python bench.py --model vit                                   # training step on synthetic uint8 input
    python bench.py --model vit --splits splits/synta --what step,data,both
    python bench.py --suite gpu                                   # the README's GPU table (< 5 min on one H100/H200)

`step`  times forward + backward + optimizer on a synthetic uint8 batch already on the device (the full
        model, text tower included where there is one), and reports frames/s, model FLOPs utilisation
        against a bf16 (CUDA) / fp32 (CPU) matmul peak measured in the same run, and peak memory. FLOPs
        are those of the operators that run, so recomputation (checkpointing, reversible stages) counts.
`data`  times the project's loader alone on real video files (clips/s, and per worker).
`both`  times the training loop fed by the loader: what a real run gets.
`--reference` adds the OpenAI-CLIP module layout the published X-CLIP / ViFi-CLIP / EZ-CLIP code trains
(nn.MultiheadAttention on sequence-first tensors, fp16 autocast with a grad scaler), for comparison.
"""
import argparse
import json
import os
import resource
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count, shape_wrapper

from data.hierarchy import load_hierarchy
from data.loader import TrainSampler, VideoDataset, load_videos, make_loader
from evaluate import autocast, pick_device, resolve_data
from models import apply_override, build_model, check_config, list_models, load_recipe, parse_override
from train import compute_loss, make_optimizer, optimizer_step

# (model, torch.compile) pairs of `--suite gpu`: every model at 8 x 224, X-CLIP and ViFi-CLIP also compiled
GPU_SUITE = [("xclip", False), ("xclip", True), ("vificlip", False), ("vificlip", True), ("actionclip", False),
             ("ezclip", False), ("froster", False), ("aim", False), ("uniformerv2", False), ("vit", False),
             ("timesformer", False), ("c2d", False), ("i3d", False), ("x3d", False), ("slowfast", False),
             ("mvitv2", False), ("revmvit", False)]


# ---------------------------------------------------------------------------------------------
# the reference: OpenAI CLIP's ViT layout as the published video-CLIP repositories train it


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ReferenceBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)))

    def forward(self, x):  # x: [L, N, D]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ReferenceVideoViT(nn.Module):
    """Per-frame OpenAI-layout ViT, frame-averaged, linear head (ViFi-CLIP's visual side)."""

    def __init__(self, num_classes, size=224, patch=16, width=768, layers=12, heads=12, embed=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((size // patch) ** 2 + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.resblocks = nn.Sequential(*[ReferenceBlock(width, heads) for _ in range(layers)])
        self.proj = nn.Parameter(torch.randn(width, embed) * width**-0.5)
        self.head = nn.Linear(embed, num_classes)

    def forward(self, video):  # uint8 [B, T, 3, H, W]
        b, t = video.shape[:2]
        x = self.conv1(video.flatten(0, 1).float() / 255 - 0.5).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(len(x), 1, -1).to(x.dtype), x], 1) + self.positional_embedding
        x = self.resblocks(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.head((self.ln_post(x[:, 0]) @ self.proj).view(b, t, -1).mean(1))


# ---------------------------------------------------------------------------------------------
# measurements


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_SDPA_FLOPS = {  # torch counts the CUDA attention kernels itself, not the CPU one
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


class FlopCounter(TorchDispatchMode):
    """Sums torch's FLOP formulas over the operators that run. Unlike FlopCounterMode it does not track
    modules, whose hooks break on custom autograd Functions (Rev-MViT's reversible stages)."""

    def __init__(self):
        super().__init__()
        self.formulas = {**flop_registry, **{op: shape_wrapper(f) for op, f in CPU_SDPA_FLOPS.items()}}
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(model, clips, labels) -> int:
    """FLOPs of one forward + backward, counted from the operators that actually run."""
    with FlopCounter() as counter:
        loss, _ = compute_loss(model, clips, labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.total


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device) -> float:
    """FLOP/s of a large bf16 (CUDA) or fp32 (CPU) matmul: the ceiling MFU is measured against."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = (50 if device.type == "cuda" else 5), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def peak_memory_gb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS


def timed_steps(step_fn, steps: int, warmup: int, device) -> float:
    """Median seconds per call of step_fn over `steps` timed calls."""
    for _ in range(warmup):
        step_fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step_fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def make_step(model, optimizer, scaler, precision, device, batch_iter):
    def step():
        clips, labels = next(batch_iter)
        with autocast(device, precision):
            loss, _ = compute_loss(model, clips, labels)
        scaler.scale(loss).backward()
        optimizer_step(model, optimizer, scaler, grad_clip=0)
    return step


def synthetic_batches(cfg, batch, num_classes, device):
    s, t = cfg["input"]["size"], cfg["input"]["frames"]
    clips = torch.randint(0, 256, (batch, t, 3, s, s), dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    while True:
        yield clips, labels


def loader_batches(cfg, splits, root, batch, workers, backend, device):
    videos = load_videos(splits, f"train_set{cfg['train_set']}", cfg["dataset"])
    dataset = VideoDataset(videos, root, "coarse", cfg, train=True, backend=backend)
    sampler = TrainSampler(len(dataset), batch, 1)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        for clips, labels, _, _ in make_loader(dataset, batch, sampler, workers, device.type == "cuda"):
            yield clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        epoch += 1


# ---------------------------------------------------------------------------------------------


def setup(name, args, device):
    """-> (cfg, model, optimizer, scaler, precision) for a model of the repo or the reference."""
    reference = name == "reference"
    cfg = load_recipe("vit", args.data, tiny=args.tiny) if reference else load_recipe(name, args.data, tiny=args.tiny)
    if args.frames:
        cfg["input"]["frames"] = args.frames
    for text in args.set:
        apply_override(cfg, *parse_override(text))
    check_config(cfg)
    cfg.update(dataset=args.data, task="coarse", train_set=1, pretrained="none")
    if "teacher" in cfg["model"]:  # FROSTER: a frozen copy of the student costs the same as CLIP's weights
        cfg["model"]["teacher"] = "none"
    classes = load_hierarchy(args.data).coarse_names
    if reference:
        m = cfg["model"]
        size = cfg["input"]["size"]
        model = ReferenceVideoViT(len(classes), size, m.get("patch_size", 16), m.get("width", 768), m.get("layers", 12), m.get("heads", 12), m.get("output_dim", 512))
        precision = "fp16"
    else:
        with torch.device(device):  # initialise on the device: much faster than on the CPU for ViT-B
            model = build_model(cfg, classes)
        precision = cfg["train"]["precision"]
    model.to(device).train()
    if device.type != "cuda":
        precision = "fp32"
    cfg["train"]["lr"] = 1e-5
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5) if reference else make_optimizer(model, cfg["train"], device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    return cfg, model, optimizer, scaler, precision


def bench_model(name, args, device, peak, compile_model=False):
    cfg, model, optimizer, scaler, precision = setup(name, args, device)
    batch, frames = args.batch_size, cfg["input"]["frames"]
    record = {"model": name, "frames": frames, "size": cfg["input"]["size"], "batch": batch, "device": device_name(device),
              "precision": precision, "compile": compile_model}
    lines = []
    classes = len(load_hierarchy(args.data).coarse_names)
    if "step" in args.what:
        batches = synthetic_batches(cfg, batch, classes, device)
        clips, labels = next(batches)
        with autocast(device, precision):
            flops = count_flops(model, clips, labels)
        run_model = torch.compile(model) if compile_model else model
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed_steps(make_step(run_model, optimizer, scaler, precision, device, batches), args.steps, args.warmup, device)
        lines.append({**record, "what": "step", "step_ms": round(1000 * seconds, 2), "frames_per_s": round(batch * frames / seconds, 1),
                      "tflop_per_step": round(flops / 1e12, 4), "tflops": round(flops / seconds / 1e12, 2),
                      "mfu": round(flops / seconds / peak, 4), "peak_mem_gb": round(peak_memory_gb(device), 2)})
    if ("data" in args.what or "both" in args.what) and name != "reference":
        cfg.update(dataset=args.data, train_set=1)
        splits, root = resolve_data(cfg, args.splits, args.root)
        workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
        if "data" in args.what:
            batches = loader_batches(cfg, splits, root, batch, workers, args.backend, device)
            seconds = timed_steps(lambda: next(batches), args.steps, args.warmup, device)
            lines.append({**record, "what": "data", "workers": workers, "clips_per_s": round(batch / seconds, 1),
                          "frames_per_s": round(batch * frames / seconds, 1),
                          "clips_per_s_per_worker": round(batch / seconds / max(1, workers), 2)})
        if "both" in args.what:
            batches = loader_batches(cfg, splits, root, batch, workers, args.backend, device)
            run_model = torch.compile(model) if compile_model else model
            seconds = timed_steps(make_step(run_model, optimizer, scaler, precision, device, batches), args.steps, args.warmup, device)
            lines.append({**record, "what": "both", "workers": workers, "step_ms": round(1000 * seconds, 2),
                          "frames_per_s": round(batch * frames / seconds, 1)})
    return lines


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help=f"any of: {', '.join(list_models())}, reference (repeatable)")
    p.add_argument("--suite", choices=["gpu"], help="gpu: the README table, step at 8x224 for the CLIP-family models and the reference")
    p.add_argument("--reference", action="store_true", help="also time the OpenAI-layout reference tower")
    p.add_argument("--what", default="step", help="comma list of step, data, both")
    p.add_argument("--data", default="k400ta", help="dataset whose class count / split files are used")
    p.add_argument("--splits", help="prepared split folder (for data / both)")
    p.add_argument("--root", help="video root (default: the one recorded with the splits)")
    p.add_argument("--frames", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int)
    p.add_argument("--backend", default="decord", choices=["decord", "pyav"])
    p.add_argument("--tiny", action="store_true", help="the recipes' CPU-sized variants")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device")
    p.add_argument("--json", help="also append the JSON lines to this file")
    args = p.parse_args(argv)
    args.what = set(args.what.split(","))
    if not args.what <= {"step", "data", "both"}:
        raise SystemExit(f"error: --what takes step, data, both; got {','.join(sorted(args.what))}")
    if args.what & {"data", "both"} and not args.splits:
        raise SystemExit("error: --what data/both read real videos: give --splits (a prepared split folder)")
    runs = [(m, args.compile) for m in args.model or []]
    if args.suite == "gpu":
        runs = [("reference", False)] + [(m, c) for m, c in GPU_SUITE if m in list_models()]
        args.frames = args.frames or 8
    elif args.reference:
        runs = [("reference", False)] + runs
    if not runs:
        raise SystemExit("error: give --model NAME (repeatable) or --suite gpu")
    for n, _ in runs:
        if n != "reference" and n not in list_models():
            raise SystemExit(f"error: unknown model '{n}'; choose one of: {', '.join(list_models())}, reference")
    device = pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    peak = matmul_peak(device)
    print(json.dumps({"what": "matmul_peak", "device": device_name(device), "tflops": round(peak / 1e12, 2)}), flush=True)
    results = []
    for name, compile_model in runs:
        for line in bench_model(name, args, device, peak, compile_model):
            results.append(line)
            print(json.dumps(line), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(line) + "\n")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.suite == "gpu":
        ref = next(r for r in results if r["model"] == "reference")
        print(f"\n{device_name(device)}, batch {args.batch_size} x {args.frames} frames, 224 px, fwd+bwd+AdamW; "
              f"{'bf16' if device.type == 'cuda' else 'fp32'} matmul peak measured {peak / 1e12:.1f} TFLOP/s")
        print("| model | compiled | frames/s | x reference | MFU | peak GiB |\n|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['model']} | {'yes' if r['compile'] else 'no'} | {r['frames_per_s']:.0f} | "
                  f"{r['frames_per_s'] / ref['frames_per_s']:.2f} | {100 * r['mfu']:.0f}% | {r['peak_mem_gb']:.1f} |")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
