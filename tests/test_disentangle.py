"""disentangle.py: the coarse-to-fine residual method, its ablations, the statistics and a tiny run end to end."""
import json

import pytest
import torch

import disentangle
import evaluate
import train
from conftest import interrupt_after_step, one_line_error, perturb, random_clips, tiny_cfg
from data.hierarchy import load_hierarchy
from models import build_model, check_config

HIERARCHY = load_hierarchy("synta")


def run_cfg(model: str, variant: str, placement: str = "head", **model_args) -> dict:
    cfg = {**tiny_cfg(model, **model_args), "pretrained": "none", "dataset": "synta", "task": "coarse", "train_set": 1}
    return {**cfg, "disentangle": {"variant": variant, "fine_weight": 1.0, "branch_ratio": 0.25, "placement": placement}}


def built(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    return disentangle.build_disentangled(cfg, HIERARCHY.coarse_names)


def clips_and_labels(cfg: dict, batch: int = 4):
    """A random clip batch and (coarse, fine) label pairs of set 1 that agree with the hierarchy."""
    fine = torch.arange(batch) * 7 % len(HIERARCHY.fine_names(1))
    coarse = torch.tensor(HIERARCHY.coarse_of(1))[fine]
    return random_clips(batch, cfg["input"]["frames"], cfg["input"]["size"]), torch.stack([coarse, fine], 1)


@pytest.mark.parametrize("model, placement", [("i3d_small", "head"), ("actionclip", "head"), ("ezclip", "inside")])
def test_with_the_branches_at_zero_the_model_is_the_base_model(model, placement):
    cfg = run_cfg(model, "disentangled", placement)
    torch.manual_seed(0)
    base = build_model(cfg, HIERARCHY.coarse_names)
    wrapper = built(cfg)
    assert all(torch.equal(v, wrapper.model.state_dict()[k]) for k, v in base.state_dict().items())  # same seed, same weights
    perturb(base)  # off the initialisation, so that the outputs mean something; the branches stay at zero
    wrapper.model.load_state_dict(base.state_dict())
    base.eval(), wrapper.eval()
    clips = random_clips(2, cfg["input"]["frames"], cfg["input"]["size"])
    with torch.no_grad():
        expected, got = base(clips), wrapper(clips)
        z = base.forward_features(clips)
        assert torch.allclose(wrapper.forward_features(clips), z, atol=1e-5)
    if placement == "head":
        assert torch.equal(got, expected)
    else:  # the last block's MLP reruns on the class tokens alone: the same numbers up to rounding
        assert torch.allclose(got, expected, atol=1e-4)
    with torch.no_grad():  # a branch off zero changes the output: the comparison above can fail
        wrapper.coarse_branch[2].weight.normal_()
        assert not torch.allclose(wrapper(clips), expected, atol=1e-3)


@pytest.mark.parametrize("model, placement", [("i3d_small", "head"), ("ezclip", "inside")])
def test_gradients_reach_both_branches(model, placement):
    cfg = run_cfg(model, "disentangled", placement)
    wrapper = built(cfg).train()
    clips, labels = clips_and_labels(cfg)
    optimizer = torch.optim.SGD([p for p in wrapper.parameters() if p.requires_grad], lr=0.1)
    branches = (wrapper.coarse_branch, wrapper.fine_branch)
    for step in range(2):
        optimizer.zero_grad()
        loss, logits = disentangle.loss_fn(wrapper, clips, labels, "disentangled", fine_weight=0.5)
        assert logits.shape == (4, len(HIERARCHY.coarse_names)) and torch.isfinite(loss)
        loss.backward()
        for b in branches:
            assert b[2].weight.grad.abs().sum() > 0  # the last layer from step 0
            # the first layer once the last one has left zero (at step 0 no gradient can pass a zero layer)
            assert (b[0].weight.grad.abs().sum() > 0) == (step == 1)
        optimizer.step()
    if model == "i3d_small":
        assert wrapper.fine_head.weight.grad.abs().sum() > 0 and wrapper.model.head.projection.weight.grad.abs().sum() > 0


def test_fine_only_reads_the_coarse_class_as_the_parent_of_the_best_fine_class():
    parents = torch.tensor([2, 0, 2, 1, 0])
    coarse = disentangle.coarse_from_fine(torch.tensor([[1.0, 5.0, 2.0, 0.0, 3.0]]), parents, 4)
    assert coarse.tolist() == [[5.0, 0.0, 2.0, float("-inf")]]  # each coarse class: its best child; class 3 has none
    fine = torch.randn(64, 5)
    assert torch.equal(disentangle.coarse_from_fine(fine, parents, 4).argmax(-1), parents[fine.argmax(-1)])
    cfg = run_cfg("i3d_small", "fine_only")
    wrapper = built(cfg).eval()
    perturb(wrapper)
    clips, _ = clips_and_labels(cfg)
    with torch.no_grad():
        coarse, fine = wrapper(clips), wrapper.fine_logits(wrapper.forward_features(clips))
    assert fine.shape == (4, len(HIERARCHY.fine_names(1)))
    assert torch.equal(coarse.argmax(-1), torch.tensor(HIERARCHY.coarse_of(1))[fine.argmax(-1)])


def test_mcnemar_exact_test_on_hand_made_counts():
    assert disentangle.mcnemar(0, 0) == 1.0
    assert disentangle.mcnemar(5, 0) == pytest.approx(2 / 2 ** 5)  # five discordant pairs, all one way
    assert disentangle.mcnemar(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)  # 0.0386
    assert disentangle.mcnemar(2, 10) == disentangle.mcnemar(10, 2)
    assert disentangle.mcnemar(6, 6) == 1.0 and 0 < disentangle.mcnemar(400, 350) < 0.1
    base = {"index": [0, 1, 2, 3, 5], "pred": [1, 0, 2, 2, 1], "label": [1, 1, 2, 0, 1]}
    method = {"index": [0, 1, 2, 3, 4], "pred": [0, 1, 2, 0, 4], "label": [1, 1, 2, 0, 4]}
    assert disentangle.discordant(base, method) == (2, 1)  # videos 1, 3 corrected; video 0 a new mistake


def tiny_argv(splits, out, *extra):
    return ["--model", "i3d_small", "--data", "synta", "--splits", str(splits), "--out", str(out), "--tiny", "--train-set", "1",
            "--seeds", "0", "--epochs", "1", "--batch-size", "8", "--workers", "0", *extra]


@pytest.fixture(scope="module")
def tiny_runs(synta_tiny, tmp_path_factory):
    """The four variants of i3d_small, one direction, one seed, one epoch -> (splits, folder, argv, summary, printed)."""
    _, splits = synta_tiny
    tmp = tmp_path_factory.mktemp("disentangle")
    argv = tiny_argv(splits, tmp / "runs", "--json", str(tmp / "all.json"), "--plot", str(tmp / "plot.png"))
    import io
    from contextlib import redirect_stdout

    printed = io.StringIO()
    with redirect_stdout(printed):
        summary = disentangle.main(argv)["summaries"][0]
    return splits, tmp, argv, summary, printed.getvalue()


def test_tiny_run_end_to_end(tiny_runs):
    splits, tmp, argv, summary, printed = tiny_runs
    for word in ("Known", "Unknown", "D_abs", "HM", "disentangled", "multitask", "fine_only", "McNemar"):
        assert word in printed
    results = {v: json.loads((tmp / "runs" / f"{v}_seed0_set1" / "results.json").read_text()) for v in disentangle.VARIANTS}
    for v, r in results.items():
        assert summary["table"][v]["set1"]["unknown"]["mean"] == r["top1"]["unknown"] and r["disentangle"]["variant"] == v
        assert len(r["predictions"]["val_set2"]["pred"]) == r["unknown"]["videos"]
    base, method = (results[v]["predictions"]["val_set2"] for v in ("base", "disentangled"))
    corrected = sum(b != y and m == y for b, m, y in zip(base["pred"], method["pred"], base["label"]))
    assert summary["mcnemar"]["disentangled"]["pooled"]["corrected"] == corrected
    assert json.dumps(json.loads((tmp / "all.json").read_text())["summaries"][0]["table"]) == json.dumps(summary["table"])
    assert (tmp / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # evaluate.py rebuilds the wrapper from the checkpoint and scores it as the run did
    ckpt = tmp / "runs" / "fine_only_seed0_set1" / "ckpt.pt"
    rescored = evaluate.main(["--ckpt", str(ckpt), "--workers", "0"])["directions"][0]
    assert rescored["top1"] == results["fine_only"]["top1"]
    # a second call reads the finished runs back; other settings in the same folder, or train.py, are refused
    stamp = ckpt.stat().st_mtime_ns
    again = disentangle.main(argv)["summaries"][0]
    assert json.dumps(again["table"]) == json.dumps(summary["table"]) and ckpt.stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit) as e:
        disentangle.main(argv + ["--lambda", "0.5"])
    one_line_error(e, "holds a run with disentangle.fine_weight=1.0, this command asks for 0.5", "give another --out")
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", "--out", str(ckpt.parent)])
    one_line_error(e, "is a run of disentangle.py (fine_only)")


def test_interrupted_run_resumes_to_the_same_weights(tiny_runs, monkeypatch):
    """Here with --cache-frames, which the new run and its resumption both take: cached frames are the decoded ones."""
    splits, tmp, _, summary, _ = tiny_runs
    monkeypatch.setattr(train, "FRAME_CACHE", tmp / "frames")
    argv = tiny_argv(splits, tmp / "cut", "--variants", "disentangled", "--cache-frames")
    with monkeypatch.context() as m, pytest.raises(SystemExit) as stop:
        interrupt_after_step(m, 4)  # of 9
        disentangle.main(argv)
    assert stop.value.code == 130 and len(list((tmp / "frames").iterdir())) == 1  # the training split so far
    resumed = disentangle.main(argv)["summaries"][0]
    assert len(list((tmp / "frames").iterdir())) == 3  # and both val splits
    assert json.dumps(resumed["table"]["disentangled"]) == json.dumps(summary["table"]["disentangled"])
    a, b = (torch.load(tmp / d / "disentangled_seed0_set1" / "ckpt.pt", weights_only=True)["model"] for d in ("runs", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_text_model_with_the_inside_placement_end_to_end(synta_tiny, tmp_path):
    _, splits = synta_tiny
    argv = tiny_argv(splits, tmp_path, "--variants", "disentangled", "--placement", "inside")
    argv[argv.index("i3d_small")] = "ezclip"
    summary = disentangle.main(argv)["summaries"][0]
    assert 0 <= summary["table"]["disentangled"]["set1"]["known"]["mean"] <= 100 and not summary["mcnemar"]
    ckpt = torch.load(tmp_path / "disentangled_seed0_set1" / "ckpt.pt", weights_only=True)
    assert ckpt["config"]["disentangle"]["placement"] == "inside" and "coarse_branch.2.weight" in ckpt["model"]


def test_mistakes_give_one_line_errors(tmp_path):
    cfg = run_cfg("i3d_small", "disentangled")
    with pytest.raises(SystemExit) as e:
        check_config({**cfg, "disentangle": {**cfg["disentangle"], "variant": "both"}}, source="x.pt")
    one_line_error(e, "x.pt: disentangle.variant must be base, disentangled, multitask or fine_only, got 'both'")
    with pytest.raises(SystemExit) as e:
        built(run_cfg("i3d_small", "disentangled", "inside"))
    one_line_error(e, "--placement inside is EZ-CLIP's")
    with pytest.raises(SystemExit) as e:
        built(run_cfg("ezclip", "multitask"))
    one_line_error(e, "model.motion_loss", "--set model.motion_loss=0", "--placement inside")
    for argv, words in [(["--model", "i3d_small"], ["give --model and --data"]),
                        (["--model", "i3d_small", "--data", "synta", "--variants", "base,both"], ["unknown variant 'both'"]),
                        (["--experiment", "--model", "x3d"], ["--model does not go with --experiment"]),
                        (["--model", "i3d_small", "--data", "synta", "--appearance", "shared"], ["--appearance belongs to --experiment"]),
                        (["--experiment", "--appearance", "mixed"], ["--appearance takes coupled and/or shared"]),
                        (["--model", "i3d_small", "--data", "synta", "--json", str(tmp_path / "no" / "x.json")], ["--json"])]:
        with pytest.raises(SystemExit) as e:
            disentangle.main(argv)
        one_line_error(e, *words)


def test_the_experiment_reads_cached_frames_without_a_loader_process_unless_told():
    for argv, workers in ((["--experiment"], 0), (["--experiment", "--workers", "1"], 1)):
        args = disentangle.parse_args(argv)
        disentangle.check_args(args)
        assert args.cache_frames and args.workers == workers and args.models == list(disentangle.EXPERIMENT["models"])


def test_the_plot_ends_above_the_highest_point_or_bar():
    point = {"label": "base", "group": "g", "known": 37.0, "unknown": 12.0}
    assert disentangle.plot_limit([point]) == 40
    assert disentangle.plot_limit([point, {**point, "known": 40.0}]) == 50  # a point on the edge is not cut
    assert disentangle.plot_limit([{**point, "unknown_ci": [10.0, 52.5]}]) == 60
    assert disentangle.plot_limit([{**point, "known": 99.5}]) == 100
