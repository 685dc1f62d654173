"""models/froster.py: the release layouts (training and weight-averaged files), Open-VCLIP's
expand_temporal_view attention against a literal sequence-first reading, the frozen teacher (never
trained, optimised or saved), the distillation term, and training through train.py."""

import pytest
import torch
import torch.nn.functional as F

from conftest import (build_unloaded, interrupt_after_step, one_line_error, perturb, quiet, random_clips, release_layout,
                      tiny_cfg, train_args)
import evaluate
import train
from models import load_recipe
from models import clip as mc
from models import froster

NAMES = ["falling", "rising", "orbiting"]
TINY_CLIP = (32, 32, 2, 64, 8, 77, 49408, 32, 2, 2)  # the tiny recipe's CLIP arguments


def tiny(**model):
    return tiny_cfg("froster", **model)


def tiny_model(seed=0, **model):
    torch.manual_seed(seed)
    return froster.build_model(tiny(**model), NAMES)


# ---------------------------------------------------------------------------------------------
# release layouts


@pytest.fixture(scope="module")
def release():
    return release_layout("froster_b16_8f")


def full_size():
    cfg = load_recipe("froster", "k400ta")
    cfg["pretrained"], cfg["model"]["teacher"] = "none", "none"
    with torch.device("meta"):
        return build_unloaded(cfg, NAMES)


def meta_container(keys: dict) -> dict:
    return {"epoch": 12, "model_state": {k: torch.empty(s, device="meta") for k, s in keys.items()},
            "optimizer_state": {}, "cfg": "TRAIN:\n  ENABLE: true\n"}


def test_full_size_state_dict_is_the_averaged_release_and_the_teacher_the_rest(release):
    model = full_size()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == release["swa_keys"]
    teacher = {f"raw_model.{k}": list(v.shape) for k, v in model.raw_model.state_dict().items()}
    assert {**{k: list(v.shape) for k, v in model.state_dict().items()}, **teacher} == release["keys"]
    assert sum(p.numel() for p in model.parameters()) == release["num_params"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == release["num_params_by_prefix"]["model."] + release["num_params_by_prefix"]["projector_v./projector_t."]


def test_training_and_averaged_release_files_load(release, tmp_path):
    torch.save(meta_container(release["keys"]), tmp_path / "checkpoint_epoch_00012.pyth")
    torch.save({"model_state": meta_container(release["swa_keys"])["model_state"]}, tmp_path / "swa_2_22.pth")
    with torch.device("meta"):
        torch.save(mc.CLIP(**mc.VIT_B16).state_dict(), tmp_path / "ViT-B-16-state.pt")
    model, logs = full_size(), []
    report = model.load_pretrained(str(tmp_path / "checkpoint_epoch_00012.pyth"), "none", log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == 306
    assert any("froster.raw_model: loaded 302 tensors from" in m and "(raw_model.*)" in m for m in logs)
    model, logs = full_size(), []
    report = model.load_pretrained(str(tmp_path / "swa_2_22.pth"), str(tmp_path / "ViT-B-16-state.pt"), log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == []
    assert any("teacher (raw_model) is not in" in m and "filled from CLIP weights" in m for m in logs)


def test_mismatched_checkpoints_are_refused_in_one_line(release, tmp_path):
    keys = {k: v for k, v in release["swa_keys"].items() if k != "projector_t.2.weight"}
    keys["model.visual.proj"] = [768, 256]
    torch.save(meta_container(keys), tmp_path / "bad.pyth")
    torch.save({"model_state": {"head.weight": torch.zeros(2)}}, tmp_path / "other.pyth")
    for name, words in (("bad.pyth", "1 missing (projector_t.2.weight); 1 of another shape (model.visual.proj"),
                        ("other.pyth", "holds neither FROSTER nor CLIP weights"), ("absent.pyth", "not found")):
        with pytest.raises(SystemExit) as e:
            full_size().load_pretrained(str(tmp_path / name), "none", log=quiet)
        one_line_error(e, words)


def test_tiny_release_values_go_where_they_belong(tmp_path):
    src = tiny_model(seed=1)
    perturb(src)
    teacher = mc.CLIP(*TINY_CLIP, vision_heads=2)
    state = {**src.state_dict(), **{f"raw_model.{k}": v for k, v in teacher.state_dict().items()}}
    torch.save({"model_state": state}, tmp_path / "train.pyth")
    torch.save({"model_state": src.state_dict()}, tmp_path / "swa.pth")
    torch.save(teacher.state_dict(), tmp_path / "clip.pt")
    for file, teacher_spec in (("train.pyth", "none"), ("swa.pth", str(tmp_path / "clip.pt"))):
        model = tiny_model(seed=2)
        model.load_pretrained(str(tmp_path / file), teacher_spec, log=quiet)
        for k, v in src.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        for k, v in teacher.state_dict().items():
            assert torch.equal(model.raw_model.state_dict()[k], v), k
    # CLIP weights: the student, and the teacher when it names the same weights, read once
    model, logs = tiny_model(seed=2), []
    model.load_pretrained(str(tmp_path / "clip.pt"), str(tmp_path / "clip.pt"), log=logs.append)
    assert torch.equal(model.model.visual.proj, teacher.visual.proj)
    assert torch.equal(model.raw_model.visual.proj, teacher.visual.proj)
    assert torch.equal(model.projector_v[2].weight, torch.zeros(32, 32))


# ---------------------------------------------------------------------------------------------
# expand_temporal_view


def reference_attention(blk, x, frames):
    """Open-VCLIP's expanded attention read literally: sequence-first [L, N, D], per-head batches
    [N*heads, L, hd]; frame t's keys/values are those of t+1, t-1 (zero-filled outside the clip), t."""
    x = x.transpose(0, 1)
    length, n, d = x.shape
    heads, hd = blk.attn.num_heads, d // blk.attn.num_heads
    q, k, v = F.linear(x, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, -1)
    q, k, v = (u.reshape(length, n * heads, hd).transpose(0, 1) for u in (q, k, v))  # [N*H, L, hd]
    b = n // frames

    def expand(u):
        u = u.reshape(b, frames, heads, length, hd)
        out = torch.zeros(b, frames, heads, 3 * length, hd)
        out[:, :-1, :, :length] = u[:, 1:]
        out[:, 1:, :, length:2 * length] = u[:, :-1]
        out[:, :, :, 2 * length:] = u
        return out.reshape(n * heads, 3 * length, hd)

    k, v = expand(k), expand(v)
    w = torch.softmax(q / hd ** 0.5 @ k.transpose(1, 2), -1)
    out = (w @ v).transpose(0, 1).reshape(length, n, d)
    return F.linear(out, blk.attn.out_proj.weight, blk.attn.out_proj.bias).transpose(0, 1)


def test_expanded_attention_matches_a_literal_reading_and_sees_only_neighbours():
    torch.manual_seed(0)
    blk = froster.ExpandedViewBlock(64, 4)
    perturb(blk, scale=0.2)  # a key bias away from zero matters here (zero keys take part in the softmax)
    x = torch.randn(2 * 4, 5, 64)
    with torch.no_grad():
        torch.testing.assert_close(blk.attention(x, frames=4), reference_attention(blk, x, 4), atol=1e-5, rtol=1e-5)
        no_key_bias = froster.ExpandedViewBlock(64, 4)
        no_key_bias.load_state_dict(blk.state_dict())
        no_key_bias.attn.in_proj_bias[64:128] = 0
        assert not torch.allclose(no_key_bias.attention(x, frames=4), blk.attention(x, frames=4), atol=1e-4)
        y = blk(x, frames=4).view(2, 4, 5, 64)
        x2 = x.clone().view(2, 4, 5, 64)
        x2[:, 3] = torch.randn(2, 5, 64)  # another last frame: only frames 2 and 3 can see it
        y2 = blk(x2.view(8, 5, 64), frames=4).view(2, 4, 5, 64)
    assert torch.equal(y[:, :2], y2[:, :2]) and (y[:, 2] - y2[:, 2]).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# teacher and distillation


def test_teacher_is_frozen_unsaved_and_outside_the_optimizer():
    model = tiny_model().train()
    assert not model.raw_model.training
    teacher = {k: v.clone() for k, v in model.raw_model.state_dict().items()}
    assert not any(k.startswith("raw_model.") for k in model.state_dict())
    tc = tiny()["train"]
    optimizer = train.make_optimizer(model, tc, torch.device("cpu"))
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in model.raw_model.parameters()}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if not n.startswith("raw_model.")}
    student = {k: v.clone() for k, v in model.model.state_dict().items()}
    loss, _ = train.compute_loss(model, random_clips(), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is None for p in model.raw_model.parameters())
    optimizer.step()
    assert all(torch.equal(model.raw_model.state_dict()[k], v) for k, v in teacher.items())
    assert any(not torch.equal(model.model.state_dict()[k], v) for k, v in student.items())
    # our checkpoints reload strictly without the teacher; DDP leaves the teacher alone
    fresh = tiny_model(seed=5)
    assert fresh.load_state_dict(model.state_dict(), strict=True).missing_keys == []
    teacher_names = {f"raw_model.{n}" for n, _ in model.raw_model.named_parameters()}
    assert set(model._ddp_params_and_buffers_to_ignore) == teacher_names


def test_distillation_term():
    """The loss is the soft cross-entropy plus the distillation. At initialisation student and teacher
    share every weight and the projectors are the identity: the text term is exactly zero; the video
    term is not, because the student's attention already looks at the neighbouring frames. It is 2.0 x
    the squared distance of the unit video features."""
    model = tiny_model().train()
    clip_batch, targets = random_clips(), torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])  # soft (mixup) targets
    out = model(clip_batch, targets=targets)
    with torch.no_grad():
        assert model.distance(model.projector_t, model.class_features(), model.teacher_class_features()).item() == 0.0
        v = F.normalize(model.encode_video(clip_batch), dim=-1)
        u = F.normalize(model.encode_video(clip_batch, teacher=True), dim=-1)
        distillation = 2.0 * (v - u).pow(2).sum(-1).mean()
        soft_ce = -(targets * out["logits"].log_softmax(-1)).sum(-1).mean()
    assert out["loss"].item() == pytest.approx((soft_ce + distillation).item(), rel=1e-5) and distillation > 0
    scale = model.model.logit_scale.exp()
    torch.testing.assert_close(out["logits"], scale * model.encode_video(clip_batch) @ model.class_features().t())
    # the loss trains the projectors and both student towers, never the teacher
    out["loss"].backward()
    assert model.projector_v[2].weight.grad.abs().sum() > 0
    assert model.model.visual.conv1.weight.grad.abs().sum() > 0
    assert model.projector_t[2].weight.grad.abs().sum() == 0  # the text term is at its minimum at init
    model.eval()
    assert isinstance(model(clip_batch), torch.Tensor)


def test_frozen_text_option_caches_text_and_drops_the_text_term():
    model = tiny_model(train_text=False).train()
    assert not model.projector_t[0].weight.requires_grad
    assert model.class_features() is model.class_features()
    out = model(random_clips(), targets=torch.tensor([0, 1]))
    with torch.no_grad():
        v = F.normalize(model.encode_video(random_clips()), dim=-1)
        u = F.normalize(model.encode_video(random_clips(), teacher=True), dim=-1)
        ce = F.cross_entropy(out["logits"], torch.tensor([0, 1]))
    assert out["loss"].item() == pytest.approx((ce + 2.0 * (v - u).pow(2).sum(-1).mean()).item(), rel=1e-5)


def test_recipe():
    for ds, epochs, warmup, bs, clips, sampling in (("k400ta", 12, 2, 32, 3, "dense"), ("ssv2ta", 40, 5, 24, 1, "segment"),
                                                    ("synta", 15, 3, 24, 1, "dense")):
        cfg = load_recipe("froster", ds)
        t = cfg["train"]
        assert (t["epochs"], t["warmup_epochs"], t["batch_size"]) == (epochs, warmup, bs)
        assert t["lr"] == pytest.approx(3.33e-6) and t["min_lr"] == pytest.approx(3.33e-8)
        assert t["lr"] * t["warmup_start_factor"] == pytest.approx(3.33e-8) and t["weight_decay"] == pytest.approx(0.01)
        assert cfg["input"]["sampling"] == sampling and cfg["test"]["clips"] == clips
        assert cfg["model"]["distillation_ratio"] == 2.0 and cfg["model"]["teacher"] == "ViT-B/16"
    assert load_recipe("froster", "k400ta")["input"]["stride"] == 16
    assert load_recipe("froster", "ssv2ta")["train"]["weight_averaging"] == 2  # FROSTER's weight_average_tool.py: from epoch 2
    names = {n for n, p in tiny_model().named_parameters() if p.requires_grad}
    assert tiny_model().no_weight_decay() <= names


# ---------------------------------------------------------------------------------------------
# through train.py and evaluate.py


def test_coarse_training_through_the_harness(synta_tiny, tmp_path, capsys):
    _, splits = synta_tiny
    result = train.main(train_args(splits, tmp_path / "run", "froster"))
    assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert not any(k.startswith("raw_model.") for k in ckpt["model"])
    assert any(k.startswith("projector_v.") for k in ckpt["model"])
    capsys.readouterr()
    summary = evaluate.main(["--ckpt", str(tmp_path / "run" / "ckpt.pt"), "--workers", "0"])
    assert summary["directions"][0]["top1"] == result["top1"]


def test_evaluation_needs_no_teacher_weights(synta_tiny, tmp_path, monkeypatch):
    """A run trained with the CLIP teacher evaluates offline: evaluation never runs the teacher."""
    import urllib.request

    _, splits = synta_tiny
    result = train.main(train_args(splits, tmp_path / "run", "froster", "--epochs", "1"))
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    ckpt["config"]["model"]["teacher"] = "ViT-B/16"  # as the full recipe trains
    torch.save(ckpt, tmp_path / "run" / "ckpt.pt")
    monkeypatch.setenv("MT_CACHE", str(tmp_path / "empty_cache"))

    def offline(*args, **kwargs):
        raise AssertionError("evaluation tried to download CLIP weights")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    summary = evaluate.main(["--ckpt", str(tmp_path / "run" / "ckpt.pt"), "--workers", "0"])
    assert summary["directions"][0]["top1"] == result["top1"]


def test_resumed_run_rebuilds_the_teacher_keeps_the_weight_average_and_evaluates_it(synta_tiny, tmp_path, monkeypatch):
    """The teacher is not in ckpt.pt: a resumed run rebuilds it. Ctrl-C in the last step of epoch 1
    stops the run after its end-of-epoch work (the weight average) and checkpoint; resumed, it ends
    bit-identical to an uninterrupted run, weight average included, and both evaluate the average of
    the two epochs' weights (the tiny recipe averages from epoch 1)."""
    _, splits = synta_tiny
    evaluated, evaluate_direction = [], train.evaluate_direction

    def record(model, *args, **kwargs):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return evaluate_direction(model, *args, **kwargs)

    monkeypatch.setattr(train, "evaluate_direction", record)
    full = train.main(train_args(splits, tmp_path / "full", "froster", "--epochs", "2"))
    with monkeypatch.context() as m, pytest.raises(SystemExit) as stop:
        interrupt_after_step(m, 9)  # the last of epoch 1's 9 steps
        train.main(train_args(splits, tmp_path / "cut", "froster", "--epochs", "2"))
    assert stop.value.code == 130
    cut = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)
    assert (cut["epoch"], cut["step_in_epoch"], cut["weight_average"]["epochs"]) == (1, 0, 1)
    resumed = train.main(["--resume", "--out", str(tmp_path / "cut"), "--workers", "0"])
    assert resumed["top1"] == full["top1"]
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("full", "cut"))
    assert a["weight_average"]["epochs"] == b["weight_average"]["epochs"] == 2
    for weights in (lambda c: c["model"], lambda c: c["weight_average"]["model"]):
        assert all(torch.equal(weights(a)[k], weights(b)[k]) for k in weights(a))
    average = a["weight_average"]["model"]
    assert len(evaluated) == 2 and all(all(torch.equal(e[k], average[k]) for k in average) for e in evaluated)
    assert any(not torch.equal(a["model"][k], average[k]) for k in average)


def test_bf16_autocast_keeps_logits_and_loss_in_fp32():
    model = tiny_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(random_clips(), targets=torch.tensor([0, 1]))
    assert out["logits"].dtype == torch.float32 and out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert model.projector_v[2].weight.grad.dtype == torch.float32
    with torch.no_grad():
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(random_clips())
        torch.testing.assert_close(low, model(random_clips()), atol=0.1, rtol=0.05)
