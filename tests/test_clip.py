"""models/clip.py, tokenizer.py, class_texts.py and weights.py: OpenAI CLIP's architecture, tokenizer,
class texts and weight loading.

The oracle is OpenAI's own implementation as packaged on PyPI (clip-anytorch, import name `clip`);
its tests skip when it is not installed. The released key layout is tests/data/release_layouts.json.gz."""
import hashlib
import importlib.util
import io
import sys
import types
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import one_line_error, quiet, release_layout
from text_helpers import tiny_clip
from models import clip as mc
from models import tokenizer as tk
from models import class_texts as ct
from models import weights

# Reduced CLIP: 2 heads in both towers (width // 64, so the shape-inferred config agrees), full vocabulary.
SMALL = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=128, vision_patch_size=8,
             context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)

AWKWARD = [
    "a photo of a cat",
    "Punching Bag vs. Punching Person!",
    "café naïve résumé Ünïcödé ÀÉÎÕÜ ß",
    "ﬁ ligature, ＦＵＬＬＷＩＤＴＨ, ½ ², ℕ",
    "🥊👊 boxing 😀🎉 emoji",
    "日本語のテキスト 中文字符 한국어",
    "&amp;lt;b&amp;gt; html &quot;quoted&quot; &#39;s &nbsp; &eacute;",
    "<b>tom &amp; jerry</b> &quot;caf&eacute;&quot; &amp;amp;",  # markup: ftfy leaves entities to html.unescape
    "it's they're we've I'm you'll he'd DON'T",
    "  multiple   spaces\tand\nnewlines \u00a0 ",
    "mojibake: Ã©tÃ© â€œquoteâ€\x9d",
    "<|endoftext|> and <|startoftext|> in the text",
    "3.14159 12345678 1e-4 -0.5",
    "Pushing something from right to left",
    "zero-width\u200bspace and combining e\u0301",
    "",
]


def oracle_clip():
    """OpenAI's clip package. clip-anytorch imports pkg_resources (gone from setuptools >= 81) only
    for a torch version check; a stand-in is put in place for that import when it is missing."""
    if importlib.util.find_spec("clip") is None:
        pytest.skip("clip-anytorch (OpenAI CLIP, the test oracle) is not installed")
    stub = None
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        import packaging.version

        stub = sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        stub.packaging = packaging
    try:
        import clip
        import clip.model
    finally:
        if stub is not None:
            del sys.modules["pkg_resources"]
    if not (hasattr(clip, "tokenize") and hasattr(clip.model, "CLIP")):
        pytest.skip("the installed `clip` package is not OpenAI CLIP")
    return clip


@pytest.fixture(scope="module")
def oracle():
    return oracle_clip()


def release_keys():
    return release_layout("openai_clip_vit_b16")


def shapes(module_or_state) -> dict:
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {k: list(v.shape) for k, v in state.items()}


def random_oracle_model(oracle, seed=0):
    """The oracle's CLIP at SMALL size, every tensor perturbed so that no parameter sits at a trivial value."""
    torch.manual_seed(seed)
    ref = oracle.model.CLIP(**SMALL).float()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ref


# ---------------------------------------------------------------------------------------------
# architecture


def test_vit_b16_has_the_released_keys_and_shapes():
    ref = release_keys()
    with torch.device("meta"):
        model = mc.CLIP(**mc.VIT_B16)
    want = {k: v for k, v in ref["keys"].items() if k not in weights.JIT_EXTRAS}
    assert shapes(model) == want
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]
    assert weights.clip_config(model.state_dict()) == mc.VIT_B16


def test_vit_b16_builds_like_the_oracle(oracle):
    with torch.device("meta"):
        ref = oracle.model.CLIP(**mc.VIT_B16)
        mine = mc.CLIP(**mc.VIT_B16)
    assert shapes(mine) == shapes(ref)
    ref_gelu = type(ref.transformer.resblocks[0].mlp.gelu)
    assert [type(m).__name__ for m in mine.modules() if isinstance(m, (nn.LayerNorm, mc.QuickGELU))] == \
           [type(m).__name__ for m in ref.modules() if isinstance(m, (nn.LayerNorm, ref_gelu))]


@pytest.mark.parametrize("train_mode", [False, True])
def test_forward_matches_the_oracle_in_fp32(oracle, train_mode):
    ref = random_oracle_model(oracle)
    mine = weights.build_clip(ref.state_dict(), log=quiet)
    ref.train(train_mode)  # train mode takes nn.MultiheadAttention's reference path, eval its fused one
    mine.train(train_mode)
    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32)
    text = tk.tokenize(["a photo of a dog", "punching bag", "🥊 boxing person, café!"])
    with torch.no_grad():
        torch.testing.assert_close(mine.encode_image(images), ref.encode_image(images), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine.encode_text(text), ref.encode_text(text), atol=1e-5, rtol=1e-5)
        for a, b in zip(mine(images, text), ref(images, text)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # a shorter context: the causal mask and the positional embeddings are cut to it
        short = text[:, :12]
        torch.testing.assert_close(mine.encode_text(short), ref.encode_text(short), atol=1e-5, rtol=1e-5)


def test_attention_matches_nn_multiheadattention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(48, 4, batch_first=True)
    mine = mc.MultiheadAttention(48, 4)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    weights.load_checked(mine, ref.state_dict(), log=quiet)
    assert set(mine.state_dict()) == set(ref.state_dict())
    q, kv = torch.randn(2, 5, 48), torch.randn(2, 7, 48)
    causal = torch.full((5, 5), float("-inf")).triu(1)
    blocked = torch.rand(5, 7) < 0.3
    blocked[:, 0] = False
    with torch.no_grad():
        torch.testing.assert_close(mine(q), ref(q, q, q, need_weights=False)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine(q, kv), ref(q, kv, kv, need_weights=False)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine(q, attn_mask=causal), ref(q, q, q, attn_mask=causal, need_weights=False)[0],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mine(q, is_causal=True), ref(q, q, q, attn_mask=causal, need_weights=False)[0],
                                   atol=1e-5, rtol=1e-5)
        # bool masks: SDPA's True = attend, nn.MultiheadAttention's True = blocked
        torch.testing.assert_close(mine(q, kv, attn_mask=~blocked), ref(q, kv, kv, attn_mask=blocked, need_weights=False)[0],
                                   atol=1e-5, rtol=1e-5)


def test_projections_get_contiguous_inputs_and_project_attend_is_forward(monkeypatch):
    """Tokens regrouped per position (AIM's temporal attention) are a strided view when the batch has one
    clip; F.linear with frozen weights multiplies such an input as a batch of matrices, several times
    slower than one matrix product."""
    torch.manual_seed(0)
    attn = mc.MultiheadAttention(32, 4).requires_grad_(False)
    with torch.no_grad():
        attn.in_proj_bias.normal_()
    frames = torch.randn(4, 5, 32)  # one clip: 4 frames of 5 tokens
    per_position = frames.view(1, 4, 5, 32).transpose(1, 2).reshape(5, 4, 32)
    assert not per_position.is_contiguous()
    contiguous, linear = [], torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, *a: contiguous.append(x.is_contiguous()) or linear(x, *a))
    out, cross = attn(per_position), attn(per_position, per_position[:, :2])
    monkeypatch.undo()
    assert len(contiguous) == 6 and all(contiguous)  # 1 + 3 input projections, 2 out_proj
    torch.testing.assert_close(out, attn(per_position.contiguous()))
    torch.testing.assert_close(cross, attn(per_position.contiguous(), per_position[:, :2].contiguous()))
    q, k, v = attn.project(per_position)
    assert q.shape == k.shape == v.shape == (5, 4, 4, 8)  # [N, heads, L, head_dim]
    assert torch.equal(attn.attend(q, k, v), out)
    # key_bias=True: the key third of in_proj_bias shifts the keys (and not the result)
    k_with_bias = attn.project(per_position, key_bias=True)[1]
    torch.testing.assert_close(k_with_bias - k, attn.in_proj_bias.chunk(3)[1].view(4, 1, 8).expand_as(k))
    torch.testing.assert_close(attn.attend(q, k_with_bias, v), out, atol=1e-6, rtol=1e-5)


def test_key_bias_gets_an_exactly_zero_gradient():
    """The key bias cannot change attention outputs (test above: the reference applies it, this
    module does not); it must not pick up rounding noise that Adam would turn into updates."""
    torch.manual_seed(0)
    attn = mc.MultiheadAttention(32, 4)
    with torch.no_grad():
        attn.in_proj_bias.normal_()
    x, kv = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    (attn(x).square().sum() + attn(x, kv).square().sum()).backward()
    q_grad, k_grad, v_grad = attn.in_proj_bias.grad.chunk(3)
    assert torch.count_nonzero(k_grad) == 0 and torch.count_nonzero(q_grad) > 0 and torch.count_nonzero(v_grad) > 0


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = mc.CLIP(**SMALL)
    ckpt = mc.CLIP(**SMALL, grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    images, text = torch.randn(2, 3, 32, 32), tk.tokenize(["one", "two words"])
    grads = []
    for model in (plain, ckpt):
        model.train()
        logits, _ = model(images, text)
        logits.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) == len(list(plain.parameters()))
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5, rtol=1e-4)


def test_drop_path_drops_whole_samples_in_training_only():
    dp = mc.DropPath(0.5)
    x = torch.ones(64, 3, 4)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 10 < (per_sample[:, 0] == 0).sum() < 54
    dp.eval()
    assert torch.equal(dp(x), x)


def test_blocks_can_be_subclassed_and_get_forward_kwargs():
    """The extension contract: a block class with its own parameters, built with its layer index,
    and a per-call keyword (here the frame count) handed through Transformer.forward."""
    seen = []

    class FrameBlock(mc.ResidualAttentionBlock):
        def __init__(self, d_model, n_head, **kw):
            super().__init__(d_model, n_head, **kw)
            self.message_fc = nn.Linear(d_model, d_model)

        def forward(self, x, frames=1):
            seen.append((self.layer, frames))
            return super().forward(x + 0 * self.message_fc(x))

    vt = mc.VisionTransformer(32, 8, 64, 3, 2, 16, block=FrameBlock, drop_path=0.2)
    keys = vt.state_dict().keys()
    assert "transformer.resblocks.2.message_fc.weight" in keys and "transformer.resblocks.2.attn.in_proj_weight" in keys
    assert [b.drop_path.p for b in vt.transformer.resblocks] == pytest.approx([0.0, 0.1, 0.2])
    assert vt(torch.randn(2, 3, 32, 32), frames=8).shape == (2, 16)
    assert seen == [(0, 8), (1, 8), (2, 8)]


def test_image_tower_returns_tokens_and_takes_other_sizes():
    torch.manual_seed(0)
    vt = mc.VisionTransformer(32, 8, 64, 2, 2, 16).eval()
    feats, tokens = vt(torch.randn(2, 3, 32, 32), return_tokens=True)
    assert feats.shape == (2, 16) and tokens.shape == (2, 16, 64)
    assert vt(torch.randn(2, 3, 48, 40)).shape == (2, 16)  # 6 x 5 grid from the 4 x 4 positions
    pe = mc.resize_pos_embed(vt.positional_embedding, (4, 4))
    assert pe is vt.positional_embedding
    big = mc.resize_pos_embed(vt.positional_embedding, (6, 5))
    assert big.shape == (31, 64) and torch.equal(big[0], vt.positional_embedding[0])


# ---------------------------------------------------------------------------------------------
# tokenizer


def test_tokenizer_gives_openai_ids(oracle):
    assert torch.equal(tk.tokenize(AWKWARD), oracle.tokenize(AWKWARD).long())
    tok = tk.get_tokenizer()
    assert len(tok.encoder) == 49408 and tok.encoder["<|endoftext|>"] == 49407
    assert tok.decode(tok.encode("punching bag")).strip() == "punching bag"


def test_tokenizer_overflow_and_truncation(oracle):
    long = " ".join(f"word{i}" for i in range(60)) + " " + "日本" * 30
    with pytest.raises(ValueError, match="context length 77"):
        tk.tokenize([long])
    with pytest.raises(RuntimeError):
        oracle.tokenize([long])
    for text in (long, "x " * 100, "! " * 90):
        mine = tk.tokenize([text], truncate=True)
        assert torch.equal(mine, oracle.tokenize([text], truncate=True).long())
        assert mine[0, -1].item() == 49407 and mine[0, 0].item() == 49406
    assert tk.tokenize("short", context_length=8).shape == (1, 8)


def test_tokenizer_refuses_a_damaged_vocabulary(tmp_path):
    raw = bytearray(tk.BPE_PATH.read_bytes())
    raw[-5] ^= 0xFF
    bad = tmp_path / "bpe.txt.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(SystemExit, match="damaged"):
        tk.SimpleTokenizer(bad)
    assert weights.file_sha256(tk.BPE_PATH) == tk.BPE_SHA256


# ---------------------------------------------------------------------------------------------
# weights


def save_torchscript_like_release(model: mc.CLIP, path: Path) -> None:
    """A TorchScript archive whose state_dict has CLIP's keys plus the 3 int64 extras, in fp16 (as released)."""

    class Archive(nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in model.named_children():
                setattr(self, name, child)
            for name, p in model.named_parameters(recurse=False):
                self.register_parameter(name, p)
            self.register_buffer("input_resolution", torch.tensor(model.visual.input_resolution))
            self.register_buffer("context_length", torch.tensor(model.context_length))
            self.register_buffer("vocab_size", torch.tensor(model.vocab_size))

        def forward(self, x):
            return x * self.logit_scale

    archive = Archive().half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; the released files are still TorchScript
        traced = torch.jit.trace(archive, torch.ones(2, dtype=torch.half))
        torch.jit.save(traced, str(path))


def test_torchscript_archive_loads_by_name(tmp_path):
    torch.manual_seed(0)
    src = mc.CLIP(**SMALL)
    path = tmp_path / "ViT-tiny.pt"
    save_torchscript_like_release(src, path)
    state = weights.load_clip_state_dict(str(path), log=quiet)
    assert not set(weights.JIT_EXTRAS) & set(state)
    assert all(v.dtype == torch.float32 for v in state.values())
    assert set(state) == set(src.state_dict())
    logs = []
    model = weights.load_clip(str(path), log=logs.append)
    assert any("loaded 62 tensors" in m for m in logs) and not any("ignored" in m or "keep" in m for m in logs)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v.half().float())


def test_plain_state_dict_containers_load(tmp_path):
    torch.manual_seed(0)
    src = mc.CLIP(**SMALL)
    extras = {"input_resolution": 32, "context_length": 77, "vocab_size": 49408}
    extras = {k: torch.tensor(v, dtype=torch.int64) for k, v in extras.items()}
    ddp = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    for i, obj in enumerate(({**src.state_dict(), **extras}, ddp)):
        torch.save(obj, tmp_path / f"w{i}.pt")
        model = weights.load_clip(str(tmp_path / f"w{i}.pt"), log=quiet)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in src.state_dict().items())


def test_release_layout_with_extras_loads_with_nothing_missing():
    """Zero tensors of every released key (fp16, with the 3 int64 extras) -> a full-size CLIP."""
    ref = release_keys()
    state = {k: torch.zeros(v, dtype=torch.int64 if k in weights.JIT_EXTRAS else torch.float16) for k, v in ref["keys"].items()}
    for k in weights.JIT_EXTRAS:
        state.pop(k)
    with torch.device("meta"):
        model = mc.CLIP(**weights.clip_config(state))
    model.to_empty(device="cpu")
    report = weights.load_checked(model, state, "release layout", log=quiet)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == 302
    assert model.visual.conv1.weight.dtype == torch.float32 and float(model.visual.conv1.weight.detach().abs().sum()) == 0.0


def test_offline_download_says_how_to_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict("ViT-B/16", log=quiet)
    msg = one_line_error(e)
    assert "cannot download" in msg and "pretrained: /path/to/ViT-B-16.pt" in msg and "pretrained: none" in msg
    assert list((tmp_path / "clip").glob("*")) == []  # no partial file left behind


def test_download_is_checked_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    src = mc.CLIP(**SMALL)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    payload = buf.getvalue()
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(weights.CLIP_MODELS, "Tiny/8", f"https://example.invalid/clip/{sha}/Tiny-8.pt")
    calls = []

    def serve(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    state = weights.load_clip_state_dict("Tiny/8", log=quiet)
    assert len(calls) == 1 and (tmp_path / "clip" / "Tiny-8.pt").is_file()
    assert all(torch.equal(state[k], v) for k, v in src.state_dict().items())
    weights.load_clip_state_dict("Tiny/8", log=quiet)
    assert len(calls) == 1  # served from the cache after its SHA256 was checked
    (tmp_path / "clip" / "Tiny-8.pt").write_bytes(payload[:-10] + b"0123456789")
    weights.load_clip_state_dict("Tiny/8", log=quiet)
    assert len(calls) == 2  # a damaged cache entry is fetched again
    monkeypatch.setitem(weights.CLIP_MODELS, "Tiny/8", f"https://example.invalid/clip/{'0' * 64}/Other-8.pt")
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict("Tiny/8", log=quiet)
    assert "SHA256" in one_line_error(e)
    assert not (tmp_path / "clip" / "Other-8.pt").exists()


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict(str(tmp_path / "ViT-B-16.pt"))
    assert "not found" in one_line_error(e)
    assert weights.load_clip_state_dict("none") is None and weights.load_clip_state_dict(None) is None


def test_read_checkpoint_leaves_pickled_objects_out_without_running_them(tmp_path):
    from text_helpers import save_with_yacs_config

    path = save_with_yacs_config({"model": {"w": torch.arange(3.0)}}, tmp_path / "release.pth")
    logs = []
    obj = weights.read_checkpoint(path, "release", log=logs.append)  # CfgNode.__setstate__ would raise
    assert torch.equal(obj["model"]["w"], torch.arange(3.0)) and obj["epoch"] == 29
    assert isinstance(obj["config"], weights._Opaque) and obj["optimizer"]["param_groups"][0]["lr"] == 8e-6
    assert len(logs) == 1 and "yacs.config.CfgNode" in logs[0] and "left out" in logs[0]


def test_wrong_architecture_is_refused(tmp_path):
    torch.manual_seed(0)
    other = mc.CLIP(**{**SMALL, "vision_width": 64, "embed_dim": 16})
    model = mc.CLIP(**SMALL)
    with pytest.raises(SystemExit) as e:
        weights.load_checked(model, other.state_dict(), "other.pt", name="CLIP", log=quiet)
    assert "of another shape" in one_line_error(e)
    extra = {**model.state_dict(), "visual.transformer.resblocks.0.message_fc.weight": torch.zeros(2, 2)}
    with pytest.raises(SystemExit) as e:
        weights.load_checked(model, extra, "xclip.pth", log=quiet)
    assert "1 unexpected (visual.transformer.resblocks.0.message_fc.weight)" in one_line_error(e)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("transformer.")}
    with pytest.raises(SystemExit) as e:
        weights.load_checked(model, partial, "visual-only.pt", log=quiet)
    assert "missing" in one_line_error(e)
    torch.save(other.state_dict(), tmp_path / "small.pt")
    with pytest.raises(SystemExit) as e:
        weights.load_clip(str(tmp_path / "small.pt"), config=SMALL, log=quiet)
    assert "vision_width is 64, configured 128" in one_line_error(e)
    torch.save({"model_state": {"model.cls_token": torch.zeros(1, 1, 8)}}, tmp_path / "tsf.pyth")
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict(str(tmp_path / "tsf.pyth"))
    assert "holds no OpenAI CLIP ViT weights" in one_line_error(e)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict(str(tmp_path / "junk.pt"))
    assert "cannot read" in one_line_error(e)


def test_class_prompts_and_averaged_text_features():
    names = ["punching bag", "punching person (boxing)"]
    assert ct.class_prompts(names, ["a photo of a {}.", "a video of {}"]) == [
        ["a photo of a punching bag.", "a video of punching bag"],
        ["a photo of a punching person (boxing).", "a video of punching person (boxing)"]]
    assert ct.class_prompts(names, descriptions={"Punching bag": "hits a bag", "punching person (boxing)": "boxing"}) == [
        ["hits a bag"], ["boxing"]]
    torch.manual_seed(0)
    table = torch.randn(49408, 8)
    encode = lambda tokens: table[tokens].sum(1)  # any token -> feature map will do
    prompts = [["a", "b"], ["c"]]
    feats = ct.text_features(encode, prompts)
    a, b, c = (torch.nn.functional.normalize(encode(tk.tokenize([t]))[0], dim=0) for t in "abc")
    assert torch.allclose(feats[0], torch.nn.functional.normalize((a + b) / 2, dim=0), atol=1e-6)
    assert torch.allclose(feats[1], c, atol=1e-6) and feats.shape == (2, 8)


def test_class_text_cache_keys_on_the_computation_and_autocast_dtype():
    """A cached value is only served for the computation it came from: normalised or raw features
    (X-CLIP asks for raw ones), another computation on the same label space, another autocast dtype."""
    clip = tiny_clip()
    texts = ct.ClassTexts(["a video of {}", "{}"])
    texts.set_names(["falling", "rising"])
    with torch.no_grad():
        raw = texts.features(clip, normalize=False)
        unit = texts.features(clip)
        assert torch.allclose(unit.norm(dim=-1), torch.ones(2)) and not torch.allclose(raw.norm(dim=-1), torch.ones(2))
        assert texts.features(clip, normalize=False) is not unit and torch.equal(texts.features(clip, normalize=False), raw)
        assert torch.equal(texts.cached(clip, "zeros", lambda space: torch.zeros(len(space.names))), torch.zeros(2))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = texts.features(clip)
        with torch.autocast("cpu", dtype=torch.float16):
            half = texts.features(clip)
        assert not torch.equal(low, half)
