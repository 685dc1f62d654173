"""models/uniformerv2.py: UniFormerV2-B/16 on the CLIP core, its released key layout and CLIP loading.

The expected checkpoint layout is written out below from a reading of the official module tree
(OpenGVLab/UniFormerV2 slowfast/models/uniformerv2.py and uniformerv2_model.py: `Uniformerv2.backbone`
= `VisionTransformer(conv1, class_embedding, positional_embedding, ln_pre, transformer)`,
`Transformer(resblocks, temporal_cls_token, dpe, dec, proj, balance)`, `ResidualAttentionBlock(lmhra1,
lmhra2, attn, ln_1, mlp, ln_2)`, `Local_MHRA.pos_embed` = BatchNorm3d + 3 Conv3d, `Extractor(attn,
ln_1, mlp.{c_fc, c_proj}, ln_2, ln_3)`), independently of the model file; mmaction2's port differs only in
`transformer.norm` and `cls_head.fc_cls`. The reference forward pass below follows the official code's
sequence-first layout step by step.
"""
import fnmatch
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import (build_unloaded, one_line_error, quiet, random_clips, save_checkpoint, tiny_cfg, tiny_vision_clip,
                      train_and_evaluate_both_sets)
from models import build_model, load_recipe
from models import clip as mc
from models import weights
import models.uniformerv2 as uv2

CLASSES = [f"class {i}" for i in range(5)]
K400 = [f"class {i}" for i in range(400)]
PUBLISHED_PARAMS = (115e6, ("mmaction2 configs/recognition/uniformerv2/README.md, Kinetics-400: UniFormerV2-B/16 "
                            "8 frames, params 115M"))
SSV2_LIKE = dict(no_lmhra=False, double_lmhra=True, temporal_downsample=True)


def tiny(**model):
    return tiny_cfg("uniformerv2", **model)


def tiny_model(num_classes=5, seed=0, **model) -> uv2.UniFormerV2:
    torch.manual_seed(seed)
    return build_unloaded(tiny(**model), num_classes)


def randomise(model, std=0.2):
    """Move every parameter and BN statistic off its initialisation (zero-init branches included)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * std)
    return model


# ---------------------------------------------------------------------------------------------
# the released layout, written from the official module tree


def official_keys(classes=400, width=768, layers=12, patch=16, grid=14, temporal_kernel=1, lmhra=0,
                  return_list=(8, 9, 10, 11), dw_reduction=1.5, mlp_factor=4.0) -> dict:
    """{name: shape} of the official Uniformerv2 state dict (K400/Syn-TA config by default)."""
    d, reduced, hidden = width, int(width // dw_reduction), round(mlp_factor * width)
    keys = {"backbone.class_embedding": [d], "backbone.positional_embedding": [grid * grid + 1, d],
            "backbone.conv1.weight": [d, 3, temporal_kernel, patch, patch],
            "backbone.ln_pre.weight": [d], "backbone.ln_pre.bias": [d]}
    t = "backbone.transformer."
    keys.update({t + "temporal_cls_token": [1, 1, d], t + "balance": [d]})

    def attention(prefix):
        keys.update({prefix + "attn.in_proj_weight": [3 * d, d], prefix + "attn.in_proj_bias": [3 * d],
                     prefix + "attn.out_proj.weight": [d, d], prefix + "attn.out_proj.bias": [d]})

    def norm(prefix):
        keys.update({prefix + "weight": [d], prefix + "bias": [d]})

    for i in range(layers):
        p = f"{t}resblocks.{i}."
        for k in range(1, lmhra + 1):
            m = f"{p}lmhra{k}.pos_embed."
            keys.update({m + "0.weight": [d], m + "0.bias": [d], m + "0.running_mean": [d], m + "0.running_var": [d],
                         m + "0.num_batches_tracked": [],
                         m + "1.weight": [reduced, d, 1, 1, 1], m + "1.bias": [reduced],
                         m + "2.weight": [reduced, 1, 3, 1, 1], m + "2.bias": [reduced],
                         m + "3.weight": [d, reduced, 1, 1, 1], m + "3.bias": [d]})
        attention(p)
        norm(p + "ln_1.")
        keys.update({p + "mlp.c_fc.weight": [4 * d, d], p + "mlp.c_fc.bias": [4 * d],
                     p + "mlp.c_proj.weight": [d, 4 * d], p + "mlp.c_proj.bias": [d]})
        norm(p + "ln_2.")
    for j in range(len(return_list)):
        keys.update({f"{t}dpe.{j}.weight": [d, 1, 3, 3, 3], f"{t}dpe.{j}.bias": [d]})
        p = f"{t}dec.{j}."
        attention(p)
        for ln in ("ln_1.", "ln_2.", "ln_3."):
            norm(p + ln)
        keys.update({p + "mlp.c_fc.weight": [hidden, d], p + "mlp.c_fc.bias": [hidden],
                     p + "mlp.c_proj.weight": [d, hidden], p + "mlp.c_proj.bias": [d]})
    norm(t + "proj.0.")
    keys.update({t + "proj.2.weight": [classes, d], t + "proj.2.bias": [classes]})
    return keys


TINY_LAYOUT = dict(width=64, layers=2, patch=8, grid=4, return_list=(0, 1))


def release_state(keys: dict, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(0) if k.endswith("num_batches_tracked") else
                torch.rand(v, generator=g) + 0.5 if k.endswith("running_var") else torch.randn(v, generator=g) * 0.1)
            for k, v in keys.items()}


def test_full_size_has_the_released_keys_and_parameter_count():
    for dataset, layout in (("k400ta", {}), ("synta", {}),
                            ("ssv2ta", dict(temporal_kernel=3, lmhra=2, return_list=range(4, 12)))):
        cfg = load_recipe("uniformerv2", dataset)
        cfg["pretrained"] = "none"
        with torch.device("meta"):
            model = build_model(cfg, K400)
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == official_keys(**layout), dataset
    model = None
    cfg = load_recipe("uniformerv2", "k400ta")
    cfg["pretrained"] = "none"
    with torch.device("meta"):
        model = build_model(cfg, K400)
    n = sum(p.numel() for p in model.parameters())
    published, source = PUBLISHED_PARAMS
    assert abs(n - published) / published < 0.01, f"{n / 1e6:.2f} M parameters; published: {source}"
    assert n == 114_552_208  # 85.80 M CLIP tower without ln_post/proj + 4 x 7.09 M global blocks + DPE + head
    assert all(p.requires_grad for p in model.parameters())  # the whole network is fine-tuned


def test_full_size_output_at_the_recipe_input():
    for dataset in ("k400ta", "ssv2ta", "synta"):
        cfg = load_recipe("uniformerv2", dataset)
        cfg["pretrained"] = "none"
        with torch.device("meta"):
            model = build_model(cfg, K400).eval()
            out = model(torch.empty(2, cfg["input"]["frames"], 3, 224, 224, dtype=torch.uint8))
        assert out.shape == (2, 400), dataset


def test_released_state_dicts_load_with_nothing_missing(tmp_path):
    model = tiny_model(num_classes=7, **SSV2_LIKE)
    keys = official_keys(classes=7, temporal_kernel=3, lmhra=2, **TINY_LAYOUT)
    state = release_state(keys)
    for container in ({"epoch": 50, "model_state": state, "optimizer_state": {}, "cfg": "..."}, state):
        report = model.load_pretrained(save_checkpoint(container, tmp_path), log=quiet)
        assert report["missing"] == [] and report["unexpected"] == [] and not report["dropped_head"]
        assert report["loaded"] == len(keys)
    own = model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in keys)
    # mmaction2's port: transformer.norm and cls_head.fc_cls
    renamed = {k.replace("backbone.transformer.proj.0.", "backbone.transformer.norm.")
                .replace("backbone.transformer.proj.2.", "cls_head.fc_cls."): v for k, v in release_state(keys, 1).items()}
    report = model.load_pretrained(save_checkpoint({"meta": {}, "state_dict": renamed}, tmp_path), log=quiet)
    assert report["missing"] == [] and report["unexpected"] == [] and not report["dropped_head"]
    assert torch.equal(model.backbone.transformer.proj[2].weight, renamed["cls_head.fc_cls.weight"])


def test_mismatches_are_refused_and_a_foreign_head_is_dropped(tmp_path):
    model = tiny_model(num_classes=7)
    keys = official_keys(classes=7, **TINY_LAYOUT)
    state = release_state(keys)
    messages = []
    # a K710 head (710 classes) is dropped with a message; the rest loads
    other = dict(state, **{"backbone.transformer.proj.2.weight": torch.zeros(710, 64),
                           "backbone.transformer.proj.2.bias": torch.zeros(710)})
    head = model.backbone.transformer.proj[2].weight.detach().clone()
    report = model.load_release(other, "k710.pyth", log=messages.append)
    assert report["dropped_head"] and sorted(report["missing"]) == sorted(uv2.HEAD_KEYS)
    assert any("dropping the 710-class head" in m for m in messages)
    assert torch.equal(model.backbone.transformer.proj[2].weight, head)
    # a missing tensor, an unexpected one, another shape: one line each
    with pytest.raises(SystemExit) as e:
        model.load_release({k: v for k, v in state.items() if not k.endswith("dec.1.ln_3.bias")}, "x.pyth", log=quiet)
    assert "1 missing (backbone.transformer.dec.1.ln_3.bias)" in one_line_error(e)
    with pytest.raises(SystemExit) as e:
        model.load_release(dict(state, **{"backbone.transformer.extra": torch.zeros(1)}), "x.pyth", log=quiet)
    assert "1 unexpected (backbone.transformer.extra)" in one_line_error(e)
    ssv2 = release_state(official_keys(classes=7, temporal_kernel=3, lmhra=2, **TINY_LAYOUT))
    with pytest.raises(SystemExit) as e:  # an SSv2 checkpoint (local MHRA, 3-frame conv1) into a K400 model
        model.load_release(ssv2, "ssv2.pyth", log=quiet)
    msg = one_line_error(e)
    assert "unexpected (backbone.transformer.resblocks.0.lmhra1" in msg and "of another shape (backbone.conv1.weight" in msg
    with pytest.raises(SystemExit) as e:
        model.load_pretrained(save_checkpoint({"state_dict": {"encoder.layer.0.weight": torch.zeros(2)}}, tmp_path),
                              log=quiet)
    assert "neither UniFormerV2 weights (backbone.* keys) nor CLIP weights" in one_line_error(e)
    with pytest.raises(SystemExit) as e:
        model.load_pretrained("/nowhere/k400.pyth", log=quiet)
    assert "not found" in one_line_error(e)


# ---------------------------------------------------------------------------------------------
# CLIP weights


def test_clip_weights_load_by_name_and_path_with_conv1_inflated(monkeypatch, tmp_path):
    clip = tiny_vision_clip()
    full = clip.state_dict()
    messages = []
    # by name (the download is replaced by the tiny weights) and as files: full CLIP, visual only
    monkeypatch.setattr(weights, "load_clip_state_dict", lambda spec, log=None: dict(full))
    cfg = tiny(**SSV2_LIKE)
    for spec in ("ViT-B/16", save_checkpoint(full, tmp_path), save_checkpoint(clip.visual.state_dict(), tmp_path)):
        cfg["pretrained"] = spec
        model = build_unloaded(cfg, 5)
        report = model.load_pretrained(spec, log=messages.append)
        bb = model.backbone
        assert report["unexpected"] == [] and report["missing"], report
        assert all(any(fnmatch.fnmatchcase(k, p) for p in uv2.NEW_MODULES) for k in report["missing"]), report["missing"]
        assert any(".lmhra2." in k for k in report["missing"]) and "transformer.balance" in report["missing"]
        w = bb.conv1.weight  # [64, 3, 3, 8, 8]: the 2-D kernel at the temporal centre
        assert torch.equal(w[:, :, 1], clip.visual.conv1.weight) and not w[:, :, 0].any() and not w[:, :, 2].any()
        for name in ("class_embedding", "positional_embedding", "ln_pre.weight", "transformer.resblocks.1.mlp.c_proj.weight",
                     "transformer.resblocks.0.attn.in_proj_weight"):
            assert torch.equal(bb.state_dict()[name], clip.visual.state_dict()[name]), name
    assert any("ln_post.weight, ln_post.bias, proj" in m and "not used" in m for m in messages)
    # a CLIP tower of another size is refused in one line
    other = mc.CLIP(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=48, vision_patch_size=8,
                    context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
    with pytest.raises(SystemExit) as e:
        build_unloaded(tiny(), 5).load_pretrained(save_checkpoint(other.state_dict(), tmp_path), log=quiet)
    assert "of another shape" in one_line_error(e)


def clip_class_tokens(visual, frames):
    """The plain CLIP tower on frames [M, 3, H, W]: the class token after the last block (before ln_post)."""
    return visual.transformer(visual.ln_pre(visual.embed(frames)))[:, 0]


def normalise(model, clip):
    return ((clip.float() - model.mean) / model.std)


def test_at_init_the_backbone_is_clip_and_the_query_path_is_zero():
    clip = tiny_vision_clip()
    x = random_clips(batch=2, frames=4)
    # K400-TA / Syn-TA layout (no local MHRA, no temporal downsampling): CLIP on every frame
    model = build_unloaded(tiny(), 5).eval()
    model.load_clip_visual({k: v for k, v in clip.visual.state_dict().items()}, "tiny CLIP", log=quiet)
    with torch.no_grad():
        cls = clip_class_tokens(clip.visual, normalise(model, x).flatten(0, 1)).view(2, 4, -1)
        expected = model.backbone.transformer.proj(0.5 * cls.mean(1))  # balance 0 -> sigmoid 1/2; query 0
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
        # the query path is live: once the global blocks are off their zero init the logits change
        torch.nn.init.normal_(model.backbone.transformer.dec[1].attn.out_proj.weight, std=0.5)
        assert (model(x) - expected).abs().max() > 1e-3
    # SSv2-TA layout at init: local MHRA adds nothing, the 3-frame conv1 sees only the centre frame,
    # so the backbone is CLIP on frames 0, 2 (stride 2 in time)
    model = build_unloaded(tiny(**SSV2_LIKE), 5).eval()
    model.load_clip_visual({k: v for k, v in clip.visual.state_dict().items()}, "tiny CLIP", log=quiet)
    with torch.no_grad():
        cls = clip_class_tokens(clip.visual, normalise(model, x)[:, ::2].flatten(0, 1)).view(2, 2, -1)
        torch.testing.assert_close(model(x), model.backbone.transformer.proj(0.5 * cls.mean(1)), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# forward pass against a sequence-first reference of the official code


def ln(norm, x):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, eps=norm.eps)


def mha(attn, q, kv):
    """nn.MultiheadAttention's arithmetic, sequence-first [L, N, D], with the full in_proj_bias."""
    d, h = q.shape[-1], attn.num_heads
    w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
    qq, kk, vv = F.linear(q, w[0], b[0]), F.linear(kv, w[1], b[1]), F.linear(kv, w[2], b[2])
    def split(t):
        return t.view(t.shape[0], t.shape[1], h, d // h).permute(1, 2, 0, 3)

    a = torch.softmax(split(qq) @ split(kk).transpose(-1, -2) / math.sqrt(d // h), dim=-1) @ split(vv)
    return attn.out_proj(a.permute(2, 0, 1, 3).flatten(2))


def quick_mlp(mlp, x):
    y = mlp.c_fc(x)
    return mlp.c_proj(y * torch.sigmoid(1.702 * y))


def ref_mhra(m, x):  # [N, C, T, H, W]
    bn, c1, c2, c3 = m.pos_embed
    x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
    x = F.conv3d(x, c1.weight, c1.bias)
    x = F.conv3d(x, c2.weight, c2.bias, padding=(1, 0, 0), groups=c2.groups)
    return F.conv3d(x, c3.weight, c3.bias)


def ref_local(m, x, t):  # x [1 + HW, N*T, C] -> same, as Local_MHRA in ResidualAttentionBlock.forward
    tmp = x[1:]
    length, nt, c = tmp.shape
    side = math.isqrt(length)
    tmp = tmp.view(side, side, nt // t, t, c).permute(2, 4, 3, 0, 1).contiguous()
    tmp = tmp + ref_mhra(m, tmp)
    tmp = tmp.view(nt // t, c, t, length).permute(3, 0, 2, 1).contiguous().view(length, nt, c)
    return torch.cat([x[:1], tmp], dim=0)


def reference_logits(model, clip_uint8):
    bb, tr = model.backbone, model.backbone.transformer
    x = normalise(model, clip_uint8).permute(0, 2, 1, 3, 4)  # [N, 3, T, H, W]
    x = F.conv3d(x, bb.conv1.weight, stride=bb.conv1.stride, padding=bb.conv1.padding)
    n, c, t, hh, ww = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(n * t, hh * ww, c)
    x = torch.cat([bb.class_embedding + torch.zeros(x.shape[0], 1, c), x], dim=1) + bb.positional_embedding
    x = ln(bb.ln_pre, x).permute(1, 0, 2)  # [L, N*T, C]
    length = x.shape[0]
    query = tr.temporal_cls_token.repeat(1, n, 1)
    j = -1
    for i, blk in enumerate(tr.resblocks):
        if hasattr(blk, "lmhra1"):
            x = ref_local(blk.lmhra1, x, t)
        x = x + mha(blk.attn, ln(blk.ln_1, x), ln(blk.ln_1, x))
        if hasattr(blk, "lmhra2"):
            x = ref_local(blk.lmhra2, x, t)
        x = x + quick_mlp(blk.mlp, ln(blk.ln_2, x))
        if i in tr.return_list:
            j += 1
            tmp = x.clone().view(length, n, t, c)
            feats = tmp[1:].permute(1, 3, 2, 0).reshape(n, c, t, hh, ww)
            dpe = tr.dpe[j]
            feats = F.conv3d(feats, dpe.weight, dpe.bias, padding=1, groups=c).view(n, c, t, length - 1)
            tmp[1:] = tmp[1:] + feats.permute(3, 0, 2, 1)
            tmp = tmp.permute(2, 0, 1, 3).flatten(0, 1)  # [T * L, N, C]
            dec = tr.dec[j]
            query = query + mha(dec.attn, ln(dec.ln_1, query), ln(dec.ln_3, tmp))
            query = query + quick_mlp(dec.mlp, ln(dec.ln_2, query))
    w = torch.sigmoid(tr.balance)
    fused = (1 - w) * query[0] + w * x.view(length, n, t, c)[0].mean(1)
    return F.linear(ln(tr.proj[0], fused), tr.proj[2].weight, tr.proj[2].bias)


@pytest.mark.parametrize("layout", ["k400", "ssv2"])
def test_forward_matches_a_sequence_first_reference_of_the_official_code(layout):
    model = tiny_model(**(SSV2_LIKE if layout == "ssv2" else {}))
    randomise(model, std=0.15).eval()
    x = random_clips(batch=2, frames=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_logits(model, x), atol=2e-4, rtol=2e-4)


# ---------------------------------------------------------------------------------------------
# training


def test_tiny_forward_backward_on_uint8():
    for layout in ({}, SSV2_LIKE):
        model = randomise(tiny_model(**layout)).train()  # stochastic depth off: every branch must get a gradient
        logits = model(random_clips())
        assert logits.shape == (2, 5) and logits.dtype == torch.float32
        logits.logsumexp(1).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            grad = p.grad.chunk(3)[0::2] if name.endswith("in_proj_bias") else (p.grad,)  # key bias: no gradient
            assert all(g.abs().sum() > 0 for g in grad), name
        assert not any("mean" == k or "std" == k for k in model.state_dict())
        with pytest.raises(ValueError):
            model(random_clips().permute(0, 2, 1, 3, 4))
    # another input size: positions resampled; bf16 autocast on the CPU gives close logits
    model = randomise(tiny_model(**SSV2_LIKE), std=0.05).eval()
    assert model(random_clips(batch=1, frames=6, size=48)).shape == (1, 5)
    with torch.no_grad():
        ref = model(random_clips())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(random_clips())
    assert low.dtype == torch.bfloat16 and (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.02


def test_gradient_checkpointing_gives_the_same_gradients_and_batchnorm_statistics():
    grads, stats = [], []
    for flag in (False, True):
        model = randomise(tiny_model(**SSV2_LIKE, grad_checkpointing=flag, backbone_drop_path=0.2, drop_path=0.3)).train()
        torch.manual_seed(3)  # same dropout and stochastic-depth draws in both runs
        model(random_clips()).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        stats.append({n: b.clone() for n, b in model.named_buffers() if "running" in n or "num_batches" in n})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-5, rtol=1e-4, msg=n)
    assert stats[0].keys() == stats[1].keys() and len(stats[0]) == 2 * 2 * 3  # 2 blocks x 2 local MHRA x 3 buffers
    for n, b in stats[0].items():  # recomputation in the backward pass does not update BatchNorm a second time
        torch.testing.assert_close(stats[1][n], b, msg=n)
    assert int(stats[1]["backbone.transformer.resblocks.0.lmhra1.pos_embed.0.num_batches_tracked"]) == 1


def test_stochastic_depth_is_drawn_per_token_position_as_the_original():
    drop = mc.DropPath(0.5, dim=1).train()
    blocks = tiny_model().backbone.transformer
    assert all(blk.drop_path.dim == 1 for blk in (*blocks.resblocks, *blocks.dec))  # the local MHRA's: per clip
    assert all(blk.drop_path_clip.dim == 0 for blk in blocks.resblocks)
    y = drop(torch.ones(6, 50, 4))
    kept = y[0, :, 0] > 0
    assert torch.equal(y, kept.view(1, 50, 1).float().expand(6, 50, 4) * 2)  # same mask for every row
    assert 5 < int(kept.sum()) < 45
    assert torch.equal(drop.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_recipes_follow_the_study():
    k400, synta, ssv2 = (load_recipe("uniformerv2", d) for d in ("k400ta", "synta", "ssv2ta"))
    for cfg, epochs, lr, warmup in ((k400, 40, 1e-5, 5), (synta, 30, 1e-5, 3), (ssv2, 50, 4e-5, 5)):
        tc = cfg["train"]
        assert (tc["optimizer"], tc["lr"], tc["epochs"], tc["warmup_epochs"], tc["batch_size"]) == ("adamw", lr, epochs, warmup, 32)
        assert (tc["weight_decay"], tc["min_lr"], tc["grad_clip"]) == (0.05, 1e-6, 20.0)
        assert tc["lr"] * tc["warmup_start_factor"] == pytest.approx(1e-6)  # WARMUP_START_LR
        assert (cfg["test"]["clips"], cfg["test"]["crops"], cfg["test"]["short_side"]) == (1, 3, 224)
        assert cfg["pretrained"] == "ViT-B/16" and cfg["input"]["sampling"] == "segment"
        assert cfg["input"]["mean"] == [114.75] * 3 and cfg["input"]["std"] == [57.375] * 3
    for cfg in (k400, synta):
        m = cfg["model"]
        assert (cfg["input"]["frames"], m["no_lmhra"], m["temporal_downsample"], m["return_list"]) == (8, True, False, [8, 9, 10, 11])
        assert (m["backbone_drop_path"], m["drop_path"], m["cls_dropout"]) == (0.0, 0.0, 0.5)
    m = ssv2["model"]
    assert (ssv2["input"]["frames"], ssv2["input"]["flip"], m["no_lmhra"], m["double_lmhra"], m["temporal_downsample"]) == (16, False, False, True, True)
    assert (m["return_list"], m["backbone_drop_path"], m["drop_path"]) == (list(range(4, 12)), 0.2, 0.4)


def test_trains_and_evaluates_in_both_directions(synta_tiny, tmp_path, capsys):
    _, splits = synta_tiny
    train_and_evaluate_both_sets(splits, tmp_path, "uniformerv2", capsys)
