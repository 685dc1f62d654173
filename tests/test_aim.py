"""models/aim.py: AIM ViT-B/16 on the CLIP core, its released key layout, freezing and CLIP loading.

The expected checkpoint layout is written out below from a reading of the official code
(taoyang1122/adapt-image-models mmaction/models/backbones/vit_clip.py: `ViT_CLIP(conv1, class_embedding,
positional_embedding, ln_pre, temporal_embedding, transformer.resblocks, ln_post)` without proj,
`ResidualAttentionBlock(attn, ln_1, mlp, ln_2, MLP_Adapter, S_Adapter, T_Adapter[, T_Adapter_in])`,
`Adapter(D_fc1, D_fc2)`; mmaction2's Recognizer3D with `I3DHead.fc_cls`), independently of the model
file. The reference forward pass follows the official code's sequence-first layout step by step.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import (build_unloaded, one_line_error, quiet, random_clips, save_checkpoint, tiny_cfg, tiny_vision_clip,
                      train_and_evaluate_both_sets)
import train
from models import build_model, load_recipe
from models import weights
import models.aim as aim

CLASSES = [f"class {i}" for i in range(5)]
K400 = [f"class {i}" for i in range(400)]
PUBLISHED = (97e6, 11e6, "adapt-image-models README.md, Kinetics 400: ViT-B/16 CLIP, Param 97 (M), Tunable Param 11 (M)")


def tiny(**model):
    return tiny_cfg("aim", **model)


def tiny_model(num_classes=5, seed=0, **model) -> aim.AIM:
    torch.manual_seed(seed)
    return build_unloaded(tiny(**model), num_classes)


def randomise(model, std=0.2, only=None):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only is None or only in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


# ---------------------------------------------------------------------------------------------
# the released layout, written from the official code


def official_keys(classes=400, frames=8, width=768, layers=12, patch=16, grid=14, num_tadapter=1, ratio=0.25) -> dict:
    """{name: shape} of an AIM mmaction2 checkpoint's state_dict."""
    d, r = width, int(width * ratio)
    keys = {"backbone.class_embedding": [d], "backbone.positional_embedding": [grid * grid + 1, d],
            "backbone.temporal_embedding": [1, frames, d], "backbone.conv1.weight": [d, 3, patch, patch],
            "backbone.ln_pre.weight": [d], "backbone.ln_pre.bias": [d]}
    adapters = ["MLP_Adapter", "S_Adapter", "T_Adapter"] + (["T_Adapter_in"] if num_tadapter == 2 else [])
    for i in range(layers):
        p = f"backbone.transformer.resblocks.{i}."
        keys.update({p + "attn.in_proj_weight": [3 * d, d], p + "attn.in_proj_bias": [3 * d],
                     p + "attn.out_proj.weight": [d, d], p + "attn.out_proj.bias": [d],
                     p + "ln_1.weight": [d], p + "ln_1.bias": [d],
                     p + "mlp.c_fc.weight": [4 * d, d], p + "mlp.c_fc.bias": [4 * d],
                     p + "mlp.c_proj.weight": [d, 4 * d], p + "mlp.c_proj.bias": [d],
                     p + "ln_2.weight": [d], p + "ln_2.bias": [d]})
        for a in adapters:
            keys.update({f"{p}{a}.D_fc1.weight": [r, d], f"{p}{a}.D_fc1.bias": [r],
                         f"{p}{a}.D_fc2.weight": [d, r], f"{p}{a}.D_fc2.bias": [d]})
    keys.update({"backbone.ln_post.weight": [d], "backbone.ln_post.bias": [d],
                 "cls_head.fc_cls.weight": [classes, d], "cls_head.fc_cls.bias": [classes]})
    return keys


TINY_LAYOUT = dict(width=64, layers=2, patch=8, grid=4, frames=4)


def release_state(keys: dict, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v, generator=g) * 0.1 for k, v in keys.items()}


def trained_names(model) -> set:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_size_keys_parameter_count_and_output():
    for dataset, layout in (("k400ta", dict(frames=32)), ("ssv2ta", dict(num_tadapter=2)), ("synta", dict(num_tadapter=2))):
        cfg = load_recipe("aim", dataset)
        cfg["pretrained"] = "none"
        with torch.device("meta"):
            model = build_model(cfg, K400).eval()
            out = model(torch.empty(2, cfg["input"]["frames"], 3, 224, 224, dtype=torch.uint8))
        assert out.shape == (2, 400), dataset
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == official_keys(**layout), dataset
        if dataset == "k400ta":
            total = sum(p.numel() for p in model.parameters())
            tunable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
            assert abs(total - PUBLISHED[0]) / PUBLISHED[0] < 0.01, f"{total / 1e6:.2f} M; published: {PUBLISHED[2]}"
            assert abs(tunable - PUBLISHED[1]) / PUBLISHED[1] < 0.01, f"{tunable / 1e6:.2f} M; published: {PUBLISHED[2]}"
            assert (total, tunable) == (96_782_992, 10_985_104)


def test_only_adapters_temporal_embedding_ln_post_and_head_are_trained():
    model = tiny_model(num_tadapter=2)
    names = trained_names(model)
    assert names == {n for n in model.state_dict() if any(k in n for k in ("Adapter", "temporal_embedding", "ln_post", "cls_head"))}
    assert any("T_Adapter_in" in n for n in names) and "backbone.conv1.weight" not in names
    assert not any(".attn." in n or ".mlp." in n or ".ln_1." in n for n in names)
    # the frozen state survives a resume (the model is rebuilt with pretrained none) and can be switched off
    assert trained_names(build_unloaded(tiny(num_tadapter=2), 5)) == names
    assert all(p.requires_grad for p in tiny_model(freeze=False).parameters())
    # the optimizer sees only trained tensors; no decay on class/positional embeddings, decay on temporal_embedding
    groups = train.param_groups(model, {"lr": 1e-3, "weight_decay": 0.05})
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len(names)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.backbone.temporal_embedding) in decayed and id(model.cls_head.fc_cls.bias) not in decayed


def test_released_checkpoints_load_with_nothing_missing(tmp_path):
    keys = official_keys(classes=7, num_tadapter=2, **TINY_LAYOUT)
    state = release_state(keys)
    model = tiny_model(num_classes=7, num_tadapter=2)
    path = save_checkpoint({"meta": {"epoch": 50}, "state_dict": state, "optimizer": {}}, tmp_path)
    report = model.load_pretrained(path, log=quiet)
    assert report["dropped_head"] is False  # read as a release
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(keys)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert trained_names(model) == trained_names(tiny_model(num_tadapter=2))  # loading does not unfreeze
    # an 8-frame release into a 4-frame model: temporal_embedding resampled; a 400-class head dropped
    big = dict(release_state(official_keys(classes=400, **dict(TINY_LAYOUT, frames=8))))
    model = tiny_model(num_classes=7, num_tadapter=1)  # K400-TA layout: one temporal adapter
    messages = []
    report = model.load_release(big, "k400.pth", log=messages.append)
    assert report["dropped_head"] and sorted(report["missing"]) == sorted(aim.HEAD_KEYS) and report["unexpected"] == []
    assert any("dropping the 400-class head" in m for m in messages) and any("from 8 to 4 frames" in m for m in messages)
    torch.testing.assert_close(model.backbone.temporal_embedding, aim.resample_frames(big["backbone.temporal_embedding"], 4))
    # mismatches: one line each
    with pytest.raises(SystemExit) as e:  # a 2-temporal-adapter checkpoint into a 1-adapter model
        model.load_release(state, "ssv2.pth", log=quiet)
    assert "8 unexpected (backbone.transformer.resblocks.0.T_Adapter_in" in one_line_error(e)
    with pytest.raises(SystemExit) as e:
        model.load_release({k: v for k, v in big.items() if not k.endswith("ln_post.bias")}, "x.pth", log=quiet)
    assert "1 missing (backbone.ln_post.bias)" in one_line_error(e)
    bad = dict(big, **{"backbone.transformer.resblocks.0.S_Adapter.D_fc1.weight": torch.zeros(8, 64)})
    with pytest.raises(SystemExit) as e:
        model.load_release(bad, "x.pth", log=quiet)
    assert "of another shape (backbone.transformer.resblocks.0.S_Adapter.D_fc1.weight" in one_line_error(e)
    with pytest.raises(SystemExit) as e:
        model.load_pretrained(save_checkpoint({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path), log=quiet)
    assert "neither AIM weights (backbone.* keys) nor CLIP weights" in one_line_error(e)


# ---------------------------------------------------------------------------------------------
# CLIP weights and the identity at initialisation


def clip_features(visual, frames):
    """The plain CLIP tower without proj: ln_post of the class token."""
    return visual.ln_post(visual.transformer(visual.ln_pre(visual.embed(frames)))[:, 0])


def test_clip_loads_by_name_and_path_and_at_init_aim_is_clip_per_frame(monkeypatch, tmp_path):
    clip = tiny_vision_clip()
    monkeypatch.setattr(weights, "load_clip_state_dict", lambda spec, log=None: dict(clip.state_dict()))
    x = random_clips(batch=2, frames=4)
    messages = []
    for num_tadapter in (1, 2):
        for spec in ("ViT-B/16", save_checkpoint(clip.state_dict(), tmp_path),
                     save_checkpoint(clip.visual.state_dict(), tmp_path)):
            cfg = tiny(num_tadapter=num_tadapter, drop_path=0.0)
            cfg["pretrained"] = spec
            model = aim.build_model(cfg, CLASSES) if spec != "ViT-B/16" else build_unloaded(cfg, 5)
            if spec == "ViT-B/16":
                report = model.load_pretrained(spec, log=messages.append)
                assert report["unexpected"] == [] and "backbone.temporal_embedding" not in report["missing"]
                assert report["missing"] == sorted(["temporal_embedding"] + [
                    k[len("backbone."):] for k in model.state_dict() if "Adapter" in k])
            model.eval()
            with torch.no_grad():
                frames = ((x.float() - model.mean) / model.std).flatten(0, 1)
                expected = clip_features(clip.visual, frames).view(2, 4, -1)
                torch.testing.assert_close(model.frame_features(x), expected, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(model(x), model.cls_head.fc_cls(expected.mean(1)), atol=1e-5, rtol=1e-5)
    assert any("proj of CLIP ViT-B/16 is not used" in m for m in messages)
    # off the zero init the temporal adapter mixes frames: frame 3's feature now depends on frame 0
    model = build_unloaded(tiny(), 5).eval()
    model.load_clip_visual(clip.visual.state_dict(), "tiny", log=quiet)
    randomise(model, 0.2, only="T_Adapter")
    y = x.clone()
    y[:, 0] = 255 - y[:, 0]
    with torch.no_grad():
        assert (model.frame_features(x)[:, 3] - model.frame_features(y)[:, 3]).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# forward pass against a sequence-first reference of the official code


def ln(norm, x):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, eps=norm.eps)


def mha(attn, x):
    """nn.MultiheadAttention self-attention, sequence-first [L, N, D], full in_proj_bias."""
    length, n, d = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(length, n, 3, h, d // h).permute(2, 1, 3, 0, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1) @ v  # [N, h, L, hd]
    return attn.out_proj(a.permute(2, 0, 1, 3).reshape(length, n, d))


def adapter(a, x):
    out = a.D_fc2(F.gelu(a.D_fc1(x)))
    return x + out if a.skip_connect else out


def reference_logits(model, clip_uint8):
    bb = model.backbone
    b, t = clip_uint8.shape[:2]
    x = ((clip_uint8.float() - model.mean) / model.std).flatten(0, 1)
    x = F.conv2d(x, bb.conv1.weight, stride=bb.conv1.stride).flatten(2).permute(0, 2, 1)
    x = torch.cat([bb.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1) + bb.positional_embedding
    n, d = x.shape[1:]
    x = x.view(b, t, n, d).permute(0, 2, 1, 3).reshape(b * n, t, d) + bb.temporal_embedding  # '(b t) n d -> (b n) t d'
    x = x.view(b, n, t, d).permute(0, 2, 1, 3).reshape(b * t, n, d)
    x = ln(bb.ln_pre, x).permute(1, 0, 2)  # [n, (b t), d]
    for blk in bb.transformer.resblocks:
        xt = x.view(n, b, t, d).permute(2, 1, 0, 3).reshape(t, b * n, d)  # 'n (b t) d -> t (b n) d'
        xt = ln(blk.ln_1, xt)
        if blk.num_tadapter == 2:
            xt = adapter(blk.T_Adapter_in, xt)
        xt = adapter(blk.T_Adapter, mha(blk.attn, xt))
        x = x + xt.view(t, b, n, d).permute(2, 1, 0, 3).reshape(n, b * t, d)  # 't (b n) d -> n (b t) d'
        x = x + adapter(blk.S_Adapter, mha(blk.attn, ln(blk.ln_1, x)))
        xn = ln(blk.ln_2, x)
        y = blk.mlp.c_fc(xn)
        x = x + blk.mlp.c_proj(y * torch.sigmoid(1.702 * y)) + blk.scale * adapter(blk.MLP_Adapter, xn)
    feats = ln(bb.ln_post, x.permute(1, 0, 2))[:, 0].view(b, t, d)  # '(b t) d -> b d t', then I3DHead avg pool
    return model.cls_head.fc_cls(feats.mean(1))


@pytest.mark.parametrize("num_tadapter,scale", [(1, 0.5), (2, 1.0)])
def test_forward_matches_a_sequence_first_reference_of_the_official_code(num_tadapter, scale):
    model = randomise(tiny_model(num_tadapter=num_tadapter, adapter_scale=scale), std=0.15).eval()
    x = random_clips(batch=2, frames=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_logits(model, x), atol=2e-4, rtol=2e-4)


# ---------------------------------------------------------------------------------------------
# training


def test_tiny_forward_backward_on_uint8():
    model = randomise(tiny_model(num_tadapter=2, drop_path=0.0)).train()
    logits = model(random_clips())
    assert logits.shape == (2, 5) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert not any(k in ("mean", "std") for k in model.state_dict())
    with pytest.raises(ValueError):
        model(random_clips().permute(0, 2, 1, 3, 4))
    # another frame count / size than built for: temporal and positional embeddings resampled
    assert model(random_clips(batch=1, frames=6, size=48)).shape == (1, 5)
    model.eval()
    with torch.no_grad():
        ref = model(random_clips())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(random_clips())
    assert low.dtype == torch.bfloat16 and (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.02


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (False, True):
        model = randomise(tiny_model(num_tadapter=2, grad_checkpointing=flag)).train()
        torch.manual_seed(3)  # same stochastic-depth and dropout draws in both runs
        model(random_clips()).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_stochastic_depth_is_drawn_per_token_position_as_the_original():
    block = tiny_model(drop_path=0.9).backbone.transformer.resblocks[1]
    assert block.drop_path.dim == 1 and block.drop_path.p == pytest.approx(0.9)
    y = block.drop_path.train()(torch.ones(8, 17, 4))
    assert torch.equal(y, y[:1].expand(8, 17, 4)) and 0 < int((y[0, :, 0] > 0).sum()) < 17


def test_recipes_follow_the_study():
    k400, ssv2, synta = (load_recipe("aim", d) for d in ("k400ta", "ssv2ta", "synta"))
    for cfg, epochs, batch in ((k400, 50, 14), (ssv2, 50, 16), (synta, 30, 16)):
        tc = cfg["train"]
        assert (tc["optimizer"], tc["lr"], tc["betas"], tc["weight_decay"]) == ("adamw", 3e-4, [0.9, 0.999], 0.05)
        assert (tc["epochs"], tc["batch_size"], tc["warmup_epochs"], tc["label_smoothing"], tc["grad_clip"]) == (epochs, batch, 2.5, 0.1, 0.0)
        assert cfg["pretrained"] == "ViT-B/16" and cfg["model"]["drop_path"] == 0.2 and cfg["model"]["freeze"]
        assert cfg["input"]["mean"] == [122.769, 116.74, 104.04] and cfg["input"]["std"] == [68.493, 66.63, 70.321]
        assert cfg["test"]["short_side"] == 224
    assert (k400["input"]["frames"], k400["input"]["sampling"], k400["input"]["stride"], k400["input"]["flip"]) == (32, "dense", 4, True)
    assert (k400["model"]["adapter_scale"], k400["model"]["num_tadapter"], k400["test"]["clips"], k400["test"]["crops"]) == (0.5, 1, 3, 1)
    for cfg in (ssv2, synta):
        assert (cfg["input"]["frames"], cfg["input"]["sampling"], cfg["input"]["flip"]) == (8, "segment", False)
        assert (cfg["model"]["adapter_scale"], cfg["model"]["num_tadapter"], cfg["test"]["clips"], cfg["test"]["crops"]) == (1.0, 2, 1, 3)


def test_trains_and_evaluates_in_both_directions(synta_tiny, tmp_path, capsys):
    _, splits = synta_tiny
    train_and_evaluate_both_sets(splits, tmp_path, "aim", capsys)
    # the frozen tensors are still at their initialisation (train.py seeds before building); the rest moved
    ckpt = torch.load(tmp_path / "set1" / "ckpt.pt", weights_only=True)
    torch.manual_seed(ckpt["config"]["train"]["seed"])
    start = aim.build_model(ckpt["config"], [str(i) for i in range(len(ckpt["model"]["cls_head.fc_cls.bias"]))])
    for name, p in start.named_parameters():
        moved = not torch.equal(ckpt["model"][name], p.detach())
        assert moved == p.requires_grad or (p.requires_grad and name.endswith("in_proj_bias")), name
