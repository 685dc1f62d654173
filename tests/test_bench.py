import json

from bench import ReferenceVideoViT, main as bench


def test_bench_prints_step_data_and_both_lines(synta_tiny, capsys):
    _, splits = synta_tiny
    results = bench(["--model", "vit", "--reference", "--tiny", "--data", "synta", "--splits", str(splits),
                     "--what", "step,data,both", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--workers", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines[0]["what"] == "matmul_peak" and lines[0]["tflops"] > 0
    assert [(r["model"], r["what"]) for r in results] == [("reference", "step"), ("vit", "step"), ("vit", "data"), ("vit", "both")]
    for r in results:
        assert r["frames_per_s"] > 0
    step = results[1]
    assert step["tflop_per_step"] > 0 and 0 < step["mfu"] < 1 and step["peak_mem_gb"] > 0
    assert results[2]["clips_per_s"] > 0 and results[2]["workers"] == 1


def test_flop_count_of_reference_tower_matches_the_formula():
    import torch
    from bench import count_flops

    model = ReferenceVideoViT(10, size=32, patch=8, width=64, layers=2, heads=2, embed=32)
    clips = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    flops = count_flops(model, clips, torch.tensor([0, 1]))
    n, L, d = 2 * 3, 17, 64  # frames, tokens, width
    per_block = 2 * n * L * (3 * d * d + d * d + 8 * d * d) + 2 * 2 * n * L * L * d
    forward = 2 * per_block + 2 * n * 16 * (3 * 64) * d + 2 * n * d * 32 + 2 * 2 * 32 * 10
    assert 2.8 * forward < flops < 3.2 * forward  # backward costs about twice the forward


def test_flops_are_counted_through_custom_autograd_functions():
    """Rev-MViT's reversible stages are a custom autograd.Function; the counter must not trip on them."""
    import torch
    from bench import count_flops
    from models import build_model, load_recipe

    cfg = load_recipe("revmvit", "synta", tiny=True)
    model = build_model(cfg, [str(i) for i in range(5)])
    clips = torch.randint(0, 256, (2, cfg["input"]["frames"], 3, 32, 32), dtype=torch.uint8)
    assert count_flops(model, clips, torch.tensor([0, 1])) > 0
