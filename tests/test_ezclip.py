"""models/ezclip.py: EZ-CLIP's architecture against its release layout, a literal sequence-first
re-reading of its forward pass, plain CLIP at initialisation, the motion loss and the in-batch KL loss,
the release loader and training through train.py (coarse and fine base-to-novel)."""
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import (build_unloaded, check_resume_matches_uninterrupted, one_line_error, perturb, quiet, random_clips,
                      record_text_batches, release_layout, tiny_cfg, train_args, write_descriptions)
from text_helpers import literal_in_batch_loss
import evaluate
import train
from models import build_model, load_recipe
from models import clip as mc
from models import tokenizer as tk
from models import ezclip

NAMES = ["falling", "rising", "orbiting"]


def tiny(**model):
    return tiny_cfg("ezclip", **model)


def tiny_model(seed=0, **model):
    torch.manual_seed(seed)
    return build_unloaded(tiny(**model), NAMES)


def release_container(keys: dict, float32_keys=(), t=None):
    """EZ-CLIP's checkpoint layout with meta tensors of the release's dtypes."""
    state = {}
    for k, shape in keys.items():
        dtype = torch.float32 if k in float32_keys else torch.float16
        state[k] = torch.empty(shape, dtype=dtype, device="meta")
    return {"epoch": 70, "model_state_dict": state, "optimizer_state_dict": {}}


# ---------------------------------------------------------------------------------------------
# the release layout


@pytest.fixture(scope="module")
def release():
    return release_layout("ezclip_b16_8f")


def full_size():
    cfg = load_recipe("ezclip", "k400ta")
    cfg["pretrained"] = "none"
    with torch.device("meta"):
        return build_model(cfg, NAMES)


def test_full_size_state_dict_is_the_release(release):
    model = full_size()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == release["keys"]
    assert sum(p.numel() for p in model.parameters()) == release["num_params"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("prompt" in n or "Adapter" in n for n in trainable)
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == 5_204_736
    assert {n for n in trainable if not n.startswith("visual.")} == {
        f"transformer.resblocks.{i}.Adapter.{m}.{w}" for i in range(12) for m in ("D_fc1", "D_fc2") for w in ("weight", "bias")}


def test_release_container_loads_with_nothing_missing(release, tmp_path):
    path = tmp_path / "ezclip_k400.pt"
    torch.save(release_container(release["keys"], set(release["float32_keys"])), path)
    model, logs = full_size(), []
    report = model.load_pretrained(str(path), log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(release["keys"])


def test_mismatched_checkpoints_are_refused_in_one_line(release, tmp_path):
    keys = dict(release["keys"])
    keys["visual.transformer.resblocks.3.Adapter.D_fc1.weight"] = [96, 768]
    del keys["transformer.resblocks.0.Adapter.D_fc2.bias"]
    torch.save(release_container(keys), tmp_path / "bad.pt")
    torch.save({"model_state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.pt")
    for name, words in (("bad.pt", "1 missing (transformer.resblocks.0.Adapter.D_fc2.bias); 1 of another shape"),
                        ("other.pt", "holds neither EZ-CLIP nor CLIP weights"), ("absent.pt", "not found")):
        with pytest.raises(SystemExit) as e:
            full_size().load_pretrained(str(tmp_path / name), log=quiet)
        one_line_error(e, words)


def test_a_release_of_another_frame_count_is_resampled_along_time(tmp_path):
    src = build_unloaded(tiny() | {"input": {**tiny()["input"], "frames": 8}}, NAMES)
    perturb(src)
    with torch.no_grad():  # a ramp along time: linear resampling keeps it a ramp
        src.visual.temporal_embedding.copy_(torch.arange(8.0).view(1, 8, 1).expand(1, 8, 64))
    torch.save({"epoch": 1, "model_state_dict": {k: v.half() for k, v in src.state_dict().items()}}, tmp_path / "t8.pt")
    model, logs = tiny_model(), []
    report = model.load_pretrained(str(tmp_path / "t8.pt"), log=logs.append)
    assert report["missing"] == [] and sum("from 8 to 4 frames" in m for m in logs) == 2
    assert model.visual.temporal_embedding[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5, 6.5])
    want = mc.resample_frames(src.visual.transformer.T_prompt_embeddings.half().float(), 4)
    torch.testing.assert_close(model.visual.transformer.T_prompt_embeddings, want)
    torch.testing.assert_close(model.visual.conv1.weight, src.visual.conv1.weight.half().float())
    assert model.eval()(random_clips()).shape == (2, 3)


def test_clip_weights_leave_prompts_and_adapters_at_their_initialisation(tmp_path):
    torch.manual_seed(3)
    clip = mc.CLIP(32, 32, 2, 64, 8, 77, 49408, 32, 2, 2, vision_heads=2)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    logs = []
    model = tiny_model()
    prompts = model.visual.transformer.T_prompt_embeddings.clone()
    report = model.load_pretrained(str(tmp_path / "clip.pt"), log=logs.append)
    assert report["unexpected"] == [] and len(report["missing"]) == 2 + 2 * 2 * 4  # 2 towers x 2 blocks x 4 Adapter tensors
    assert torch.equal(model.visual.transformer.T_prompt_embeddings, prompts)
    assert torch.equal(model.token_embedding.weight, clip.token_embedding.weight)


# ---------------------------------------------------------------------------------------------
# numerics


def test_motion_loss_equals_a_direct_computation():
    x = torch.tensor([0.0, 1.0, 3.0]).view(1, 3, 1)
    # C = mean(|1-0|, |3-0|, |3-1|) / 2 = 1; V = unbiased variance of (0, 1, 3) = 7/3
    assert ezclip.motion_loss(x).item() == pytest.approx(1 / (1 + 7 / 3 + 1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g)
    c = sum((x[b, min(t + 1, 4)] - x[b, max(t - 1, 0)]).abs().sum() / 2 for b in range(3) for t in range(5)) / (3 * 5 * 7)
    mean = x.mean(1, keepdim=True)
    v = ((x - mean) ** 2).sum(1).div(4).mean()
    assert ezclip.motion_loss(x).item() == pytest.approx((1 / (c + v + 1)).item(), rel=1e-6)
    assert ezclip.motion_loss(x.repeat_interleave(2, 0)).item() == pytest.approx(ezclip.motion_loss(x).item(), rel=1e-6)


def test_training_loss_is_the_in_batch_kl_loss_plus_the_motion_loss(tmp_path):
    """EZ-CLIP's train.py: (KL_img + KL_txt) / 2 over 100 x cos(video i, text of clip j's class) plus
    L_motion of the frame features; `ce` puts the cross-entropy over the classes in place of the KL."""
    cfg = tiny(prompt_dropout=0.0)  # the same frame features in every pass
    cfg["text"]["descriptions"] = str(write_descriptions(tmp_path / "d.csv", {n: f"it is {n}" for n in NAMES}))
    torch.manual_seed(0)
    model = build_unloaded(cfg, NAMES).train()
    clip_batch, targets = random_clips(batch=4), torch.tensor([1, 0, 1, 2])
    out = model(clip_batch, targets=targets)
    with torch.no_grad():
        frames = model.encode_frames(clip_batch)
        v = F.normalize(frames.mean(1), dim=-1)
        text = F.normalize(model.encode_text(tk.tokenize([f"it is {NAMES[y]}" for y in targets])), dim=-1)
        want = literal_in_batch_loss(v, text, targets.tolist(), 100.0, "kl") + ezclip.motion_loss(frames).item()
        torch.testing.assert_close(out["logits"], 100 * v @ model.class_features().t())
    assert out["loss"].item() == pytest.approx(want, rel=1e-5)
    model.loss = "ce"
    out = model(clip_batch, targets=targets)
    want = F.cross_entropy(out["logits"], targets) + ezclip.motion_loss(model.encode_frames(clip_batch))
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert load_recipe("ezclip", "synta")["model"]["loss"] == "kl"


def reference_frames(model, clip_batch):
    """EZ-CLIP's visual forward read literally in its own sequence-first layout, from the weights."""
    vis = model.visual
    b, t = clip_batch.shape[:2]
    x = (clip_batch.float() - model.mean) / model.std
    x = F.conv2d(x.flatten(0, 1), vis.conv1.weight, stride=vis.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([vis.class_embedding.expand(b * t, 1, -1), x], 1) + vis.positional_embedding
    n, d = x.shape[1], x.shape[2]
    x = (x.view(b, t, n, d).transpose(1, 2).reshape(b * n, t, d) + vis.temporal_embedding)  # '(b t) n d -> (b n) t d'
    x = x.view(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
    x = F.layer_norm(x, (d,), vis.ln_pre.weight, vis.ln_pre.bias).permute(1, 0, 2)  # [L, N, D]

    def ln(z, m):
        return F.layer_norm(z, (d,), m.weight, m.bias)

    def attention(z, blk):  # z [L, N, D], every head over the whole sequence, biases as stored
        heads = blk.attn.num_heads
        q, k, v = F.linear(z, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, -1)
        q, k, v = (u.reshape(z.shape[0], z.shape[1] * heads, -1).transpose(0, 1) for u in (q, k, v))
        w = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, -1)
        out = (w @ v).transpose(0, 1).reshape(z.shape)
        return F.linear(out, blk.attn.out_proj.weight, blk.attn.out_proj.bias)

    for i, blk in enumerate(vis.transformer.resblocks):
        length = x.shape[0]
        x4 = x.view(length, b, t, d)
        p = vis.transformer.T_prompt_embeddings[i:i + 1].expand(b, -1, -1) + x4.mean(0)  # [b, t, d]
        p = p.permute(1, 0, 2)  # frames as the sequence
        p = attention(ln(p, blk.ln_1), blk).permute(1, 0, 2)  # [b, t, d]
        x = torch.cat([x4, p.unsqueeze(0)], 0).view(length + 1, b * t, d)
        x = (x + attention(ln(x, blk.ln_1), blk))[:length]
        a = blk.Adapter
        x = x + F.linear(F.gelu(F.linear(x, a.D_fc1.weight, a.D_fc1.bias)), a.D_fc2.weight, a.D_fc2.bias)
        h = F.linear(ln(x, blk.ln_2), blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)
        x = x + F.linear(h * torch.sigmoid(1.702 * h), blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)
    return (ln(x[0], vis.ln_post) @ vis.proj).view(b, t, -1)


def test_prompted_forward_matches_a_literal_sequence_first_reading():
    model = tiny_model().eval()
    perturb(model)  # Adapters, temporal embedding and prompts all away from their initial values
    clip_batch = random_clips()
    with torch.no_grad():
        ours, ref = model.encode_frames(clip_batch), reference_frames(model, clip_batch)
        torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
        # the prompt tokens let frames see each other: changing one frame moves every frame's feature
        other = clip_batch.clone()
        other[:, 3] = 255 - other[:, 3]
        moved = (model.encode_frames(other) - ours).abs().amax(-1)
        assert (moved[:, :3] > 1e-4).all()


def test_zero_adapters_and_no_prompts_give_plain_clip():
    """At initialisation the Adapters are the identity and temporal_embedding is zero: without the
    prompt tokens the image tower is exactly CLIP's per frame, and the text tower always is."""
    model = tiny_model(prompts=False).eval()
    assert not any("prompt" in k for k in model.state_dict())
    clip = mc.CLIP(32, 32, 2, 64, 8, 77, 49408, 32, 2, 2, vision_heads=2).eval()
    clip.load_state_dict({k: v for k, v in model.state_dict().items() if k in clip.state_dict()})
    clip_batch = random_clips()
    tokens = tk.tokenize(NAMES)
    with torch.no_grad():
        frames = ((clip_batch.float() - model.mean) / model.std).flatten(0, 1)
        torch.testing.assert_close(model.encode_frames(clip_batch), clip.encode_image(frames).view(2, 4, -1))
        torch.testing.assert_close(model.encode_text(tokens), clip.encode_text(tokens))
        prompted = tiny_model().eval()
        torch.testing.assert_close(prompted.encode_text(tokens), clip.encode_text(tokens))
        assert not torch.allclose(prompted.encode_frames(clip_batch), clip.encode_image(frames).view(2, 4, -1))
    logits = model(clip_batch)
    feats = F.normalize(clip.encode_image(frames).view(2, 4, -1).mean(1), dim=-1)
    torch.testing.assert_close(logits, 100 * feats @ F.normalize(clip.encode_text(tokens), dim=-1).t())


def test_only_prompts_and_adapters_receive_gradients():
    model = tiny_model().train()
    out = model(random_clips(), targets=torch.tensor([0, 2]))
    assert set(out) == {"logits", "loss"}
    out["loss"].backward()
    for name, p in model.named_parameters():
        if "prompt" in name or "Adapter" in name:
            assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
            if "D_fc2" in name or "prompt" in name:
                assert p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert model.visual.transformer.resblocks[1].drop_path.p == 0.0  # the tiny recipe switches it off
    assert [b.drop_path.p for b in build_unloaded(tiny(drop_path=0.1), NAMES).transformer.resblocks] == [0.0, 0.1]


def test_class_texts_are_cached_only_when_no_gradient_can_reach_them(tmp_path):
    model = tiny_model().eval()
    calls = record_text_batches(model)
    with torch.no_grad():
        first = model.class_features()
        assert model.class_features() is first and calls == [3]
    model.train()
    model.class_features()
    assert calls == [3, 3]  # training: the text Adapters learn, features are recomputed
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.class_features().sum().backward()
    model.transformer.resblocks[0].Adapter.D_fc2.bias.grad.fill_(0.1)
    opt.step()
    with torch.no_grad():
        after = model.class_features()
        assert calls == [3, 3, 3, 3] and not torch.allclose(after, first)  # the step invalidated the cache
    model.set_class_names(NAMES[:2])
    with torch.no_grad():
        assert model.class_features().shape == (2, 32)
    frozen = tiny_model(train_text_adapters=False).train()
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if not n.startswith("visual."))
    assert frozen.class_features() is frozen.class_features()


def test_descriptions_replace_the_class_names(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("name,description\nfalling,An object drops.\nrising,\"It goes\n up.\"\norbiting,It circles.\n")
    cfg = tiny()
    cfg["text"]["descriptions"] = {"coarse": str(path), "fine": None}
    model = build_unloaded(cfg, NAMES)
    assert torch.equal(model.texts.tokens, tk.tokenize(["An object drops.", "It goes up.", "It circles."]))
    cfg["task"] = "fine"  # no file for the fine task: the templates
    cfg["text"]["templates"] = ["a video of {}.", "{}"]
    model = build_unloaded(cfg, NAMES)
    assert model.texts.counts == [2, 2, 2] and model.class_features().shape == (3, 32)
    cfg["text"]["descriptions"] = str(path)  # one file for every task
    with pytest.raises(SystemExit, match="no description for 1 classes"):
        build_unloaded(cfg, NAMES + ["teleporting"])


def test_recipe():
    for ds, lr, bs, epochs in (("k400ta", 5e-6, 40, 71), ("ssv2ta", 1e-4, 40, 71), ("synta", 1e-3, 26, 81)):
        cfg = load_recipe("ezclip", ds)
        t = cfg["train"]
        assert (t["lr"], t["batch_size"], t["epochs"]) == (pytest.approx(lr), bs, epochs)
        assert t["weight_decay"] == pytest.approx(0.2) and t["warmup_epochs"] == 5 and t["grad_clip"] == 20
        assert t["betas"] == [0.9, 0.98] and cfg["pretrained"] == "ViT-B/16"
        assert cfg["input"]["frames"] == 8 and cfg["input"]["sampling"] == "segment"
        assert cfg["input"]["mean"] == pytest.approx([255 * m for m in mc.CLIP_MEAN])
        assert (cfg["test"]["clips"], cfg["test"]["crops"], cfg["test"]["short_side"]) == (1, 1, 256)
    assert load_recipe("ezclip", "ssv2ta")["input"]["flip"] is False


# ---------------------------------------------------------------------------------------------
# through train.py and evaluate.py


def test_coarse_training_through_the_harness(synta_tiny, tmp_path):
    _, splits = synta_tiny
    before = tiny_model(seed=0).state_dict()
    result = train.main(train_args(splits, tmp_path / "run", "ezclip"))
    assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss"] > 0 for r in log if r["type"] == "step")
    after = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["model"]
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all("prompt" in k or "Adapter" in k for k in changed)


def test_fine_base_to_novel_with_descriptions(synta_tiny, tmp_path, capsys):
    from data.hierarchy import load_hierarchy

    _, splits = synta_tiny
    hierarchy = load_hierarchy("synta")
    path = write_descriptions(tmp_path / "fine.csv", {c.name: f"a video where {c.name.lower()}" for c in hierarchy.fine})
    result = train.main(train_args(splits, tmp_path / "fine", "ezclip", "--task", "fine", "--set", f"text.descriptions.fine={path}"))
    assert result["task"] == "fine" and result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
    capsys.readouterr()
    summary = evaluate.main(["--ckpt", str(tmp_path / "fine" / "ckpt.pt"), "--workers", "0"])
    assert summary["directions"][0]["top1"] == result["top1"]
    # scored within each set's own label space: the model ends on set 2's fine classes
    cfg = torch.load(tmp_path / "fine" / "ckpt.pt", weights_only=True)["config"]
    model = build_model({**cfg, "pretrained": "none"}, hierarchy.fine_names(1))
    model.set_class_names(hierarchy.fine_names(2))
    assert model.texts.names == hierarchy.fine_names(2) and len(model.texts.tokens) == len(hierarchy.fine_names(2))


def test_resumed_run_matches_an_uninterrupted_one(synta_tiny, tmp_path, monkeypatch):
    _, splits = synta_tiny
    check_resume_matches_uninterrupted(splits, tmp_path, "ezclip", monkeypatch)


def test_bf16_autocast_keeps_logits_and_loss_in_fp32():
    model = tiny_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(random_clips(), targets=torch.tensor([0, 1]))
    assert out["logits"].dtype == torch.float32 and out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert model.visual.transformer.T_prompt_embeddings.grad.dtype == torch.float32
    with torch.no_grad():
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(random_clips())
        torch.testing.assert_close(low, model(random_clips()), atol=0.5, rtol=0.05)
