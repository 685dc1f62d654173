"""models/vificlip.py: OpenAI names, the release renamed at load time, both towers trained, cached
text in evaluation."""
import pytest
import torch
import torch.nn.functional as F

from conftest import one_line_error, quiet, record_text_batches, release_layout, tiny_cfg
from text_helpers import full_size_on_meta, meta_state, save_with_yacs_config, tiny, tiny_clip

from models import build_model
from models import tokenizer as tk
from models import weights

CLASSES = ["punching bag", "punching person", "falling down"]


def as_release(state: dict) -> dict:
    """Our (OpenAI-named) state dict in ViFi-CLIP's saved layout: DDP prefix, image_encoder /
    text_encoder roots, no token_embedding, the class-dependent prompt buffer."""
    out = {}
    for k, v in state.items():
        if k == "token_embedding.weight":
            continue
        if k.startswith("visual."):
            k = "image_encoder." + k[len("visual."):]
        elif k != "logit_scale":
            k = "text_encoder." + k
        out["module." + k] = v
    out["module.prompt_learner.complete_text_embeddings"] = torch.zeros(400, 77, state["positional_embedding"].shape[1])
    return out


def test_full_size_state_dict_is_openai_clip_and_the_release_maps_onto_it():
    clip_ref, vifi_ref = release_layout("openai_clip_vit_b16"), release_layout("vificlip_b16")
    model = full_size_on_meta("vificlip")
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert own == {k: v for k, v in clip_ref["keys"].items() if k not in weights.JIT_EXTRAS}
    assert sum(p.numel() for p in model.parameters()) == clip_ref["num_params"]
    # trainable = what ViFi-CLIP keeps and trains: everything but the token embedding
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == vifi_ref["num_params"]
    assert not model.token_embedding.weight.requires_grad and model.logit_scale.requires_grad
    logs = []
    report = model.load_state_from({"model": meta_state(vifi_ref["keys"]), "epoch": 10}, "vifi_clip_k400.pth",
                                   token_embedding=torch.empty(49408, 512, device="meta"), log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(own)
    assert any("prompt_learner.complete_text_embeddings" in m for m in logs)


def test_a_release_file_loads_by_renaming_with_the_token_embedding_from_clip(tmp_path, capsys):
    src = tiny("vificlip", CLASSES, seed=5)
    with torch.no_grad():
        src.logit_scale.fill_(3.0)
    clip = tiny_clip()
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    path = save_with_yacs_config({"model": as_release(src.state_dict())}, tmp_path / "vifi.pth")
    cfg = tiny_cfg("vificlip", token_embedding_from=str(tmp_path / "clip.pt"))
    cfg["pretrained"] = str(path)
    capsys.readouterr()
    model = build_model(cfg, CLASSES)
    for k, v in src.state_dict().items():
        want = clip.token_embedding.weight if k == "token_embedding.weight" else v
        assert torch.equal(model.state_dict()[k], want), k
    log = capsys.readouterr().err
    assert "prompt_learner.complete_text_embeddings" in log and "token_embedding.weight (absent from" in log
    assert "yacs.config.CfgNode" in log and f"loaded {len(src.state_dict())} tensors" in log


def test_releases_that_do_not_fit_are_refused_in_one_line(tmp_path):
    src = tiny("vificlip", CLASSES).state_dict()
    clip_path = tmp_path / "clip.pt"
    torch.save(tiny_clip().state_dict(), clip_path)
    prompting = as_release(src)
    prompting["module.prompt_learner.ctx"] = torch.zeros(4, 32)  # a prompting-stage checkpoint
    torch.save({"model": prompting}, tmp_path / "prompting.pth")
    partial = as_release(src)
    del partial["module.text_encoder.ln_final.weight"]
    torch.save({"model": partial}, tmp_path / "partial.pth")
    torch.save({"model": as_release(src)}, tmp_path / "release.pth")
    cases = (("prompting.pth", str(clip_path), ("1 unexpected", "prompt_learner.ctx")),
             ("partial.pth", str(clip_path), ("1 missing", "ln_final.weight")),
             ("release.pth", "none", ("no token_embedding", "model.token_embedding_from")))
    for name, token_source, words in cases:
        cfg = tiny_cfg("vificlip", token_embedding_from=token_source)
        cfg["pretrained"] = str(tmp_path / name)
        with pytest.raises(SystemExit) as e:
            build_model(cfg, CLASSES)
        one_line_error(e, *words)


def test_clip_weights_load_directly(tmp_path):
    clip = tiny_clip()
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    model = tiny("vificlip", CLASSES, seed=9)
    report = model.load_pretrained(str(tmp_path / "clip.pt"), log=quiet)
    assert report["missing"] == [] and report["unexpected"] == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in clip.state_dict().items())


def test_forward_is_clip_on_the_frame_mean_with_photo_prompts():
    model = tiny("vificlip", CLASSES).eval()
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)  # ImageNet statistics
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    with torch.no_grad():
        frames = model.visual((video.flatten(0, 1).float() - mean) / std).view(2, 4, -1).mean(1)
        text = model.encode_text(tk.tokenize([f"a photo of a {c}." for c in CLASSES]))
        expected = model.logit_scale.exp() * F.normalize(frames, dim=-1) @ F.normalize(text, dim=-1).t()
        torch.testing.assert_close(model(video), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(video[:, [3, 1, 0, 2]]), expected, atol=1e-5, rtol=1e-5)


def test_both_towers_train_and_the_eval_cache_never_outlives_a_step():
    model = tiny("vificlip", CLASSES)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    calls = record_text_batches(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(video).logsumexp(1).sum().backward()
    model(video)
    assert calls == [3, 3]  # training: the prompts go through the text tower every step
    for name, p in model.named_parameters():
        if name == "token_embedding.weight":
            assert p.grad is None
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        before = model(video)
        torch.testing.assert_close(model(video), before)
        assert calls == [3, 3, 3]  # evaluation: once per label space
        model.texts.cache.clear()
        torch.testing.assert_close(model(video), before)  # cached == uncached
    opt.step()  # training resumed: the cache must not be reused
    with torch.no_grad():
        after = model(video)
    assert len(calls) == 5 and not torch.allclose(after, before)
    fresh = tiny("vificlip", CLASSES, seed=11).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(video), after, atol=1e-6, rtol=1e-6)
