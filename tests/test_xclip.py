"""models/xclip.py: released layout, loading (CLIP, X-CLIP 8/16/32 frames), the cross-frame block and
prompt generator against straightforward re-computations, frozen cached text."""
import pytest
import torch
import torch.nn.functional as F

from conftest import one_line_error, quiet, record_text_batches, release_layout, tiny_cfg
from text_helpers import full_size_on_meta, meta_state, save_with_yacs_config, tiny, tiny_clip

from models import build_model
from models import tokenizer as tk
from models import xclip as mx

CLASSES = ["punching bag", "punching person", "falling down"]


def test_full_size_state_dict_is_the_release():
    ref = release_layout("xclip_b16_8f")
    model = full_size_on_meta("xclip", frames=8)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == ref["keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("visual.", "mit.", "prompts")) for n in trainable)
    assert "logit_scale" not in trainable and "text_projection" not in trainable and "mit.positional_embedding" in trainable


@pytest.mark.parametrize("frames", [8, 16, 32])
def test_release_containers_of_each_frame_count_load_into_an_8_frame_model(frames):
    ref = release_layout(f"xclip_b16_{frames}f")
    model = full_size_on_meta("xclip", frames=8)
    logs = []
    report = model.load_state_from({"model": meta_state(ref["keys"]), "epoch": 29, "lr_scheduler": {}},
                                   f"k400_16_{frames}.pth", log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(ref["keys"])
    resampled = f"mit.positional_embedding of k400_16_{frames}.pth from {frames} to 8 frames"
    assert any(resampled in m for m in logs) == (frames != 8)


def test_time_embedding_is_interpolated_linearly():
    torch.manual_seed(0)
    a, b = torch.randn(32), torch.randn(32)
    for source_frames in (16, 32):
        src = tiny("xclip", CLASSES, frames=source_frames)
        with torch.no_grad():
            src.mit.positional_embedding.copy_((a + b * torch.arange(source_frames).view(-1, 1)).unsqueeze(0))
        dst = tiny("xclip", CLASSES, frames=8, seed=3)
        dst.load_state_from({"model": src.state_dict()}, "release", log=quiet)
        ratio = source_frames / 8
        where = (torch.arange(8) + 0.5) * ratio - 0.5  # align_corners=False sample positions
        torch.testing.assert_close(dst.mit.positional_embedding[0], a + b * where.view(-1, 1))
        for k, v in src.state_dict().items():
            if k != "mit.positional_embedding":
                assert torch.equal(dst.state_dict()[k], v), k


def test_a_release_file_with_a_pickled_config_loads_without_running_it(tmp_path):
    src = tiny("xclip", CLASSES, frames=4, seed=5)
    path = save_with_yacs_config({"model": src.state_dict()}, tmp_path / "k400_16_8.pth")
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # why read_checkpoint falls back to inert stand-ins
    model = tiny("xclip", CLASSES, frames=4, seed=6)
    logs = []
    model.load_pretrained(str(path), log=logs.append)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert any("yacs.config.CfgNode" in m and "left out" in m for m in logs)
    cfg = tiny_cfg("xclip")
    cfg["pretrained"] = str(path)
    assert torch.equal(build_model(cfg, CLASSES).prompts_visual_proj, src.prompts_visual_proj)


def test_clip_weights_load_and_the_new_modules_keep_their_initialisation(tmp_path):
    clip = tiny_clip()
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    model = tiny("xclip", CLASSES, seed=7)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    logs = []
    report = model.load_pretrained(str(tmp_path / "clip.pt"), log=logs.append)
    assert report["unexpected"] == [] and report["missing"] and all(
        k.startswith(("mit.", "prompts")) or ".message_" in k for k in report["missing"])
    for k, v in clip.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    for k in report["missing"]:
        assert torch.equal(model.state_dict()[k], init[k]), k
    assert any("keep their initialisation" in m for m in logs)


def test_files_that_do_not_fit_are_refused_in_one_line(tmp_path):
    other = tiny("xclip", CLASSES)
    state = other.state_dict()
    state["prompts_visual_proj"] = state["prompts_visual_proj"][:, :16]
    torch.save({"model": state}, tmp_path / "narrow.pth")
    torch.save({"model": {"image_encoder.conv1.weight": torch.zeros(1)}}, tmp_path / "vifi.pth")
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    for name, words in (("narrow.pth", ("another shape", "prompts_visual_proj")), ("vifi.pth", ("neither X-CLIP nor CLIP",)),
                        ("absent.pth", ("not found",)), ("junk.pth", ("cannot read",))):
        cfg = tiny_cfg("xclip")
        cfg["pretrained"] = str(tmp_path / name)
        with pytest.raises(SystemExit) as e:
            build_model(cfg, CLASSES)
        one_line_error(e, *words)


def randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def test_cross_frame_block_equals_a_straightforward_recomputation():
    """Sequence-first, with torch's own nn.MultiheadAttention, in the order of X-CLIP's cct.py."""
    torch.manual_seed(0)
    d, heads, frames, videos, length = 32, 4, 3, 2, 5
    block = randomise(mx.CrossFrameBlock(d, heads)).eval()
    x = torch.randn(videos * frames, length, d)

    def mha(src):
        m = torch.nn.MultiheadAttention(d, heads)
        m.load_state_dict(src.state_dict())
        return m

    attn, message_attn = mha(block.attn), mha(block.message_attn)

    def ln(t, norm):
        return F.layer_norm(t, (d,), norm.weight, norm.bias, norm.eps)

    with torch.no_grad():
        lnd = x.transpose(0, 1)  # [L, B*T, D]
        cls = lnd[0].view(videos, frames, d)
        msg = F.linear(cls, block.message_fc.weight, block.message_fc.bias).transpose(0, 1)  # [T, B, D]
        m = ln(msg, block.message_ln)
        msg = msg + message_attn(m, m, m, need_weights=False)[0]
        tokens = torch.cat([lnd, msg.transpose(0, 1).reshape(1, videos * frames, d)], dim=0)  # [L+1, B*T, D]
        y = ln(tokens, block.ln_1)
        tokens = tokens + attn(y, y, y, need_weights=False)[0]
        tokens = tokens[:length]
        h = ln(tokens, block.ln_2)
        h = F.linear(h, block.mlp.c_fc.weight, block.mlp.c_fc.bias)
        h = F.linear(h * torch.sigmoid(1.702 * h), block.mlp.c_proj.weight, block.mlp.c_proj.bias)
        expected = (tokens + h).transpose(0, 1)
        torch.testing.assert_close(block(x, frames=frames), expected, atol=1e-5, rtol=1e-5)
        # frames of different videos never exchange messages
        x2 = x.clone()
        x2[:frames] += 1.0
        torch.testing.assert_close(block(x2, frames=frames)[frames:], expected[frames:], atol=1e-5, rtol=1e-5)


def test_prompt_generator_and_mit_equal_straightforward_recomputations():
    torch.manual_seed(0)
    d, heads = 128, 2  # heads = embed_dim // 64, as X-CLIP
    gen = randomise(mx.VideoSpecificPrompt(layers=2, embed_dim=d, alpha=0.1), seed=1).eval()
    text, visual = torch.randn(2, 5, d), torch.randn(2, 7, d)
    with torch.no_grad():
        v = F.layer_norm(visual, (d,), gen.norm.weight, gen.norm.bias)
        t = text
        hd = d // heads
        for layer in gen.decoder:
            ca = layer.cross_attn
            q = F.layer_norm(t, (d,), layer.norm1.weight, layer.norm1.bias) @ ca.q_proj.weight.t()
            k, val = v @ ca.k_proj.weight.t(), v @ ca.v_proj.weight.t()
            att = torch.cat([(q[..., h * hd:(h + 1) * hd] @ k[..., h * hd:(h + 1) * hd].transpose(1, 2) / hd ** 0.5)
                             .softmax(-1) @ val[..., h * hd:(h + 1) * hd] for h in range(heads)], dim=-1)
            t = t + att @ ca.proj.weight.t() + ca.proj.bias
            h = F.layer_norm(t, (d,), layer.norm3.weight, layer.norm3.bias) @ layer.mlp[0].weight.t() + layer.mlp[0].bias
            t = t + (h * torch.sigmoid(1.702 * h)) @ layer.mlp[3].weight.t() + layer.mlp[3].bias
        torch.testing.assert_close(gen(text, visual), gen.alpha * t, atol=1e-5, rtol=1e-5)

        mit = randomise(mx.MultiframeIntegration(frames=4, embed_dim=d, layers=1), seed=2).eval()
        x = torch.randn(3, 4, d)
        blk = mit.resblocks[0]
        ref = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        ref.load_state_dict(blk.attn.state_dict())
        y = x + mit.positional_embedding
        a = F.layer_norm(y, (d,), blk.ln_1.weight, blk.ln_1.bias)
        y = y + ref(a, a, a, need_weights=False)[0]
        h = F.layer_norm(y, (d,), blk.ln_2.weight, blk.ln_2.bias) @ blk.mlp.c_fc.weight.t() + blk.mlp.c_fc.bias
        y = y + (h * torch.sigmoid(1.702 * h)) @ blk.mlp.c_proj.weight.t() + blk.mlp.c_proj.bias
        torch.testing.assert_close(mit(x), (y + x).mean(1), atol=1e-5, rtol=1e-5)


def test_forward_is_cosine_of_video_and_prompted_text():
    model = tiny("xclip", CLASSES).eval()
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        logits = model(video)
        feats, tokens = model.forward_features(video, return_context=True)
        raw = model.encode_text(tk.tokenize(CLASSES))  # template "{}", unnormalised into the generator
        text = raw.unsqueeze(0).expand(2, -1, -1)
        text = text + model.prompts_generator(text, tokens)
        expected = model.logit_scale.exp() * torch.einsum("bd,bkd->bk", F.normalize(feats, dim=-1), F.normalize(text, dim=-1))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_tiny_forward_backward_on_uint8_trains_only_the_video_side():
    model = tiny("xclip", CLASSES)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    logits = model(video)
    assert logits.shape == (2, 3) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None and not name.startswith(("visual.", "mit.", "prompts")), name
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(names)
    for key in model.lr_multipliers():
        assert any(key in n and names[n].requires_grad for n in names), key
    assert {n for n in names if any(k in n for k in model.lr_multipliers())} == {
        n for n in names if ".message_" in n or n.startswith(("mit.", "prompts"))}
    assert not any(k in ("mean", "std") for k in model.state_dict())


def test_text_cache_gives_the_uncached_logits_and_follows_names_and_weights():
    model = tiny("xclip", CLASSES)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    calls = record_text_batches(model)
    model.train()
    with torch.no_grad():
        first = model(video)
        second = model(video)
        assert calls == [3]  # frozen text tower: computed once, even in training
        model.texts.cache.clear()
        torch.testing.assert_close(model(video), first)
        model.set_class_names(["a", "b"])
        assert model(video).shape == (2, 2)
        model.set_class_names(CLASSES)
        torch.testing.assert_close(model(video), second)
        n = len(calls)
        model.ln_final.weight.add_(0.5)  # any change of the text weights invalidates the cache
        changed = model(video)
        assert len(calls) == n + 1 and not torch.allclose(changed, first)


def test_gradient_checkpointing_gives_the_same_gradients():
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    grads = []
    for flag in (False, True):
        model = tiny("xclip", CLASSES, grad_checkpointing=flag)
        assert model.visual.transformer.grad_checkpointing is flag
        model(video).logsumexp(1).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-6, rtol=1e-5)


def test_without_fix_text_the_text_tower_trains_and_is_not_cached_in_training():
    model = tiny("xclip", CLASSES, fix_text=False)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    model(video).logsumexp(1).sum().backward()
    assert model.ln_final.weight.grad is not None and model.ln_final.weight.grad.abs().sum() > 0
    assert model.logit_scale.grad is not None and model.texts.cache._value is None
