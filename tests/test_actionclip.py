"""models/actionclip.py: the mmaction2 port's layout, both release formats and their LayerNorm eps,
template averaging at test, random templates and the in-batch objectives in training."""
import pytest
import torch
import torch.nn.functional as F

from conftest import one_line_error, quiet, release_layout, tiny_cfg
from text_helpers import full_size_on_meta, literal_in_batch_loss, meta_state, tiny, tiny_clip

import evaluate
from models import build_model
from models import actionclip as ma
from models import class_texts as ct
from models import tokenizer as tk

CLASSES = ["punching bag", "punching person", "falling down"]


def original_release(clip_state: dict, adapter_state: dict, rows: int = 77) -> dict:
    """Our state dict in the original release's container: bare CLIP names in fp16 (LayerNorms,
    embeddings and logit_scale stay fp32, as convert_weights leaves them), the fusion model behind
    DataParallel's `module.` with a 77-row frame_position_embeddings."""
    keep32 = ("ln_", "embedding", "logit_scale", "positional", "class_embedding")
    model_sd = {k: v if any(s in k for s in keep32) else v.half() for k, v in clip_state.items()}
    fusion = {f"module.{k}": v for k, v in adapter_state.items() if k != "layer_norm_eps"}  # ours only
    pos = fusion["module.frame_position_embeddings.weight"]
    fusion["module.frame_position_embeddings.weight"] = torch.cat([pos, torch.randn(rows - len(pos), pos.shape[1])])
    return {"epoch": 49, "model_state_dict": model_sd, "fusion_model_state_dict": fusion, "optimizer_state_dict": {}}


def test_full_size_state_dict_is_the_port_and_both_releases_load():
    ref = release_layout("actionclip_b16_8f")
    model = full_size_on_meta("actionclip", frames=8)
    want = {f"clip.{k}": s for k, s in ref["keys"].items()}
    want.update({f"adapter.{k[len('module.'):]}": s for k, s in ref["fusion_model_state_dict_keys"].items()})
    want["adapter.frame_position_embeddings.weight"] = [8, 512]  # the port keeps T rows of the original's 77
    want["adapter.layer_norm_eps"] = []  # ours: the eps of the weights loaded
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == want
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"] + ref["fusion_model_num_params"] - 69 * 512
    original = {"epoch": 49, "optimizer_state_dict": {},
                "model_state_dict": meta_state(ref["keys"], torch.float16, ref["float32_keys"]),
                "fusion_model_state_dict": meta_state(ref["fusion_model_state_dict_keys"])}
    logs = []
    report = model.load_state_from(original, "ActionCLIP release", log=logs.append)
    assert report["missing"] == [] and report["unexpected"] == [] and report["loaded"] == len(want)
    assert any("first 8 of 77 rows" in m for m in logs)
    port = {"meta": {"epoch": 50}, "state_dict": meta_state(want)}
    report = model.load_state_from(port, "vit-b-16-8f.pth", log=quiet)
    assert report["missing"] == [] and report["unexpected"] == []


def test_original_release_file_maps_by_name_and_keeps_the_first_frame_rows(tmp_path):
    src = tiny("actionclip", CLASSES, seed=4)
    clip_sd = src.clip.state_dict()
    release = original_release(clip_sd, src.adapter.state_dict())
    torch.save(release, tmp_path / "actionclip_vit-b-16.pt")
    cfg = tiny_cfg("actionclip")
    cfg["pretrained"] = str(tmp_path / "actionclip_vit-b-16.pt")
    model = build_model(cfg, CLASSES)
    for k, v in release["model_state_dict"].items():
        assert model.state_dict()[f"clip.{k}"].dtype == torch.float32
        torch.testing.assert_close(model.state_dict()[f"clip.{k}"], v.float(), atol=0, rtol=0)
    rows = release["fusion_model_state_dict"]["module.frame_position_embeddings.weight"]
    assert torch.equal(model.adapter.frame_position_embeddings.weight, rows[:4])
    for k, v in src.adapter.state_dict().items():
        assert torch.equal(model.adapter.state_dict()[k], v) or k == "layer_norm_eps", k
    assert model.adapter.layer_norm_eps.item() == pytest.approx(1e-12)  # the original's TF-style LayerNorm


def test_port_and_clip_files_load_and_mismatches_are_refused(tmp_path):
    src = tiny("actionclip", CLASSES, seed=4)
    port = {f"{k}": v for k, v in src.state_dict().items()}
    port["data_preprocessor.mean"] = torch.zeros(3, 1, 1)  # mmaction2's preprocessor buffers, if saved
    torch.save({"meta": {"mmaction_version": "1.1"}, "state_dict": port}, tmp_path / "port.pth")
    logs = []
    model = tiny("actionclip", CLASSES, seed=8)
    report = model.load_pretrained(str(tmp_path / "port.pth"), log=logs.append)
    assert report["unexpected"] == ["data_preprocessor.mean"] and report["missing"] == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in src.state_dict().items())
    clip = tiny_clip()
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    report = model.load_pretrained(str(tmp_path / "clip.pt"), log=quiet)
    assert report["unexpected"] == [] and all(k.startswith("adapter.") for k in report["missing"])
    assert all(torch.equal(model.clip.state_dict()[k], v) for k, v in clip.state_dict().items())

    short = dict(port)
    short["adapter.frame_position_embeddings.weight"] = port["adapter.frame_position_embeddings.weight"][:2]
    torch.save({"state_dict": short}, tmp_path / "short.pth")
    extra = {**port, "adapter.transformer.resblocks.9.ln_1.weight": torch.ones(32)}
    torch.save({"state_dict": extra}, tmp_path / "extra.pth")
    torch.save({"model": {"mit.positional_embedding": torch.zeros(1, 8, 32)}}, tmp_path / "xclip.pth")
    for name, words in (("short.pth", ("another shape", "frame_position_embeddings")),
                        ("extra.pth", ("1 unexpected", "resblocks.9")), ("xclip.pth", ("neither ActionCLIP nor CLIP",))):
        cfg = tiny_cfg("actionclip")
        cfg["pretrained"] = str(tmp_path / name)
        with pytest.raises(SystemExit) as e:
            build_model(cfg, CLASSES)
        one_line_error(e, *words)


def test_test_scores_average_the_templates_probabilities():
    model = tiny("actionclip", CLASSES).eval()
    assert model.texts.templates == list(ma.TEMPLATES) and len(model.texts.templates) == 16
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1) * 255  # CLIP statistics
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1) * 255
    with torch.no_grad():
        frames = model.clip.visual((video.flatten(0, 1).float() - mean) / std).view(2, 4, -1)
        v = F.normalize(model.adapter(frames), dim=-1)
        probs = torch.zeros(2, 3)
        for template in ma.TEMPLATES:
            text = F.normalize(model.clip.encode_text(tk.tokenize([template.format(c) for c in CLASSES])), dim=-1)
            probs += (100.0 * v @ text.t()).softmax(-1) / len(ma.TEMPLATES)
        scores = model(video)
        torch.testing.assert_close(scores.softmax(-1), probs, atol=1e-6, rtol=1e-5)
        model.texts.cache.clear()
        torch.testing.assert_close(model(video), scores)  # cached == uncached


def test_training_logits_use_one_random_template_per_clip():
    model = tiny("actionclip", CLASSES).train()
    video = torch.randint(0, 256, (6, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        v = F.normalize(model.forward_features(video), dim=-1)
        per_template = torch.stack([
            model.clip.logit_scale.exp() * v @ F.normalize(model.clip.encode_text(tk.tokenize([t.format(c) for c in CLASSES])), dim=-1).t()
            for t in ma.TEMPLATES])  # [P, B, K]
        torch.manual_seed(0)
        logits = model(video)
        torch.manual_seed(0)
        drawn = torch.randint(16, (6,))
    torch.testing.assert_close(logits, per_template[drawn, torch.arange(6)], atol=1e-5, rtol=1e-5)
    assert len(set(drawn.tolist())) > 1
    model.template_sampling = "batch"
    with torch.no_grad():
        torch.manual_seed(1)
        logits = model(video)
        torch.manual_seed(1)
        t = torch.randint(16, (1,)).item()
    torch.testing.assert_close(logits, per_template[t], atol=1e-5, rtol=1e-5)


def test_tiny_forward_backward_on_uint8_trains_everything():
    model = tiny("actionclip", CLASSES)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    logits = model(video)
    assert logits.shape == (2, 3) and logits.dtype == torch.float32
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    for name, p in model.named_parameters():
        assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "clip.token_embedding.weight":
            assert p.grad.abs().sum() > 0, name
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(names)
    assert model.lr_multipliers() == {"adapter.": 10.0}
    assert {n for n in names if "adapter." in n} == {n for n in names if n.startswith("adapter.")}


# ---------------------------------------------------------------------------------------------
# the adapter's LayerNorm eps: the original release's 1e-12, the port's 1e-5


def original_fusion(x: torch.Tensor, fusion: dict, eps: float) -> torch.Tensor:
    """The original's fusion model (modules/Visual_Prompt.py, sim_header Transf) read literally:
    sequence-first nn.MultiheadAttention blocks with TF-style LayerNorm (eps inside the square root)."""
    def tf_norm(h, name):
        u = h.mean(-1, keepdim=True)
        s = (h - u).pow(2).mean(-1, keepdim=True)
        return fusion[f"{name}.weight"] * ((h - u) / torch.sqrt(s + eps)) + fusion[f"{name}.bias"]

    d, t = x.shape[-1], x.shape[1]
    h = (x + fusion["module.frame_position_embeddings.weight"][:t]).permute(1, 0, 2)
    layers = {k.split(".")[3] for k in fusion if ".resblocks." in k}
    for i in sorted(layers):
        p = f"module.transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(d, 1)
        attn.load_state_dict({k[len(p + "attn."):]: v for k, v in fusion.items() if k.startswith(p + "attn.")})
        y = tf_norm(h, p + "ln_1")
        h = h + attn(y, y, y, need_weights=False)[0]
        y = F.linear(tf_norm(h, p + "ln_2"), fusion[p + "mlp.c_fc.weight"], fusion[p + "mlp.c_fc.bias"])
        h = h + F.linear(y * torch.sigmoid(1.702 * y), fusion[p + "mlp.c_proj.weight"], fusion[p + "mlp.c_proj.bias"])
    return (h.permute(1, 0, 2) + x).mean(1)


def test_adapter_layer_norm_eps_is_the_release_s_and_our_checkpoints_keep_it(tmp_path):
    src = tiny("actionclip", CLASSES, seed=4)
    with torch.no_grad():
        for p in src.adapter.parameters():  # off the identity LayerNorms and zero biases
            p.add_(0.05 * torch.randn_like(p))
    release = original_release(src.clip.state_dict(), src.adapter.state_dict())
    x = 1e-3 * torch.randn(2, 4, 32)  # small frame features: the LayerNorms' variance is near the eps
    fusion = {k: v.float() for k, v in release["fusion_model_state_dict"].items()}
    original = original_fusion(x, fusion, 1e-12)
    assert (original_fusion(x, fusion, 1e-5) - original).abs().max() > 1e-4  # the eps matters here

    logs = []
    model = tiny("actionclip", CLASSES, seed=8)
    model.load_state_from(release, "the original release", log=logs.append)
    assert model.adapter.layer_norm_eps.item() == pytest.approx(1e-12) and any("eps 1e-12" in m for m in logs)
    with torch.no_grad():
        torch.testing.assert_close(model.adapter(x), original, atol=1e-6, rtol=1e-5)
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pt")  # a checkpoint of ours keeps the eps
    again = tiny("actionclip", CLASSES, seed=9)
    evaluate.load_model_state(again, torch.load(tmp_path / "ours.pt", weights_only=True)["model"], "ours.pt")
    assert again.adapter.layer_norm_eps.item() == pytest.approx(1e-12)
    with torch.no_grad():
        torch.testing.assert_close(again.adapter(x), original, atol=1e-6, rtol=1e-5)

    port = {k: v for k, v in model.state_dict().items() if k != ma.EPS_KEY}  # the port's file: no eps, its 1e-5
    model.load_state_from({"state_dict": port}, "vit-b-16-8f.pth", log=quiet)
    assert model.adapter.layer_norm_eps.item() == pytest.approx(1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model.adapter(x), original_fusion(x, fusion, 1e-5), atol=1e-6, rtol=1e-5)
    assert tiny("actionclip", CLASSES).adapter.layer_norm_eps.item() == pytest.approx(1e-5)  # CLIP weights or none


# ---------------------------------------------------------------------------------------------
# training objectives


def test_in_batch_losses_match_a_literal_reading():
    torch.manual_seed(0)
    video, text = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])  # clips of one class share the target's mass
    for kind in ("kl", "infonce"):
        want = literal_in_batch_loss(video, text, labels.tolist(), 14.0, kind)
        assert ct.in_batch_loss(video, text, labels, 14.0, kind).item() == pytest.approx(want, rel=1e-5)
    assert ct.in_batch_loss(video, text, torch.arange(6), 14.0, "kl").item() != pytest.approx(
        ct.in_batch_loss(video, text, labels, 14.0, "kl").item())


def test_training_objectives_match_each_clip_with_its_class_in_its_template():
    model = tiny("actionclip", CLASSES).train()
    assert model.loss == "infonce"  # the study's: the mmaction2 port's
    video = torch.randint(0, 256, (5, 4, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([2, 0, 2, 1, 0])
    torch.manual_seed(3)
    drawn = torch.randint(16, (5,))
    with torch.no_grad():
        v = F.normalize(model.forward_features(video), dim=-1)
        scale = model.clip.logit_scale.exp()
        text = [F.normalize(model.clip.encode_text(tk.tokenize([ma.TEMPLATES[t].format(c) for c in CLASSES])), dim=-1)
                for t in drawn.tolist()]
        logits = torch.stack([scale * v[b] @ text[b].t() for b in range(5)])  # every class in the clip's template
        paired = torch.stack([text[b][targets[b]] for b in range(5)])  # clip b's class in its template
    for loss in ("infonce", "kl", "ce"):
        model.loss = loss
        model.zero_grad()
        torch.manual_seed(3)
        out = model(video, targets=targets)
        torch.testing.assert_close(out["logits"], logits, atol=1e-5, rtol=1e-5)
        want = F.cross_entropy(logits, targets).item() if loss == "ce" else \
            literal_in_batch_loss(v, paired, targets.tolist(), scale.item(), loss)
        assert out["loss"].item() == pytest.approx(want, rel=1e-4), loss
        out["loss"].backward()
        for name in ("clip.token_embedding.weight", "clip.logit_scale", "adapter.frame_position_embeddings.weight"):
            assert dict(model.named_parameters())[name].grad.abs().sum() > 0, (loss, name)
    assert isinstance(model(video), torch.Tensor) and isinstance(model.eval()(video, targets=targets), torch.Tensor)


def test_in_batch_objectives_refuse_soft_targets():
    for key in ("mixup", "cutmix", "label_smoothing"):
        cfg = tiny_cfg("actionclip")
        cfg["train"][key] = 0.2
        with pytest.raises(SystemExit) as e:
            build_model(cfg, CLASSES)
        one_line_error(e, f"train.{key}", "model.loss infonce", "model.loss to ce")
        cfg["model"]["loss"] = "ce"
        assert build_model(cfg, CLASSES).loss == "ce"
    with pytest.raises(SystemExit) as e:
        build_model(tiny_cfg("actionclip", loss="nll"), CLASSES)
    one_line_error(e, "model.loss must be infonce, kl or ce")


def gather_worker(rank: int, folder: str) -> None:
    """One of two processes holding half of the batch of test_in_batch_losses_see_the_batch_of_every_process."""
    import torch.distributed as dist

    torch.manual_seed(0)
    video, text = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    labels, half = torch.tensor([0, 1, 0, 2, 1, 0]), slice(3 * rank, 3 * rank + 3)
    whole = {}
    for kind in ("kl", "infonce"):  # one process, the whole batch
        whole[kind] = [t.clone().requires_grad_() for t in (video, text)]
        whole[kind].append(ct.in_batch_loss(*whole[kind], labels, 14.0, kind))
        whole[kind][-1].backward()
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        for kind in ("kl", "infonce"):
            mine = [t[half].clone().requires_grad_() for t in (video, text)]
            loss = ct.in_batch_loss(*mine, labels[half], 14.0, kind)
            loss.backward()
            assert loss.item() == pytest.approx(whole[kind][-1].item(), rel=1e-6)
            for local, full in zip(mine, whole[kind]):  # summed over the 2 processes' identical losses; DDP then averages
                torch.testing.assert_close(local.grad, 2 * full.grad[half])
    finally:
        dist.destroy_process_group()


def test_in_batch_losses_see_the_batch_of_every_process(tmp_path):
    """With several processes, each one's loss is the whole batch's (ActionCLIP and EZ-CLIP ran one
    process on the whole batch; the port gathers), with the gradient of the whole batch's loss."""
    torch.multiprocessing.start_processes(gather_worker, args=(str(tmp_path),), nprocs=2, start_method="spawn")  # fork after autograd has run can deadlock
