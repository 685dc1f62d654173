"""models/timesformer.py: divided space-time attention, the released key layout, weight loading."""
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import build_unloaded, one_line_error, quiet, release_layout, tiny_cfg
from models import build_model, load_recipe
import models.timesformer as tsf
from models.weights import extract_state_dict

CLASSES = [f"class {i}" for i in range(5)]


def tiny(frames=4, size=32, **model):
    cfg = tiny_cfg("timesformer", **model)
    cfg["input"].update(frames=frames, size=size)
    return cfg


def tiny_model(num_classes=5, seed=0, **kw) -> tsf.TimeSformer:
    torch.manual_seed(seed)
    return build_unloaded(tiny(**kw), num_classes)


def release():
    return release_layout("timesformer_divst_b16_8f_k400")


def randomise(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


# ---------------------------------------------------------------------------------------------
# layout


def test_full_size_has_the_released_keys_in_order():
    ref = release()
    cfg = load_recipe("timesformer", "k400ta")
    cfg["pretrained"] = "none"
    with torch.device("meta"):
        model = build_model(cfg, [str(i) for i in range(400)])
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [(k, v) for k, v in ref["keys"].items()]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 12 * 3 + 1 and all(m.eps == 1e-6 for m in norms)


def test_mlp_uses_exact_gelu():
    x = torch.linspace(-4, 4, 101)
    act = tiny_model().model.blocks[0].mlp.act
    torch.testing.assert_close(act(x), 0.5 * x * (1 + torch.erf(x / 2 ** 0.5)), atol=1e-6, rtol=0)


def test_full_size_official_container_loads_with_nothing_missing():
    ref = release()
    container = {"epoch": 15, "cfg": "TRAIN:\n  ENABLE: True\n", "optimizer_state": {},
                 "model_state": {k: torch.zeros(v) for k, v in ref["keys"].items()}}
    cfg = load_recipe("timesformer", "k400ta")
    with torch.device("meta"):
        model = build_unloaded(cfg, 400)
    model.to_empty(device="cpu")
    state = extract_state_dict(container, "K400.pyth", containers=("model_state", "state_dict", "model"))
    report = tsf.load_into(model, state, "K400.pyth", log=quiet)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == 249
    assert float(model.model.blocks[11].temporal_fc.weight.detach().abs().sum()) == 0.0


# ---------------------------------------------------------------------------------------------
# forward pass


def test_tiny_forward_backward_on_uint8():
    torch.manual_seed(0)
    model = build_model(load_recipe("timesformer", "synta", tiny=True), CLASSES)
    randomise(model)  # temporal_fc of block 1 starts at zero; move everything off its init
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    logits = model(video)
    assert logits.shape == (2, 5)
    logits.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert not any("mean" in k or "std" in k for k in model.state_dict())
    for name, p in model.named_parameters():
        if name.endswith("qkv.bias"):  # the key bias cannot change the output and gets no gradient noise
            assert torch.count_nonzero(p.grad.chunk(3)[1]) == 0, name
    # another frame count or size than built for: time_embed / pos_embed are resampled on the fly
    assert model(torch.randint(0, 256, (1, 6, 3, 40, 48), dtype=torch.uint8)).shape == (1, 5)


def test_gradient_checkpointing_gives_the_same_gradients():
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    grads = []
    for flag in (False, True):
        model = tiny_model(grad_checkpointing=flag)
        torch.manual_seed(1)
        randomise(model)
        model(video).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-5, rtol=1e-4)


def mha(attn, x):
    """Plain multi-head attention with the module's qkv / proj weights, x [L, D]."""
    length, d = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).view(length, 3, h, d // h).permute(1, 2, 0, 3)
    w = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
    return attn.proj((w @ v).transpose(0, 1).reshape(length, d))


def ln(norm, x):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, eps=1e-6)


def mlp(m, x):
    return m.fc2(F.gelu(m.fc1(x)))  # exact GELU


def reference_logits(net, frames):
    """Divided space-time attention written token by token from the paper's description:
    token (p, t) = patch p of frame t; per block: time attention over each position's T tokens
    (+ temporal_fc), space attention over [CLS, the N patches] of each frame with the T CLS outputs
    averaged, then the MLP."""
    out = []
    for clip in frames:
        T = clip.shape[0]
        emb = [net.patch_embed.proj(clip[t : t + 1]).flatten(2)[0].T for t in range(T)]
        N = emb[0].shape[0]
        tok = {(p, t): emb[t][p] + net.pos_embed[0, 1 + p] + net.time_embed[0, t] for p in range(N) for t in range(T)}
        cls = net.cls_token[0, 0] + net.pos_embed[0, 0]
        for blk in net.blocks:
            for p in range(N):
                seq = torch.stack([tok[(p, t)] for t in range(T)])
                res = blk.temporal_fc(mha(blk.temporal_attn, ln(blk.temporal_norm1, seq)))
                for t in range(T):
                    tok[(p, t)] = tok[(p, t)] + res[t]
            cls_out, new = [], {}
            for t in range(T):
                seq = torch.stack([cls] + [tok[(p, t)] for p in range(N)])
                res = mha(blk.attn, ln(blk.norm1, seq))
                cls_out.append(res[0])
                for p in range(N):
                    new[(p, t)] = tok[(p, t)] + res[1 + p]
            cls, tok = cls + torch.stack(cls_out).mean(0), new
            cls = cls + mlp(blk.mlp, ln(blk.norm2, cls))
            tok = {key: v + mlp(blk.mlp, ln(blk.norm2, v)) for key, v in tok.items()}
        out.append(net.head(ln(net.norm, cls)))
    return torch.stack(out)


def test_matches_a_token_by_token_reference():
    model = randomise(tiny_model(frames=3, size=16)).eval()
    video = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        x = (video.float() - model.mean) / model.std
        torch.testing.assert_close(model.model(x), reference_logits(model.model, x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(video), reference_logits(model.model, x), atol=1e-4, rtol=1e-4)


def test_bgr_reverses_the_channels_before_normalising():
    rgb = randomise(tiny_model()).eval()
    bgr = tiny_model(bgr=True).eval()
    bgr.load_state_dict(rgb.state_dict())
    video = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(bgr(video), rgb(video.flip(2)))
        assert not torch.allclose(bgr(video), rgb(video))


def test_token_order_time_mixes_one_position_space_mixes_one_frame():
    """Perturb one patch of one frame. The first temporal attention may change only that position's
    row (all its frames); with block 0's temporal_fc at zero, the first spatial attention may change
    only that frame's row."""
    model = randomise(tiny_model(frames=4, size=32)).eval()  # grid 4 x 4, N = 16
    B, T, N, p, t = 2, 4, 16, 6, 2
    video = torch.randint(0, 200, (B, T, 3, 32, 32), dtype=torch.uint8)
    moved = video.clone()
    row, col = divmod(p, 4)
    moved[1, t, :, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 50
    blk = model.model.blocks[0]
    seen = {}
    hooks = [blk.temporal_attn.register_forward_hook(lambda m, i, o: seen.setdefault("time", []).append(o)),
             blk.attn.register_forward_hook(lambda m, i, o: seen.setdefault("space", []).append(o))]
    with torch.no_grad():
        blk.temporal_fc.weight.zero_()
        blk.temporal_fc.bias.zero_()
        model(video)
        model(moved)
    for h in hooks:
        h.remove()
    time_changed = (seen["time"][0] - seen["time"][1]).abs().amax(-1) > 1e-6  # [(B N), T]
    expected = torch.zeros(B * N, T, dtype=torch.bool)
    expected[1 * N + p] = True
    assert torch.equal(time_changed, expected)
    space_changed = (seen["space"][0] - seen["space"][1]).abs().amax(-1) > 1e-6  # [(B T), 1 + N]
    expected = torch.zeros(B * T, 1 + N, dtype=torch.bool)
    expected[1 * T + t] = True
    assert torch.equal(space_changed, expected)


def test_other_frame_count_uses_nearest_time_embeddings():
    model = randomise(tiny_model(frames=4)).eval()
    video = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    twin = tiny_model(frames=2).eval()
    state = dict(model.state_dict())
    state["model.time_embed"] = model.model.time_embed[:, [0, 2]].detach()
    twin.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(video), twin(video))


# ---------------------------------------------------------------------------------------------
# weights


def save_pyth(model: tsf.TimeSformer, path: Path) -> None:
    torch.save({"epoch": 15, "model_state": model.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "TIMESFORMER:\n  ATTENTION_TYPE: divided_space_time\n"}, path)


def test_released_container_loads_and_adapts(tmp_path):
    src = randomise(tiny_model(frames=4, num_classes=7))
    save_pyth(src, tmp_path / "k400.pyth")
    logs = []
    same = tiny_model(frames=4, num_classes=7)
    report = same.load_pretrained(str(tmp_path / "k400.pyth"), log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == []
    assert all(torch.equal(same.state_dict()[k], v) for k, v in src.state_dict().items())
    # 2 frames and 5 classes: time_embed resampled (nearest, frames 0 and 2), head dropped
    other = tiny_model(frames=2, num_classes=5, seed=1)
    head_before = other.model.head.weight.detach().clone()
    report = other.load_pretrained(str(tmp_path / "k400.pyth"), log=logs.append)
    assert report["missing"] == ["model.head.bias", "model.head.weight"] and report["unexpected"] == []
    assert torch.equal(other.model.time_embed, src.model.time_embed[:, [0, 2]])
    assert torch.equal(other.model.head.weight, head_before)
    assert torch.equal(other.model.blocks[1].temporal_attn.qkv.weight, src.model.blocks[1].temporal_attn.qkv.weight)
    assert any("dropping the 7-class head" in m for m in logs) and any("resampled from 4 to 2" in m for m in logs)
    # a plain state dict without the model. prefix, for another input size (pos_embed resampled)
    torch.save({k[len("model."):]: v for k, v in src.state_dict().items()}, tmp_path / "plain.pt")
    big = tiny_model(frames=4, size=48, num_classes=7)
    big.load_pretrained(str(tmp_path / "plain.pt"), log=quiet)
    assert big.model.pos_embed.shape == (1, 37, 64) and torch.equal(big.model.pos_embed[0, 0], src.model.pos_embed[0, 0])


def fake_imagenet_vit(model: tsf.TimeSformer) -> dict:
    """A timm-layout ImageNet ViT state dict of the tiny architecture (1000-class head, no temporal parts)."""
    torch.manual_seed(3)
    state = {}
    for k, v in model.model.state_dict().items():
        if "temporal" in k or k == "time_embed" or k.startswith("head."):
            continue
        state[k] = torch.randn_like(v)
    state["head.weight"], state["head.bias"] = torch.randn(1000, 64), torch.randn(1000)
    return state


def check_imagenet_init(model, vit, fresh):
    for i, blk in enumerate(model.model.blocks):
        for part in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias"):
            assert torch.equal(getattr(blk.temporal_attn, part.split(".")[0]).state_dict()[part.split(".")[1]],
                               vit[f"blocks.{i}.attn.{part}"])
        assert torch.equal(blk.temporal_norm1.weight, vit[f"blocks.{i}.norm1.weight"])
        assert torch.equal(blk.attn.qkv.weight, vit[f"blocks.{i}.attn.qkv.weight"])
        assert torch.equal(blk.temporal_fc.weight, fresh.model.blocks[i].temporal_fc.weight)
    assert float(model.model.blocks[1].temporal_fc.weight.detach().abs().sum()) == 0.0
    assert float(model.model.blocks[0].temporal_fc.weight.detach().abs().sum()) > 0.0
    assert float(model.model.time_embed.detach().abs().sum()) == 0.0
    assert model.model.head.weight.shape == (5, 64)


def test_imagenet_vit_is_mapped_like_the_original(tmp_path):
    model = tiny_model()
    fresh = tiny_model()
    vit = fake_imagenet_vit(model)
    torch.save(vit, tmp_path / "vit.pth")
    report = model.load_pretrained(str(tmp_path / "vit.pth"), log=quiet)
    assert set(report["missing"]) == {"model.time_embed", "model.head.weight", "model.head.bias",
                                      "model.blocks.0.temporal_fc.weight", "model.blocks.0.temporal_fc.bias",
                                      "model.blocks.1.temporal_fc.weight", "model.blocks.1.temporal_fc.bias"}
    check_imagenet_init(model, vit, fresh)


def test_imagenet_by_name_downloads_once_and_checks_the_hash_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_CACHE", str(tmp_path))
    model, fresh = tiny_model(), tiny_model()
    vit = fake_imagenet_vit(model)
    buf = io.BytesIO()
    torch.save(vit, buf)
    payload = buf.getvalue()
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    monkeypatch.setattr(tsf, "IMAGENET_URL", f"https://example.invalid/v0.1-vitjx/jx_vit_tiny-{prefix}.pth")
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: calls.append(url) or io.BytesIO(payload))
    model.load_pretrained("imagenet", log=quiet)
    check_imagenet_init(model, vit, fresh)
    assert (tmp_path / "timm" / f"jx_vit_tiny-{prefix}.pth").is_file()
    tiny_model().load_pretrained("imagenet", log=quiet)
    assert len(calls) == 1
    monkeypatch.setattr(tsf, "IMAGENET_URL", "https://example.invalid/v0.1-vitjx/jx_vit_tiny-00000000.pth")
    with pytest.raises(SystemExit) as e:
        tiny_model().load_pretrained("imagenet", log=quiet)
    assert "SHA256" in one_line_error(e)


def test_loading_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cfg = tiny()
    cfg["pretrained"] = "imagenet"
    with pytest.raises(SystemExit) as e:
        build_model(cfg, CLASSES)
    msg = one_line_error(e)
    assert "cannot download" in msg and "pretrained: /path/to/jx_vit_base_p16_224-80ecf9dd.pth" in msg
    assert "pretrained: none" in msg
    cfg["pretrained"] = str(tmp_path / "TimeSformer_divST_8x32_224_K400.pyth")
    with pytest.raises(SystemExit) as e:
        build_model(cfg, CLASSES)
    assert "not found" in one_line_error(e)
    # CLIP weights are not a TimeSformer: a one-line list of what is missing and unexpected
    from models.clip import CLIP

    torch.save(CLIP(32, 32, 1, 64, 8, 77, 100, 64, 1, 1).state_dict(), tmp_path / "clip.pt")
    cfg["pretrained"] = str(tmp_path / "clip.pt")
    with pytest.raises(SystemExit) as e:
        build_model(cfg, CLASSES)
    msg = one_line_error(e)
    assert "missing (model.blocks.0." in msg and "unexpected (model.ln_final.bias" in msg
    # a TimeSformer of another width
    save_pyth(tiny_model(embed_dim=32), tmp_path / "narrow.pyth")
    cfg["pretrained"] = str(tmp_path / "narrow.pyth")
    with pytest.raises(SystemExit) as e:
        build_model(cfg, CLASSES)
    assert "of another shape" in one_line_error(e)


def test_optimizer_hooks_and_recipe():
    model = tiny_model()
    assert model.no_weight_decay() <= set(dict(model.named_parameters()))
    cfg = load_recipe("timesformer", "k400ta")
    assert cfg["pretrained"] == "imagenet"
    assert (cfg["input"]["frames"], cfg["input"]["sampling"], cfg["input"]["stride"]) == (8, "dense", 32)
    assert cfg["input"]["mean"] == [114.75] * 3 and cfg["input"]["std"] == [57.375] * 3
    assert cfg["train"]["optimizer"] == "sgd" and cfg["train"]["lr"] == pytest.approx(0.005)
    assert (cfg["test"]["clips"], cfg["test"]["crops"], cfg["test"]["short_side"]) == (1, 3, 224)
    assert load_recipe("timesformer", "ssv2ta")["input"]["flip"] is False
    assert load_recipe("timesformer", "synta", tiny=True)["pretrained"] == "none"
