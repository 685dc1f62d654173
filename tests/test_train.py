"""End to end: tiny models trained on tiny real videos through train.py and evaluate.py."""
import json
import os
import subprocess
import sys

import pytest
import torch

import evaluate
import train
from conftest import REPO, check_resume_matches_uninterrupted, interrupt_after_step, train_and_evaluate_both_sets
from conftest import train_args as one_epoch_args

MODELS = ["vit", "timesformer"]


def train_args(splits, out, model="vit", *extra):
    return one_epoch_args(splits, out, model, "--epochs", "2", *extra)  # two epochs, vit by default


def weights(ckpt_path):
    return torch.load(ckpt_path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.parametrize("model", MODELS)
def test_both_directions_then_evaluate(model, synta_tiny, tmp_path, capsys):
    _, splits = synta_tiny
    for s in (1, 2):
        result = train.main(train_args(splits, tmp_path / f"set{s}", model, "--train-set", str(s)))
        assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
        assert 0 <= result["top1"]["known"] <= 100 and 0 <= result["top1"]["unknown"] <= 100
        assert (tmp_path / f"set{s}" / "ckpt.pt").is_file() and (tmp_path / f"set{s}" / "results.json").is_file()
        log = [json.loads(line) for line in (tmp_path / f"set{s}" / "log.jsonl").read_text().splitlines()]
        assert [r["type"] for r in log][0] == "config" and log[-1]["type"] == "eval"
        ckpt = torch.load(tmp_path / f"set{s}" / "ckpt.pt", weights_only=True)
        assert ckpt["epoch"] == 2 and ckpt["config"]["train_set"] == s and ckpt["git"]
    capsys.readouterr()
    summary = evaluate.main(["--ckpt", str(tmp_path / "set1" / "ckpt.pt"), str(tmp_path / "set2" / "ckpt.pt"),
                             "--workers", "0", "--json", str(tmp_path / "all.json")])
    printed = capsys.readouterr().out
    for word in ("Known (val set 1)", "Unknown (val set 2)", "D_abs", "HM", "average of the two directions"):
        assert word in printed
    avg, (d1, d2) = summary["averages"][0]["top1"], summary["directions"]
    assert avg["known"] == pytest.approx((d1["top1"]["known"] + d2["top1"]["known"]) / 2)
    assert avg["hm"] == pytest.approx((d1["top1"]["hm"] + d2["top1"]["hm"]) / 2)
    assert json.loads((tmp_path / "all.json").read_text())["averages"][0]["top1"]["d_abs"] == pytest.approx(avg["d_abs"])
    # evaluate.py re-scores the checkpoint exactly as train.py did at the end of the run
    assert d1["top1"] == json.loads((tmp_path / "set1" / "results.json").read_text())["top1"]


def test_resume_after_interrupt_matches_uninterrupted_run(synta_tiny, tmp_path, monkeypatch):
    _, splits = synta_tiny
    cut = check_resume_matches_uninterrupted(splits, tmp_path, "vit", monkeypatch)
    assert (cut["epoch"], cut["step_in_epoch"]) == (1, 3)  # 9 steps per epoch: stopped 3 steps into epoch 2


def test_two_processes_match_one(synta_tiny, tmp_path):
    _, splits = synta_tiny
    single = train.main(train_args(splits, tmp_path / "one"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(REPO / "train.py"), *train_args(splits, tmp_path / "two")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    double = json.loads((tmp_path / "two" / "results.json").read_text())
    assert double["top1"] == pytest.approx(single["top1"]) and double["known"]["videos"] == single["known"]["videos"]
    a, b = weights(tmp_path / "one" / "ckpt.pt"), weights(tmp_path / "two" / "ckpt.pt")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # distributed evaluation counts every val video exactly once
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29532",
           str(REPO / "evaluate.py"), "--ckpt", str(tmp_path / "one" / "ckpt.pt"), "--workers", "0", "--json", str(tmp_path / "e.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "e.json").read_text())["directions"][0]["top1"] == single["top1"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synta_tiny, tmp_path, monkeypatch):
    _, splits = synta_tiny
    with monkeypatch.context() as m, pytest.raises(SystemExit):
        interrupt_after_step(m, 9)  # stop cleanly at the end of epoch 1
        train.main(train_args(splits, tmp_path / "run"))
    path = tmp_path / "run" / "ckpt.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["head.weight"].fill_(float("nan"))  # every later step produces a NaN loss
    torch.save(ckpt, path)
    before = path.read_bytes()
    with pytest.raises(SystemExit, match=r"non-finite loss at epoch 2, step 1; .*last good checkpoint is .*ckpt.pt"):
        train.main(["--resume", "--out", str(tmp_path / "run"), "--workers", "0"])
    assert path.read_bytes() == before


def test_user_mistakes_give_one_line_errors(synta_tiny, tmp_path):
    root, splits = synta_tiny
    with pytest.raises(SystemExit, match=r"unknown model 'vitt'; choose one of: .*vit"):
        train.main(["--model", "vitt", "--data", "synta"])
    with pytest.raises(SystemExit, match=r"unknown dataset 'kinetics'; choose one of: synta, k400ta, ssv2ta"):
        train.main(["--model", "vit", "--data", "kinetics"])
    with pytest.raises(SystemExit, match=r"video root .*nowhere not found; pass --root"):
        train.main(train_args(splits, tmp_path / "a", "vit", "--root", str(tmp_path / "nowhere")))
    with pytest.raises(SystemExit, match=r"holds no prepared dataset"):
        train.main(train_args(tmp_path, tmp_path / "a"))
    with pytest.raises(SystemExit, match=r"--set train.lrr: unknown key 'lrr'"):
        train.main(train_args(splits, tmp_path / "a", "vit", "--set", "train.lrr=1"))
    with pytest.raises(SystemExit, match=r"the fine task needs a text model"):
        train.main(train_args(splits, tmp_path / "a", "timesformer", "--task", "fine"))
    bad_splits = tmp_path / "bad_splits"
    bad_splits.mkdir()
    for f in splits.iterdir():
        (bad_splits / f.name).write_bytes(f.read_bytes())
    with open(bad_splits / "train_set1.csv", "a") as f:
        f.write("appearing/x.mp4,0,0\n")
    with pytest.raises(SystemExit, match=r"train_set1.csv:\d+: malformed row"):
        train.main(train_args(bad_splits, tmp_path / "b"))


def test_checkpoints_of_another_model_or_class_count_are_refused(synta_tiny, tmp_path):
    _, splits = synta_tiny
    train.main(train_args(splits, tmp_path / "run", "vit", "--epochs", "1"))
    with pytest.raises(SystemExit, match=r"already holds a run; continue it with --resume"):
        train.main(train_args(splits, tmp_path / "run", "vit", "--epochs", "1"))
    with pytest.raises(SystemExit, match=r"is a run of --model vit, not timesformer"):
        train.main(["--resume", str(tmp_path / "run" / "ckpt.pt"), "--model", "timesformer"])
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    ckpt["model"]["head.weight"] = ckpt["model"]["head.weight"][:5]
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match=r"does not fit .*head.weight: checkpoint \[5, .*another model or class count"):
        evaluate.main(["--ckpt", str(tmp_path / "other.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=r"is not a checkpoint written by train.py"):
        evaluate.main(["--ckpt", str(tmp_path / "junk.pt")])


@pytest.mark.parametrize("model", ["c2d", "i3d", "x3d", "slowfast", "mvitv2", "revmvit"])
def test_video_models_train_and_evaluate_in_both_directions(model, synta_tiny, tmp_path, capsys):
    _, splits = synta_tiny
    train_and_evaluate_both_sets(splits, tmp_path, model, capsys)


def test_mixup_and_cutmix_targets_weigh_the_pixels_they_mix():
    import numpy as np

    clips = torch.zeros(2, 1, 3, 10, 10, dtype=torch.uint8)
    clips[1] = 200
    labels = torch.tensor([0, 3])
    tc = {"mixup": 0.8, "cutmix": 0.0, "mix_switch_prob": 0.5}
    mixed, targets = train.mix_batch(clips, labels, 4, tc, np.random.default_rng(0))
    lam = targets[0, 0].item()
    assert targets.sum(1).tolist() == pytest.approx([1.0, 1.0]) and targets[0, 3].item() == pytest.approx(1 - lam)
    assert mixed[0].float().mean().item() == pytest.approx(200 * (1 - lam), abs=0.6)
    tc = {"mixup": 0.0, "cutmix": 1.0, "mix_switch_prob": 0.5}
    mixed, targets = train.mix_batch(clips, labels, 4, tc, np.random.default_rng(1))
    pasted = (mixed[0] == 200).float().mean().item()  # share of clip 0 now showing clip 1
    assert targets[0, 3].item() == pytest.approx(pasted) and targets[1, 0].item() == pytest.approx(pasted)
    assert set(mixed.unique().tolist()) <= {0, 200}


def test_main_job_generates_once_trains_both_directions_and_prints_the_table(tmp_path, monkeypatch, capsys):
    import data.synta

    tiny_profile = {"size": 32, "frames": 8, "train_per_view": 2, "val_per_view": 1,
                    "classes": ["appearing", "bouncing", "falling", "orbiting"]}
    monkeypatch.setitem(data.synta.PROFILES, "small", tiny_profile)
    monkeypatch.chdir(tmp_path)
    first = train.main(["--tiny", "--workers", "0"])
    printed = capsys.readouterr().out
    assert "average of the two directions" in printed and "HM of the averages" in printed
    assert [d["train_set"] for d in first["directions"]] == [1, 2]
    assert len(list((tmp_path / "cache" / "frames").iterdir())) == 4  # every split decoded once (--cache-frames)
    videos = sorted((tmp_path / "cache" / "synta_small_coupled").rglob("*.mp4"))
    assert len(videos) == 22 * 2 * 3  # 22 fine classes x 2 views x (2 train + 1 val ids)
    stamps = [v.stat().st_mtime_ns for v in videos]
    second = train.main(["--tiny", "--workers", "0"])  # cached: nothing rendered or trained again
    assert [v.stat().st_mtime_ns for v in videos] == stamps
    assert [d["top1"] for d in second["directions"]] == [d["top1"] for d in first["directions"]]


def test_main_job_reads_cached_frames_without_a_loader_process_unless_told(tmp_path, monkeypatch):
    asked = []

    def launch(runs, args):
        asked.append((args.cache_frames, args.workers))
        raise SystemExit("stop here")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train, "small_synta", lambda appearance: tmp_path / "splits")
    monkeypatch.setattr(train, "launch", launch)
    monkeypatch.setattr("evaluate.data_fingerprint", lambda root, lists: "x")
    monkeypatch.setattr("data.splits.read_dataset", lambda splits: (None, {}))
    for argv, workers in (([], 0), (["--workers", "1"], 1)):
        with pytest.raises(SystemExit, match="stop here"):
            train.main(argv)
        assert asked.pop() == (True, workers)


def test_recipes_can_differ_per_dataset_and_task():
    from models import load_recipe

    # EZ-CLIP's study recipe: Syn-TA trains 81 epochs for the coarse task and 151 for the fine one
    assert load_recipe("ezclip", "synta", task="coarse")["train"]["epochs"] == 81
    assert load_recipe("ezclip", "synta", task="fine")["train"]["epochs"] == 151
    assert load_recipe("ezclip", "k400ta", task="fine")["train"]["epochs"] == 71
    assert "tasks" not in load_recipe("ezclip", "synta", task="fine")


def test_another_script_trains_its_own_model_and_loss_through_the_same_loop(synta_tiny, tmp_path):
    """What a coarse-to-fine script does with train.py's pieces: a model built elsewhere that returns two
    logit sets, coarse and fine labels from the loader, CE(coarse) + 0.5 CE(fine), then the evaluation."""
    import torch.nn.functional as F
    from torch import nn

    from data.hierarchy import load_hierarchy
    from models import build_model

    _, splits = synta_tiny
    fine_names = load_hierarchy("synta").fine_names(1)

    class TwoHeads(nn.Module):
        def __init__(self, cfg, coarse_names):
            super().__init__()
            self.body, self.fine_head = build_model(cfg, coarse_names), nn.Linear(len(coarse_names), len(fine_names))

        def forward(self, clips):
            coarse = self.body(clips)
            return {"logits": coarse, "fine_logits": self.fine_head(coarse)}

    labels_seen = []

    def coarse_and_fine(model, clips, labels):
        out = model(clips)
        labels_seen.append(labels.clone())
        return F.cross_entropy(out["logits"], labels[:, 0]) + 0.5 * F.cross_entropy(out["fine_logits"], labels[:, 1]), out["logits"]

    state = train.setup(train.parse_args(train_args(splits, tmp_path / "run")), make_model=TwoHeads, label="both")
    state.loss_fn = coarse_and_fine
    before = state.model.fine_head.weight.detach().clone()
    train.fit(state)
    result = train.final_evaluation(state)
    by_path = {v.path: (v.coarse_id, v.fine_id) for v in state.dataset.videos}
    assert all(l.shape[1] == 2 for l in labels_seen) and {tuple(p) for l in labels_seen for p in l.tolist()} <= set(by_path.values())
    assert not torch.equal(before, state.model.fine_head.weight)  # the fine loss trained the fine head
    assert result["known"]["videos"] > 0 and "fine_head.weight" in torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["model"]
