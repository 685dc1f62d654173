"""The PySlowFast-family video models: c2d, i3d, x3d, slowfast, mvitv2, revmvit.

Full-size models are built on torch.device('meta') (shapes only), so parameter counts, output shapes
and checkpoint layouts of the real networks are checked without allocating them. The expected
checkpoint layouts are written out below from a reading of PySlowFast's module tree
(slowfast/models/{video_model_builder,resnet_helper,stem_helper,head_helper,attention,
reversible_mvit}.py), independently of the model files.
"""
import copy
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import one_line_error
from models import build_model, load_recipe
from models.video_common import load_pretrained, load_state
from models.weights import extract_state_dict

NAMES = ["c2d", "i3d", "x3d", "slowfast", "mvitv2", "revmvit"]
K400 = [f"class{i}" for i in range(400)]

# Published parameter counts with a 400-class head, and where they are stated.
PUBLISHED_PARAMS = {
    "c2d": (24.33e6, "pytorchvideo docs/source/model_zoo.md, Kinetics-400: C2D R50 8x8, 24.33 M"),
    "i3d": (28.04e6, "pytorchvideo docs/source/model_zoo.md, Kinetics-400: I3D R50 8x8, 28.04 M"),
    "x3d": (3.79e6, "pytorchvideo docs/source/model_zoo.md, Kinetics-400: X3D M, 3.79 M (PySlowFast MODEL_ZOO.md: 3.8)"),
    "slowfast": (34.57e6, "pytorchvideo docs/source/model_zoo.md, Kinetics-400: SlowFast R50 8x8, 34.57 M"),
    "mvitv2": (34.5e6, "PySlowFast projects/mvitv2/README.md, Kinetics-400: MViTv2-S 16x4, 34.5 M"),
    "revmvit": (34.9e6, "PySlowFast projects/rev/README.md, Kinetics 400: Rev-MViT-B 16x4, 34.9 M"),
}


def meta_model(name, dataset="synta", classes=K400):
    cfg = load_recipe(name, dataset)
    with torch.device("meta"):
        return build_model(cfg, classes), cfg


def tiny_model(name, classes=("a", "b", "c", "d", "e"), **model_overrides):
    cfg = load_recipe(name, "synta", tiny=True)
    cfg["model"].update(model_overrides)
    return build_model(cfg, list(classes)), cfg


def tiny_clip(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, cfg["input"]["frames"], 3, 32, 32), dtype=torch.uint8, generator=g)


# ---------------------------------------------------------------------------------------------
# tiny configs: forward + backward


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    model, cfg = tiny_model(name)
    model.train()
    clip = tiny_clip(cfg)
    logits = model(clip)
    assert logits.shape == (2, 5) and logits.dtype == torch.float32
    loss = F.cross_entropy(logits, torch.tensor([0, 3]))
    assert torch.isfinite(loss)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{n} got no gradient"
        assert torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    # the normalisation constants are buffers outside the state dict
    assert not any(k.startswith("input.") for k in model.state_dict())
    assert torch.allclose(model.input.mean.flatten(), torch.tensor(cfg["input"]["mean"]))


# ---------------------------------------------------------------------------------------------
# full size: parameter counts and output shapes (meta device)


@pytest.mark.parametrize("name", NAMES)
def test_full_size_parameter_count_and_output(name):
    model, cfg = meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    published, source = PUBLISHED_PARAMS[name]
    assert abs(n - published) / published < 0.01, f"{name}: {n / 1e6:.2f} M parameters, published {source}"
    for dataset in ("synta", "ssv2ta"):
        cfg = load_recipe(name, dataset)
        with torch.device("meta"):
            model = build_model(cfg, K400).eval()
            out = model(torch.empty(2, cfg["input"]["frames"], 3, cfg["input"]["size"], cfg["input"]["size"], dtype=torch.uint8))
        assert out.shape == (2, 400)


def test_recipes_follow_the_study():
    expect = {  # the study's K400-TA configs (Motion-Transfer configs/<model>/*_k400.yaml): frames x stride, optimizer, lr, wd, epochs, batch
        "c2d": (8, 8, "sgd", 0.1, 1e-4, 50, 64), "i3d": (8, 8, "sgd", 0.1, 1e-4, 50, 64),
        "x3d": (16, 5, "sgd", 0.1, 5e-5, 50, 64), "slowfast": (32, 2, "sgd", 0.1, 1e-4, 50, 32),
        "mvitv2": (16, 4, "adamw", 1e-4, 0.05, 50, 12), "revmvit": (16, 4, "adamw", 1e-4, 0.07, 50, 40),
    }
    for name, (t, s, opt, lr, wd, ep, bs) in expect.items():
        cfg = load_recipe(name, "k400ta")
        assert (cfg["input"]["frames"], cfg["input"]["stride"], cfg["input"]["sampling"]) == (t, s, "dense"), name
        tc = cfg["train"]
        assert (tc["optimizer"], tc["lr"], tc["weight_decay"], tc["epochs"], tc["batch_size"]) == (opt, lr, wd, ep, bs), name
        assert cfg["pretrained"] == "none" and cfg["input"]["mean"] == [114.75] * 3 and cfg["input"]["std"] == [57.375] * 3
    assert load_recipe("slowfast", "ssv2ta")["input"]["frames"] == 64
    assert load_recipe("mvitv2", "ssv2ta")["train"]["optimizer"] == "sgd"
    assert load_recipe("mvitv2", "ssv2ta")["model"]["drop_path"] == 0.4


# ---------------------------------------------------------------------------------------------
# checkpoint layouts of the released PySlowFast models, written from PySlowFast's module tree.
# Names cross-checked against published material: a PySlowFast caffe2-conversion log lists
# "res2_0_branch2a_bn_riv: (64,) => s2.pathway0_res0.branch2.a_bn.running_var",
# "t_pool1_subsample_w: (16, 8, 5, 1, 1) => s1_fuse.conv_f2s.weight" (SlowFast 4x16, fusion kernel 5),
# "t_res4_7_branch2b_bn_riv: (32,) => s4.pathway1_res7.branch2.b_bn.running_var",
# "res4_14_branch2a_w: (256, 1024, 1, 1, 1) => s4.pathway0_res14.branch2.a.weight"; PySlowFast's
# checkpoint.py handles "patch_embed.proj.weight" and "attn.pool_{q,k,v}.weight"; the attribute names
# se/fc1/fc2, conv_5/lin_5, rel_pos_h/w/t, rev_backbone/layers/F/G/res_proj are those of its modules.


def bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def linear(prefix, out, inp, bias=True):
    return {f"{prefix}.weight": (out, inp), **({f"{prefix}.bias": (out,)} if bias else {})}


def bottleneck_keys(prefix, n, din, dout, inner, kernels):
    keys = {}
    for i in range(n):
        p = f"{prefix}{i}"
        cin = din if i == 0 else dout
        if i == 0:
            keys.update({f"{p}.branch1.weight": (dout, cin, 1, 1, 1), **bn(f"{p}.branch1_bn", dout)})
        keys.update({f"{p}.branch2.a.weight": (inner, cin, kernels[i], 1, 1), **bn(f"{p}.branch2.a_bn", inner),
                     f"{p}.branch2.b.weight": (inner, inner, 1, 3, 3), **bn(f"{p}.branch2.b_bn", inner),
                     f"{p}.branch2.c.weight": (dout, inner, 1, 1, 1), **bn(f"{p}.branch2.c_bn", dout)})
    return keys


def pyslowfast_resnet(arch, k=400):
    # _TEMPORAL_KERNEL_BASIS: c2d all 1; i3d stem 5, res2 [3], res3 [3, 1], res4 [3, 1], res5 [1, 3]
    kernels = {"c2d": [[1] * 3, [1] * 4, [1] * 6, [1] * 3],
               "i3d": [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]}[arch]
    keys = {"s1.pathway0_stem.conv.weight": (64, 3, 5 if arch == "i3d" else 1, 7, 7), **bn("s1.pathway0_stem.bn", 64)}
    din = 64
    for s, (n, inner) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        keys.update(bottleneck_keys(f"s{s + 2}.pathway0_res", n, din, inner * 4, inner, kernels[s]))
        din = inner * 4
    return {**keys, **linear("head.projection", k, 2048)}


def pyslowfast_slowfast(k=400):
    keys = {"s1.pathway0_stem.conv.weight": (64, 3, 1, 7, 7), **bn("s1.pathway0_stem.bn", 64),
            "s1.pathway1_stem.conv.weight": (8, 3, 5, 7, 7), **bn("s1.pathway1_stem.bn", 8)}
    fuse_in = [8, 32, 64, 128]  # Fast channels after the stem, res2, res3, res4 -> s1_fuse .. s4_fuse
    for s in range(4):
        keys.update({f"s{s + 1}_fuse.conv_f2s.weight": (2 * fuse_in[s], fuse_in[s], 7, 1, 1), **bn(f"s{s + 1}_fuse.bn", 2 * fuse_in[s])})
    slow_in, fast_in = [64 + 16, 256 + 64, 512 + 128, 1024 + 256], [8, 32, 64, 128]
    for s, (n, inner) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        keys.update(bottleneck_keys(f"s{s + 2}.pathway0_res", n, slow_in[s], inner * 4, inner, [1 if s < 2 else 3] * n))
        keys.update(bottleneck_keys(f"s{s + 2}.pathway1_res", n, fast_in[s], inner // 2, inner // 8, [3] * n))
    return {**keys, **linear("head.projection", k, 2048 + 256)}


def pyslowfast_x3d(k=400):
    keys = {"s1.pathway0_stem.conv_xy.weight": (24, 3, 1, 3, 3), "s1.pathway0_stem.conv.weight": (24, 1, 5, 1, 1),
            **bn("s1.pathway0_stem.bn", 24)}
    din = 24
    # (blocks, out, inner = 2.25 x out, SE width = round_width(inner / 16, min 8, divisor 8))
    for s, (n, dout, inner, se) in enumerate([(3, 24, 54, 8), (5, 48, 108, 8), (11, 96, 216, 16), (7, 192, 432, 32)]):
        for i in range(n):
            p = f"s{s + 2}.pathway0_res{i}"
            cin = din if i == 0 else dout
            if i == 0:
                keys.update({f"{p}.branch1.weight": (dout, cin, 1, 1, 1), **bn(f"{p}.branch1_bn", dout)})
            keys.update({f"{p}.branch2.a.weight": (inner, cin, 1, 1, 1), **bn(f"{p}.branch2.a_bn", inner),
                         f"{p}.branch2.b.weight": (inner, 1, 3, 3, 3), **bn(f"{p}.branch2.b_bn", inner),
                         f"{p}.branch2.c.weight": (dout, inner, 1, 1, 1), **bn(f"{p}.branch2.c_bn", dout)})
            if i % 2 == 0:
                keys.update({f"{p}.branch2.se.fc1.weight": (se, inner, 1, 1, 1), f"{p}.branch2.se.fc1.bias": (se,),
                             f"{p}.branch2.se.fc2.weight": (inner, se, 1, 1, 1), f"{p}.branch2.se.fc2.bias": (inner,)})
        din = dout
    keys.update({"head.conv_5.weight": (432, 192, 1, 1, 1), **bn("head.conv_5_bn", 432),
                 "head.lin_5.weight": (2048, 432, 1, 1, 1), **linear("head.projection", k, 2048)})
    return keys


def attention_keys(p, din, dout, heads, pool_q, qkv_bias, rel_len=None):
    hd = dout // heads
    keys = {**linear(f"{p}.qkv", 3 * dout, din, qkv_bias), **linear(f"{p}.proj", dout, dout)}
    for x in ("q", "k", "v") if pool_q else ("k", "v"):
        keys.update({f"{p}.pool_{x}.weight": (hd, 1, 3, 3, 3), f"{p}.norm_{x}.weight": (hd,), f"{p}.norm_{x}.bias": (hd,)})
    if rel_len:
        keys.update({f"{p}.rel_pos_h": (rel_len, hd), f"{p}.rel_pos_w": (rel_len, hd), f"{p}.rel_pos_t": (15, hd)})
    return keys


def ln(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def pyslowfast_mvitv2(k=400):
    # (dim in, dim out, heads, rel-pos table length 2 * max(q size, kv size) - 1) per block for 16 x 224^2
    blocks = ([(96, 96, 1, 111), (96, 192, 2, 55), (192, 192, 2, 55), (192, 384, 4, 27)] + [(384, 384, 4, 27)] * 10
              + [(384, 768, 8, 27), (768, 768, 8, 13)])
    keys = {"patch_embed.proj.weight": (96, 3, 3, 7, 7), "patch_embed.proj.bias": (96,), "cls_token": (1, 1, 96)}
    for i, (din, dout, heads, rel) in enumerate(blocks):
        p = f"blocks.{i}"
        keys.update({**ln(f"{p}.norm1", din), **attention_keys(f"{p}.attn", din, dout, heads, True, True, rel),
                     **ln(f"{p}.norm2", dout), **linear(f"{p}.mlp.fc1", 4 * dout, dout), **linear(f"{p}.mlp.fc2", dout, 4 * dout)})
        if din != dout:
            keys.update(linear(f"{p}.proj", dout, din))
    return {**keys, **ln("norm", 768), **linear("head.projection", k, 768)}


def pyslowfast_revmvit(k=400):
    layers = ([(96, 96, 1, False), (96, 192, 2, True), (192, 192, 2, False), (192, 384, 4, True)] + [(384, 384, 4, False)] * 10
              + [(384, 768, 8, True), (768, 768, 8, False)])  # (dim in, dim out, heads, stage transition)
    keys = {"patch_embed.proj.weight": (96, 3, 3, 7, 7), "patch_embed.proj.bias": (96,),
            "pos_embed_spatial": (1, 56 * 56, 96), "pos_embed_temporal": (1, 8, 96)}
    for i, (din, dout, heads, transition) in enumerate(layers):
        p = f"rev_backbone.layers.{i}"
        keys.update({**ln(f"{p}.F.norm", din), **attention_keys(f"{p}.F.attn", din, dout, heads, transition, False),
                     **ln(f"{p}.G.norm", dout), **linear(f"{p}.G.mlp.fc1", 4 * dout, dout), **linear(f"{p}.G.mlp.fc2", dout, 4 * dout)})
        if transition:
            keys.update(linear(f"{p}.res_proj", dout, din))
    return {**keys, **ln("norm", 1536), **linear("head.projection", k, 1536)}


PYSLOWFAST_LAYOUTS = {
    "c2d": lambda: pyslowfast_resnet("c2d"), "i3d": lambda: pyslowfast_resnet("i3d"), "x3d": pyslowfast_x3d,
    "slowfast": pyslowfast_slowfast, "mvitv2": pyslowfast_mvitv2, "revmvit": pyslowfast_revmvit,
}


@pytest.mark.parametrize("name", NAMES)
def test_released_checkpoint_layout_loads(name):
    layout = PYSLOWFAST_LAYOUTS[name]()
    model, _ = meta_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) - set(layout) == set(), f"not in the PySlowFast layout: {sorted(set(ours) - set(layout))[:5]}"
    assert set(layout) - set(ours) == set(), f"missing from the model: {sorted(set(layout) - set(ours))[:5]}"
    assert {k for k in layout if ours[k] != layout[k]} == set()
    n_params = sum(math.prod(s) for k, s in layout.items() if not k.split(".")[-1].startswith(("running_", "num_batches")))
    assert abs(n_params - PUBLISHED_PARAMS[name][0]) / PUBLISHED_PARAMS[name][0] < 0.01
    # the loader takes the container as released: {'model_state': ...} (+ epoch, optimizer, cfg)
    with torch.device("meta"):
        container = {"epoch": 196, "model_state": {k: torch.empty(s) for k, s in layout.items()}, "cfg": "MODEL: ..."}
    messages = []
    report = load_state(model, extract_state_dict(container), "released", name, messages.append)
    assert report["loaded"] == len(layout) and not report["dropped_head"] and not report["missing"]
    # ... also with 20 classes: the 400-class head is dropped with a message, the rest loads
    small, _ = meta_model(name, classes=[str(i) for i in range(20)])
    report = load_state(small, extract_state_dict(container), "released", name, messages.append)
    assert report["dropped_head"] and report["loaded"] == len(layout) - 2
    assert any("dropping the 400-class head" in m for m in messages)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_file_round_trip_and_refusals(tmp_path, capsys):
    torch.manual_seed(0)
    model, cfg = tiny_model("i3d")
    state = model.state_dict()
    path = tmp_path / "i3d.pyth"
    torch.save({"epoch": 3, "model_state": state, "optimizer_state": {}, "cfg": "TRAIN: {}"}, path)
    torch.manual_seed(1)
    other, _ = tiny_model("i3d")
    assert not torch.equal(other.state_dict()["s2.pathway0_res0.branch2.a.weight"], state["s2.pathway0_res0.branch2.a.weight"])
    load_pretrained(other, str(path), "i3d")
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state.items())
    # through the recipe key `pretrained`, with a DDP `module.` prefix
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "ddp.pt")
    cfg2 = copy.deepcopy(cfg)
    cfg2["pretrained"] = str(tmp_path / "ddp.pt")
    loaded = build_model(cfg2, list("abcde"))
    assert torch.equal(loaded.state_dict()["head.projection.weight"], state["head.projection.weight"])

    def refused(sd, match):
        torch.save({"model_state": sd}, tmp_path / "bad.pyth")
        with pytest.raises(SystemExit) as e:
            load_pretrained(tiny_model("i3d")[0], str(tmp_path / "bad.pyth"), "i3d")
        one_line_error(e, match)

    sd = dict(state)
    del sd["s3.pathway0_res0.branch2.b.weight"]
    refused(sd, "1 missing (s3.pathway0_res0.branch2.b.weight)")
    refused({**state, "s6.extra": torch.zeros(1)}, "1 unexpected (s6.extra)")
    refused({**state, "s1.pathway0_stem.conv.weight": torch.zeros(8, 3, 1, 7, 7)}, "s1.pathway0_stem.conv.weight: checkpoint [8, 3, 1, 7, 7] vs model [8, 3, 5, 7, 7]")
    # a Caffe2 pickle (dict of numpy blobs) is refused without unpickling arbitrary objects
    with open(tmp_path / "c2.pkl", "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.zeros((8, 3, 1, 7, 7), np.float32)}}, f)
    with pytest.raises(SystemExit, match="Caffe2 .pkl"):
        load_pretrained(tiny_model("i3d")[0], str(tmp_path / "c2.pkl"), "i3d")
    with pytest.raises(SystemExit, match="not found"):
        load_pretrained(tiny_model("i3d")[0], str(tmp_path / "nope.pyth"), "i3d")


# ---------------------------------------------------------------------------------------------
# MViTv2 attention: against a transcription of PySlowFast's formula (float64)


def pyslowfast_attention(attn, x, thw):
    """MultiScaleAttention.forward of slowfast/models/attention.py, restated: pooled q/k/v with the
    class token kept aside, logits (q * scale) k^T, decomposed relative positions added through a
    [q_t, q_h, q_w, k_t, k_h, k_w] view, softmax, residual pooling, projection."""
    b, n, _ = x.shape
    nh = attn.num_heads
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).reshape(b, n, 3, nh, -1).permute(2, 0, 3, 1, 4)

    def pool(t, conv, norm):
        cls, t = t[:, :, :1], t[:, :, 1:]
        c = t.shape[-1]
        t = conv(t.reshape(b * nh, *thw, c).permute(0, 4, 1, 2, 3))
        shape = list(t.shape[2:])
        t = t.reshape(b, nh, c, -1).transpose(2, 3)
        return norm(torch.cat([cls, t], 2)), shape

    q, (qt, qh, qw) = pool(q, attn.pool_q, attn.norm_q)
    k, (kt, kh, kw) = pool(k, attn.pool_k, attn.norm_k)
    v, _ = pool(v, attn.pool_v, attn.norm_v)
    d = q.shape[-1]
    logits = (q * attn.scale) @ k.transpose(-2, -1)

    def table(rel, qs, ks):
        qr, kr = max(ks / qs, 1.0), max(qs / ks, 1.0)
        dist = torch.arange(qs)[:, None] * qr - torch.arange(ks)[None, :] * kr + (ks - 1) * kr
        return rel[dist.long()]

    r_q = q[:, :, 1:].reshape(b, nh, qt, qh, qw, d)
    rel_h = torch.einsum("bythwc,hkc->bythwk", r_q, table(attn.rel_pos_h, qh, kh))
    rel_w = torch.einsum("bythwc,wkc->bythwk", r_q, table(attn.rel_pos_w, qw, kw))
    rel_t = torch.einsum("bythwc,tkc->bythwk", r_q, table(attn.rel_pos_t, qt, kt))
    sp = logits[:, :, 1:, 1:].reshape(b, nh, qt, qh, qw, kt, kh, kw)
    sp = sp + rel_h[..., None, :, None] + rel_w[..., None, None, :] + rel_t[..., :, None, None]
    logits = logits.clone()
    logits[:, :, 1:, 1:] = sp.reshape(b, nh, qt * qh * qw, kt * kh * kw)
    out = logits.softmax(-1) @ v
    out[:, :, 1:] = out[:, :, 1:] + q[:, :, 1:]
    return attn.proj(out.transpose(1, 2).reshape(b, -1, attn.dim_out))


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_mvitv2_attention_matches_pyslowfast(impl):
    torch.manual_seed(0)
    with torch.device("cpu"):
        model, cfg = tiny_model("mvitv2", attn_impl=impl)
    model = model.double().eval()
    for i in (0, 1, 3):  # query stride 1 with pooled kv (q 8x8, kv 4x4); query pooled (q 4x4, kv 4x4 / 2x2)
        attn = model.blocks[i].attn
        t, h, w = attn.thw
        x = torch.randn(2, 1 + t * h * w, model.blocks[i].dim, dtype=torch.float64)
        ref = pyslowfast_attention(attn, x, attn.thw)
        assert torch.allclose(attn(x), ref, atol=1e-10, rtol=1e-10), i


# ---------------------------------------------------------------------------------------------
# Rev-MViT: reversible backward = plain autograd; activation memory independent of depth


def test_revmvit_gradients_equal_plain_autograd():
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        rev, cfg = tiny_model("revmvit", drop_path=0.3)
        plain = copy.deepcopy(rev)
        plain.rev_backbone.custom_backward = False
        clip, labels = tiny_clip(cfg, batch=3), torch.tensor([0, 2, 4])
        losses = []
        for model in (rev, plain):
            model.train()
            torch.manual_seed(7)  # the same drop-path masks and head dropout in both runs
            loss = F.cross_entropy(model(clip), labels)
            loss.backward()
            losses.append(loss.item())
    finally:
        torch.set_default_dtype(torch.float32)
    assert losses[0] == pytest.approx(losses[1], abs=1e-12)
    for (n, p), q in zip(rev.named_parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-5), n
    assert max((p.grad - q.grad).abs().max().item() for p, q in zip(rev.parameters(), plain.parameters())) < 1e-9


def saved_activation_bytes(depth, custom_backward, drop_path=0.0):
    """Bytes of the tensors autograd keeps for backward during one training forward (parameters not
    counted: they exist anyway). The tiny Rev-MViT gets one transition at layer 1, so depth d has
    1 + (d - 2) reversible blocks."""
    torch.manual_seed(0)
    model, cfg = tiny_model("revmvit", depth=depth, dim_mul=[[1, 2.0]], head_mul=[[1, 2.0]], pool_q_stride=[[1, 1, 2, 2]],
                            rev_buffer_layers=[1], reversible_backward=custom_backward, drop_path=drop_path)
    model.train()
    params = {p.data_ptr() for p in model.parameters()}
    total = [0]

    def pack(t):
        if t.data_ptr() not in params:
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tiny_clip(cfg))
    return total[0]


def test_revmvit_activation_memory_does_not_grow_with_depth():
    rev = [saved_activation_bytes(d, True) for d in (3, 9)]
    plain = [saved_activation_bytes(d, False) for d in (3, 9)]
    assert rev[0] == rev[1], rev  # 1 vs 7 reversible blocks: the same bytes
    assert plain[1] - plain[0] > 6 * 0.5 * (plain[0] - rev[0]) / 2, plain  # plain autograd grows with every block
    assert plain[1] > 1.5 * rev[1]
    # with drop-path the per-block masks (batch x 4 bytes) are all that is added
    rev_dp = [saved_activation_bytes(d, True, 0.2) for d in (3, 9)]
    assert rev_dp[1] - rev_dp[0] <= 6 * 2 * 4


def test_revmvit_under_autocast():
    """bf16 autocast: the reversible backward (recomputing under the forward's autocast state) is as
    close to an fp32 reference as plain autograd under autocast. Compared on the linear layers: CPU
    bf16 depthwise-conv weight gradients are inaccurate in both paths alike."""
    torch.manual_seed(0)
    rev, cfg = tiny_model("revmvit")
    plain, ref = copy.deepcopy(rev), copy.deepcopy(rev)
    plain.rev_backbone.custom_backward = False
    clip = tiny_clip(cfg)
    grads = []
    for model, bf16 in ((rev, True), (plain, True), (ref, False)):
        model.train()
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(clip), torch.tensor([1, 2]))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.ndim == 2]))
    g_rev, g_plain, g_ref = grads
    assert torch.isfinite(g_rev).all()
    err_rev, err_plain = ((g - g_ref).norm() / g_ref.norm() for g in (g_rev, g_plain))
    assert err_rev < 0.05 and err_rev < 2 * err_plain + 0.01, (err_rev, err_plain)


# ---------------------------------------------------------------------------------------------
# smaller contracts


def test_cnn_gradient_checkpointing_matches_and_updates_bn_once():
    clip = None
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model, cfg = tiny_model("x3d", grad_checkpointing=ckpt)
        model.train()
        clip = tiny_clip(cfg) if clip is None else clip
        loss = F.cross_entropy(model(clip), torch.tensor([0, 1]))
        loss.backward()
        bn = model.s2.pathway0_res0.branch2.a_bn
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()], bn.running_mean.clone(), bn.num_batches_tracked.item()))
    (l0, g0, rm0, n0), (l1, g1, rm1, n1) = results
    assert l0 == pytest.approx(l1, rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(g0, g1))
    assert torch.allclose(rm0, rm1, atol=1e-6) and n0 == n1 == 1


def test_slowfast_picks_the_slow_frames_itself():
    model, cfg = tiny_model("slowfast")
    x = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1, 1).expand(1, 3, 8, 2, 2)
    slow, fast = model.pathways(x)
    assert slow[0, 0, :, 0, 0].tolist() == [0.0, 7.0]  # linspace(0, 7, 8 // 4).long(), PySlowFast pack_pathway_output
    assert fast.shape[2] == 8
    assert torch.linspace(0, 31, 8).long().tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    with pytest.raises(ValueError, match="Fast pathway has 6 frames"):
        model(torch.zeros(1, 6, 3, 32, 32, dtype=torch.uint8))


def test_no_weight_decay_names_exist():
    for name in ("c2d", "x3d", "slowfast"):
        model, _ = tiny_model(name)
        names = dict(model.named_parameters())
        nwd = model.no_weight_decay()
        assert nwd and nwd <= set(names) and all(names[n].ndim == 1 for n in nwd)
        assert "s2.pathway0_res0.branch2.a_bn.weight" in nwd
    assert tiny_model("mvitv2")[0].no_weight_decay() == set()  # MVIT.ZERO_DECAY_POS_CLS False in the study configs


def test_mvit_rejects_clip_of_other_geometry():
    model, cfg = tiny_model("mvitv2")
    with pytest.raises(ValueError, match="built for 4 frames of 32 px"):
        model(torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8))


def test_initialisation_follows_pyslowfast():
    torch.manual_seed(0)
    cnn, _ = tiny_model("c2d")
    blk = cnn.s3.pathway0_res0
    assert torch.all(blk.branch2.c_bn.weight == 0) and torch.all(blk.branch2.a_bn.weight == 1)  # ZERO_INIT_FINAL_BN
    assert torch.all(blk.branch1_bn.weight == 1)
    assert 0.005 < cnn.head.projection.weight.std().item() < 0.015 and torch.all(cnn.head.projection.bias == 0)
    w = cnn.s4.pathway0_res0.branch2.a.weight  # kaiming normal, fan_out
    fan_out = w.shape[0] * math.prod(w.shape[2:])
    assert abs(w.std().item() - math.sqrt(2 / fan_out)) < 0.2 * math.sqrt(2 / fan_out)
    vit, _ = tiny_model("mvitv2")
    assert torch.all(vit.blocks[0].attn.qkv.bias == 0.02) and torch.all(vit.blocks[0].norm1.bias == 0.02)  # MViT._init_weights
    assert vit.blocks[0].attn.qkv.weight.std().item() < 0.03 and vit.cls_token.abs().max() > 0


@pytest.mark.parametrize("name", ["c2d", "x3d", "slowfast"])
def test_channels_last_3d_gives_the_same_logits(name):
    outs = []
    for cl in (False, True):
        torch.manual_seed(0)
        model, cfg = tiny_model(name, channels_last=cl)
        outs.append(model.eval()(tiny_clip(cfg)))
    assert torch.allclose(outs[0], outs[1], atol=1e-5, rtol=1e-4)


def test_mvit_gradient_checkpointing_matches():
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model, cfg = tiny_model("mvitv2", grad_checkpointing=ckpt, drop_path=0.3)
        model.train()
        torch.manual_seed(5)  # the recomputation replays the same drop-path masks
        loss = F.cross_entropy(model(tiny_clip(cfg)), torch.tensor([0, 1]))
        loss.backward()
        results.append((loss.item(), [p.grad for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(results[0][1], results[1][1]))
