"""The text models end to end on tiny real videos: the fine base-to-novel task and the coarse task
through train.py / evaluate.py, class descriptions, and the one-video demo (evaluate.py --video)."""
import json

import pytest
import torch

import evaluate
import train
from conftest import SHARED, one_line_error, train_args, write_descriptions

from data.hierarchy import load_hierarchy
from data.loader import VideoDataset, load_videos
from models import load_recipe
from models import class_texts as ct

SYNTA = load_hierarchy("synta")


@pytest.fixture(scope="module")
def xclip_runs(synta_tiny, tmp_path_factory):
    """X-CLIP trained on each set in the coarse and the fine task; records every label space the
    model was switched to."""
    _, splits = synta_tiny
    root = tmp_path_factory.mktemp("xclip_runs")
    from models.xclip import XCLIP

    switched = []
    original = XCLIP.set_class_names

    def recording(self, names):
        switched.append(list(names))
        original(self, names)

    XCLIP.set_class_names = recording
    try:
        runs = {}
        for task in ("coarse", "fine"):
            for s in (1, 2):
                start = len(switched)
                result = train.main(train_args(splits, root / f"{task}{s}", "xclip", "--task", task, "--train-set", str(s)))
                runs[task, s] = (root / f"{task}{s}" / "ckpt.pt", result, switched[start:])
    finally:
        XCLIP.set_class_names = original
    return runs


def test_fine_base_to_novel_trains_on_one_set_and_scores_each_val_set_in_its_own_label_space(xclip_runs):
    for s in (1, 2):
        ckpt, result, label_spaces = xclip_runs["fine", s]
        other = 3 - s
        # built on the training set's fine classes; Known scored against them, Unknown against the other set's
        assert label_spaces == [SYNTA.fine_names(s), SYNTA.fine_names(s), SYNTA.fine_names(other)]
        assert result["task"] == "fine" and result["train_set"] == s
        assert result["known"]["split"] == f"val_set{s}" and result["unknown"]["split"] == f"val_set{other}"
        assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
        assert 0 <= result["top1"]["known"] <= 100 and 0 <= result["top1"]["unknown"] <= 100
        state = torch.load(ckpt, weights_only=True)
        assert state["config"]["task"] == "fine" and "mit.positional_embedding" in state["model"]
    coarse = xclip_runs["coarse", 1][2]
    assert coarse == [SYNTA.coarse_names] * 3


def test_evaluate_prints_the_coarse_and_the_fine_tables_from_four_checkpoints(xclip_runs, capsys):
    paths = [str(xclip_runs[t, s][0]) for t in ("coarse", "fine") for s in (1, 2)]
    capsys.readouterr()
    summary = evaluate.main(["--ckpt", *paths, "--workers", "0"])
    printed = capsys.readouterr().out
    assert "xclip | synta | coarse task | top-1, average of the two directions" in printed
    assert "xclip | synta | fine task | top-1, average of the two directions" in printed
    assert [(a["task"]) for a in summary["averages"]] == ["coarse", "fine"]
    for r in summary["directions"]:  # evaluate.py re-scores each checkpoint exactly as train.py did
        assert r["top1"] == xclip_runs[r["task"], r["train_set"]][1]["top1"]


@pytest.mark.parametrize("model", ["vificlip", "actionclip"])
def test_each_text_model_trains_in_the_coarse_task(model, synta_tiny, tmp_path):
    _, splits = synta_tiny
    result = train.main(train_args(splits, tmp_path / "run", model, "--epochs", "2"))
    assert result["model"] == model and result["task"] == "coarse"
    assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in log if r["type"] == "epoch"]
    assert len(losses) == 2 and all(l == l and l < 10 for l in losses)  # finite


def test_fine_task_with_one_description_per_class(synta_tiny, tmp_path):
    _, splits = synta_tiny
    path = write_descriptions(tmp_path / "descriptions.csv",
                              {c.name: f"a video where {c.coarse_name} happens: {c.name.lower()}" for c in SYNTA.fine})
    result = train.main(train_args(splits, tmp_path / "run", "actionclip", "--task", "fine", "--set",
                                   f"text.descriptions={path}", "--set", "model.template_sampling=batch"))
    assert result["task"] == "fine" and result["unknown"]["videos"] > 0
    with pytest.raises(SystemExit) as e:
        train.main(train_args(splits, tmp_path / "run2", "actionclip", "--set", f"text.descriptions={tmp_path / 'missing.csv'}"))
    one_line_error(e, "not found")


def test_the_benchmark_description_files_cover_the_synta_classes():
    folder = SHARED / "upstream" / "configs" / "ezclip" / "GPT_description"
    if not folder.is_dir():
        pytest.skip("../shared/upstream is not present")
    for task, file in (("fine", "synta_ta_gpt_class_description_fine.csv"), ("coarse", "synta_ta_gpt_class_description_head.csv")):
        texts = ct.text_settings({"text": {"templates": None, "descriptions": str(folder / file)}})
        for s in (1, 2):
            names = SYNTA.class_names(task, s)
            prompts = ct.class_prompts(names, **texts)
            assert len(prompts) == len(names) and all(len(p) == 1 and len(p[0]) > 20 for p in prompts)


# ---------------------------------------------------------------------------------------------
# one video


def a_video(synta_tiny):
    root, splits = synta_tiny
    video = load_videos(splits, "val_set2", "synta")[0]
    return root / video.path


def test_demo_ranks_any_class_names_with_a_recipe_and_random_weights(synta_tiny, capsys):
    path = a_video(synta_tiny)
    classes = ["punching bag", "punching person", "a ball falling", "an object appearing"]
    for model in ("xclip", "vificlip", "actionclip"):
        capsys.readouterr()
        out = evaluate.main(["--video", str(path), "--classes", ", ".join(classes), "--model", model, "--tiny",
                             "--pretrained", "none", "--device", "cpu"])
        printed = capsys.readouterr().out.splitlines()
        assert sorted(out["classes"]) == sorted(classes) and sum(out["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert out["probs"] == sorted(out["probs"], reverse=True)
        assert printed[0].startswith(f"{path}: {model} (pretrained none); 4 frames of the centre clip")
        assert printed[1].split()[:2] == ["1.", out["classes"][0].split()[0]] and len(printed) == 1 + len(classes)


def test_demo_reads_the_clip_exactly_as_evaluation_does(synta_tiny):
    root, splits = synta_tiny
    cfg = load_recipe("xclip", "synta", tiny=True)
    cfg["test"]["crops"] = 3
    videos = load_videos(splits, "val_set1", "synta")
    dataset = VideoDataset(videos, root, "coarse", cfg, train=False)
    assert torch.equal(evaluate.read_clip(root / videos[3].path, cfg), dataset.load(3, None))


def test_demo_with_checkpoints_of_a_text_model_and_of_a_classifier(xclip_runs, synta_tiny, tmp_path, capsys):
    path = a_video(synta_tiny)
    ckpt = str(xclip_runs["fine", 1][0])
    out = evaluate.main(["--video", str(path), "--ckpt", ckpt, "--classes", "bouncing ball,rolling ball", "--top", "1"])
    assert sorted(out["classes"]) == ["bouncing ball", "rolling ball"]
    assert len(capsys.readouterr().out.splitlines()) == 2
    out = evaluate.main(["--video", str(path), "--ckpt", ckpt])  # no --classes: the classes it was trained on
    assert sorted(out["classes"]) == sorted(SYNTA.fine_names(1))

    cfg = load_recipe("vit", "synta", tiny=True)
    cfg.update(dataset="synta", task="coarse", train_set=1)
    from models import build_model

    vit = build_model(cfg, SYNTA.coarse_names)
    torch.save({"model": vit.state_dict(), "config": cfg}, tmp_path / "vit.pt")
    out = evaluate.main(["--video", str(path), "--ckpt", str(tmp_path / "vit.pt")])
    assert sorted(out["classes"]) == sorted(SYNTA.coarse_names)
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--video", str(path), "--ckpt", str(tmp_path / "vit.pt"), "--classes", "a,b"])
    one_line_error(e, "vit classifier with 20 fixed classes", "leave out --classes")


def test_demo_mistakes_are_one_line_errors(synta_tiny, tmp_path):
    path = str(a_video(synta_tiny))
    cases = [
        (["--video", path, "--classes", "a,b", "--model", "vit", "--tiny"], ("classifier with fixed classes",)),
        (["--video", path, "--model", "xclip", "--tiny"], ("needs --classes",)),
        (["--video", path, "--classes", "a,,b", "--model", "xclip", "--tiny"], ("separated by commas",)),
        (["--video", path, "--classes", "a,b,a", "--model", "xclip", "--tiny"], ("'a' more than once",)),
        (["--video", str(tmp_path / "none.mp4"), "--classes", "a,b", "--model", "xclip", "--tiny"], ("not found",)),
        # checked before any weights are read: the full recipe's ViT-B/16 download is never attempted
        (["--video", str(tmp_path / "none.mp4"), "--classes", "a,b", "--model", "xclip"], ("video", "not found")),
        (["--video", path, "--classes", "a,b"], ("needs a model",)),
        (["--video", path, "--classes", "a,b", "--model", "xclipp"], ("unknown model 'xclipp'",)),
        (["--video", path, "--classes", "a,b", "--model", "xclip", "--ckpt", "x.pt"], ("not both",)),
        (["--classes", "a,b", "--ckpt", "x.pt"], ("--classes belongs to the one-video demo",)),
        ([], ("give --ckpt",)),
    ]
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    cases.append((["--video", str(tmp_path / "junk.mp4"), "--classes", "a,b", "--model", "xclip", "--tiny"],
                  ("cannot decode video",)))
    for argv, words in cases:
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv)
        one_line_error(e, *words)


@pytest.mark.parametrize("name", ["xclip", "vificlip", "actionclip"])
def test_bf16_autocast_forward_backward(name):
    """The models run under autocast (CPU bf16 here, as train.py runs CUDA bf16): finite fp32 logits
    close to the fp32 ones, and gradients."""
    from text_helpers import tiny

    model = tiny(name, ["punching bag", "punching person", "falling down"])
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    reference = model(video)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(video)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert (logits - reference).abs().max() < 0.05 * reference.abs().max() + 0.05
    logits.logsumexp(1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
