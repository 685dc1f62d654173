"""models/vit.py: CLIP image tower per frame, time average, linear head."""

import pytest
import torch

from conftest import build_unloaded, one_line_error, quiet, release_layout, tiny_cfg, tiny_vision_clip
from models import build_model, load_recipe
from models import clip as mc

CLASSES = [f"class {i}" for i in range(5)]


def tiny(**model):
    return tiny_cfg("vit", **model)


def test_full_size_has_the_released_visual_keys():
    release = release_layout("openai_clip_vit_b16")["keys"]
    cfg = load_recipe("vit", "k400ta")
    cfg["pretrained"] = "none"
    with torch.device("meta"):
        model = build_model(cfg, CLASSES)
    want = {k[len("visual."):]: v for k, v in release.items() if k.startswith("visual.")}
    assert {k: list(v.shape) for k, v in model.visual.state_dict().items()} == want
    assert set(model.state_dict()) == {f"visual.{k}" for k in want} | {"head.weight", "head.bias"}
    assert model.head.weight.shape == (5, 512)


def test_tiny_forward_backward_on_uint8():
    torch.manual_seed(0)
    model = build_model(load_recipe("vit", "synta", tiny=True), CLASSES)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    logits = model(video)
    assert logits.shape == (2, 5) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert not any("mean" in k or "std" in k for k in model.state_dict())
    with pytest.raises(ValueError):
        model(video.permute(0, 2, 1, 3, 4))


def test_normalises_inside_and_averages_frames():
    torch.manual_seed(0)
    cfg = tiny()
    model = build_model(cfg, CLASSES).eval()
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor(cfg["input"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["input"]["std"]).view(1, 3, 1, 1)
    assert mean.flatten().tolist() == pytest.approx([255 * m for m in mc.CLIP_MEAN])
    with torch.no_grad():
        frames = (video.flatten(0, 1).float() - mean) / std
        expected = model.head(model.visual(frames).view(2, 4, -1).mean(1))
        torch.testing.assert_close(model(video), expected)
        torch.testing.assert_close(model(video[:, [2, 0, 3, 1]]), expected, atol=1e-5, rtol=1e-5)  # an average over time
        assert not torch.allclose(model(video.flip(0)), expected)


def test_loads_the_visual_part_of_clip_weights(tmp_path):
    src = tiny_vision_clip()
    torch.save(src.state_dict(), tmp_path / "clip.pt")
    logs = []
    cfg = tiny()
    cfg["pretrained"] = str(tmp_path / "clip.pt")
    model = build_unloaded(cfg, len(CLASSES))
    report = model.load_clip_weights(cfg["pretrained"], log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == []
    for k, v in src.visual.state_dict().items():
        assert torch.equal(model.visual.state_dict()[k], v), k
    assert any("text-tower tensors" in m for m in logs)
    # an image tower alone (no `visual.` prefix) loads the same
    torch.save(src.visual.state_dict(), tmp_path / "visual.pt")
    tower_only = build_unloaded(cfg, len(CLASSES))
    assert tower_only.load_clip_weights(str(tmp_path / "visual.pt"), log=quiet)["missing"] == []
    assert all(torch.equal(tower_only.visual.state_dict()[k], v) for k, v in src.visual.state_dict().items())
    # another input size: positional_embedding is resampled (4x4 -> 6x6 grid), the rest is unchanged
    cfg["input"]["size"] = 48
    model48 = build_unloaded(cfg, len(CLASSES))
    model48.load_clip_weights(cfg["pretrained"], log=logs.append)
    assert model48.visual.positional_embedding.shape == (37, 64)
    assert torch.equal(model48.visual.positional_embedding[0], src.visual.positional_embedding[0])
    assert torch.equal(model48.visual.conv1.weight, src.visual.conv1.weight)
    assert model48(torch.zeros(1, 4, 3, 48, 48, dtype=torch.uint8)).shape == (1, 5)


def test_wrong_architecture_and_missing_file_are_one_line_errors(tmp_path):
    torch.save(tiny_vision_clip(vision_width=128).state_dict(), tmp_path / "wide.pt")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    for spec, words in ((str(tmp_path / "wide.pt"), "of another shape"), (str(tmp_path / "absent.pt"), "not found"),
                        (str(tmp_path / "other.pt"), "holds no CLIP weights")):
        cfg = tiny()
        cfg["pretrained"] = spec
        with pytest.raises(SystemExit) as e:
            build_model(cfg, CLASSES)
        one_line_error(e, words)


def test_optimizer_hooks_name_real_parameters():
    model = build_model(load_recipe("vit", "synta", tiny=True), CLASSES)
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(names)
    mult = model.lr_multipliers()
    assert mult == {"head.": 10.0}
    assert {n for n in names if "head." in n} == {"head.weight", "head.bias"}


def test_recipe():
    for ds, epochs in (("synta", 30), ("k400ta", 50), ("ssv2ta", 50)):
        cfg = load_recipe("vit", ds)
        assert cfg["pretrained"] == "ViT-B/16"
        assert cfg["input"]["frames"] == 8 and cfg["input"]["sampling"] == "segment" and cfg["input"]["size"] == 224
        assert cfg["input"]["std"] == pytest.approx([255 * s for s in mc.CLIP_STD])
        assert cfg["train"]["optimizer"] == "adamw" and cfg["train"]["lr"] == pytest.approx(1e-5)
        assert cfg["train"]["epochs"] == epochs and cfg["train"]["batch_size"] == 32
        assert cfg["train"]["warmup_epochs"] > 0 and cfg["train"]["weight_decay"] == pytest.approx(0.05)
    from data.loader import flip_allowed

    assert not flip_allowed("ssv2ta", "coarse")  # SSv2-TA's left/right classes: the loader's one rule, not the recipe
    assert load_recipe("vit", "synta", tiny=True)["pretrained"] == "none"
