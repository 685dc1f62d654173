"""The PySlowFast family's and X-CLIP's augmentations and schedules, each compared with a literal reading
of what the original does (timm's RandAugment levels, PySlowFast's RandomErasing box draw and
get_lr_at_epoch, fvcore's update_bn_stats, X-CLIP's ColorJitter / GrayScale), and the determinism of a
run that uses all of them."""
import copy
import math
import random

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

import train
from conftest import check_resume_matches_uninterrupted, one_line_error, train_args
from data.augment import color_jitter, rand_augment, random_erase, train_augment
from data.loader import TrainSampler, VideoDataset, load_videos, make_loader
from models import DEFAULTS, build_model, check_config, load_recipe

INPUT = {**DEFAULTS["input"], "size": 16, "jitter": [16, 24]}
MEAN, STD = [114.75] * 3, [57.375] * 3


@pytest.fixture
def applied_ops(monkeypatch):
    """Every operation torchvision's RandAugment applies, as (name, signed magnitude)."""
    calls, apply = [], v2.RandAugment._apply_image_or_video_transform

    def record(self, image, transform_id, magnitude, **kwargs):
        calls.append((transform_id, magnitude))
        return apply(self, image, transform_id, magnitude, **kwargs)

    monkeypatch.setattr(v2.RandAugment, "_apply_image_or_video_transform", record)
    return calls


def test_randaugment_levels_are_timms(applied_ops):
    """rand-m7 with mstd 0: every operation at timm's level for magnitude 7 (timm's rand_augment.py
    *_level_to_arg with the inc1 operations), the same for every frame of the clip."""
    timm_level = {"Rotate": 0.7 * 30, "ShearX": 0.7 * 0.3, "ShearY": 0.7 * 0.3, "Brightness": 0.7 * 0.9, "Color": 0.7 * 0.9,
                  "Contrast": 0.7 * 0.9, "Sharpness": 0.7 * 0.9, "TranslateX": 0.7 * 0.45 * 40, "TranslateY": 0.7 * 0.45 * 40}
    frame = torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    for _ in range(20):
        out = rand_augment(frame.expand(2, 3, 40, 40), ops=2, magnitude=7, magnitude_std=0, prob=1.0)
        assert torch.equal(out[0], out[1])  # one operation for the whole clip
    assert len(applied_ops) == 40 and len({name for name, _ in applied_ops}) >= 12
    for name, magnitude in applied_ops:
        if name in timm_level:
            assert abs(magnitude) == pytest.approx(timm_level[name], rel=0.01), name
        if name == "Solarize":  # timm: threshold 256 - int(0.7 * 256) = 77 of 256
            assert 255 * magnitude == pytest.approx(256 - int(0.7 * 256), abs=1)


def test_randaugment_draws_ops_with_probability_and_magnitude_noise(applied_ops):
    """rand-m7-n4-mstd0.5: 4 operations drawn, each applied with probability 0.5 at a magnitude ~ N(7, 0.5)."""
    frame = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    torch.manual_seed(1)
    for _ in range(300):
        rand_augment(frame, ops=4, magnitude=7, magnitude_std=0.5, prob=0.5)
    assert len(applied_ops) / 300 == pytest.approx(2.0, abs=0.2)
    full_scale = {"Rotate": 30, "ShearX": 0.3, "ShearY": 0.3, "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}
    levels = np.array([10 * abs(m) / full_scale[name] for name, m in applied_ops if name in full_scale])
    assert len(levels) > 150 and levels.mean() == pytest.approx(7, abs=0.12) and levels.std() == pytest.approx(0.5, abs=0.1)


def pyslowfast_box_area(h, w, count, r: random.Random) -> int:
    """The box that slowfast/datasets/random_erasing.py RandomErasing._erase_cube draws, read literally."""
    for _ in range(100):
        target_area = r.uniform(0.02, 1 / 3) * h * w / count
        aspect_ratio = math.exp(r.uniform(math.log(0.3), math.log(1 / 0.3)))
        bh, bw = int(round(math.sqrt(target_area * aspect_ratio))), int(round(math.sqrt(target_area / aspect_ratio)))
        if bw < w and bh < h:
            return bh * bw
    return 0


def test_random_erasing_boxes_and_fill_match_pyslowfast():
    torch.manual_seed(0)
    clip = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    erased = [random_erase(clip, 0.25, "const", 1, [255] * 3, STD)[:, 0] == 255 for _ in range(600)]
    hits = [e for e in erased if e.any()]
    assert len(hits) / 600 == pytest.approx(0.25, abs=0.05)  # AUG.RE_PROB: the whole clip or nothing
    assert all(torch.equal(e[0], e[1]) for e in hits)  # cube: the same box on every frame
    reference = [pyslowfast_box_area(32, 32, 1, random.Random(i)) for i in range(2000)]
    assert np.mean([e[0].sum().item() for e in hits]) == pytest.approx(np.mean(reference), rel=0.12)
    # pixel mode: N(0, 1) in normalised units, new noise on every frame; const mode: the mean (0 normalised)
    pixels = random_erase(clip, 1.0, "pixel", 1, MEAN, STD)
    box = pixels[0, 0] != 0
    values = pixels[:, :, box].float()
    assert not torch.equal(values[0], values[1])
    assert values.mean().item() == pytest.approx(114.75, abs=6) and values.std().item() == pytest.approx(55, abs=6)
    assert set(random_erase(clip, 1.0, "const", 1, MEAN, STD).unique().tolist()) == {0, 115}


def test_colour_jitter_per_frame_and_grayscale_per_clip_as_xclip():
    """X-CLIP's ColorJitter(p) decides once per clip and jitters frame by frame (new factors per frame);
    GrayScale(p) turns the whole clip grey."""
    frames = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).expand(2, 3, 8, 8)
    torch.manual_seed(0)
    outs = [color_jitter(frames, 0.8, [0.4, 0.4, 0.2, 0.1]) for _ in range(50)]
    applied = [o for o in outs if not torch.equal(o, frames)]
    assert len(applied) / 50 == pytest.approx(0.8, abs=0.15)
    assert all(not torch.equal(o[0], o[1]) for o in applied)
    cfg = {**INPUT, "size": 8, "jitter": [8, 8], "flip": False, "grayscale": 0.3}
    greys = [train_augment(frames, cfg, np.random.default_rng(i), False) for i in range(60)]
    grey = [g for g in greys if (g[:, 0] == g[:, 1]).all() and (g[:, 1] == g[:, 2]).all()]
    assert len(grey) / 60 == pytest.approx(0.3, abs=0.15)


def test_augmentation_depends_only_on_the_clips_generator():
    cfg = {**INPUT, "randaugment": 2, "color_jitter": 0.8, "grayscale": 0.2, "random_erasing": 0.5, "jitter_inverse_uniform": True}
    clip = torch.randint(0, 256, (4, 3, 24, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a, b = (train_augment(clip, cfg, np.random.default_rng([3, 1, 7]), True) for _ in range(2))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)  # the caller's torch RNG is left alone
    assert not torch.equal(a, train_augment(clip, cfg, np.random.default_rng([3, 1, 8]), True))


def test_inverse_uniform_jitter_is_pyslowfasts():
    """DATA.INV_UNIFORM_SAMPLE: short side S = 1 / U[1/320, 1/256]; the box cut from a 256 frame for a 224
    crop has side 224 * 256 / S, on average 224 * 256 * (1/320 + 1/256) / 2 (a uniform S gives 199.9)."""
    from data.augment import jitter_box
    sides = [jitter_box(256, 256, 224, [256, 320], np.random.default_rng(i), True)[2] for i in range(2000)]
    assert np.mean(sides) == pytest.approx(224 * 256 * (1 / 320 + 1 / 256) / 2, abs=0.5)


def test_repeated_augmentation_gives_every_video_count_clips_per_batch(synta_tiny):
    root, splits = synta_tiny
    cfg = load_recipe("c2d", "synta", tiny=True)
    videos = load_videos(splits, "train_set1", "synta")
    dataset = VideoDataset(videos, root, "coarse", cfg, train=True, repeats=2)
    sampler = TrainSampler(len(videos), micro_batch=2, accum_steps=1)
    clips, labels, indices, _ = next(iter(make_loader(dataset, 2, sampler, 0, False)))
    assert clips.shape[0] == 4 and indices[0] == indices[1] != indices[2] == indices[3] and labels[0] == labels[1]
    assert not torch.equal(clips[0], clips[1])  # augmented apart
    assert len(sampler) == len(TrainSampler(len(videos), micro_batch=2, accum_steps=1))  # an epoch still covers each video once


def fvcore_update_bn_stats(model, batches):
    """fvcore/nn/precise_bn.py update_bn_stats, which PySlowFast's precise BN calls, read literally."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    means, variances = [torch.zeros_like(bn.running_mean) for bn in bns], [torch.zeros_like(bn.running_var) for bn in bns]
    for i, x in enumerate(batches):
        with torch.no_grad():
            model(x)
        for k, bn in enumerate(bns):
            means[k] += (bn.running_mean - means[k]) / (i + 1)
            variances[k] += (bn.running_var - variances[k]) / (i + 1)
    for bn, mean, var, momentum in zip(bns, means, variances, momenta):
        bn.running_mean, bn.running_var, bn.momentum = mean, var, momentum


def test_precise_bn_statistics_are_fvcores():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1),
                                torch.nn.BatchNorm3d(2))
    batches = [torch.randn(2, 3, 2, 4, 4) * (i + 1) + i for i in range(3)]
    reference = copy.deepcopy(model)
    fvcore_update_bn_stats(reference, batches)
    train.update_bn_statistics(model, batches)
    for ours, theirs in zip(model.modules(), reference.modules()):
        if isinstance(ours, torch.nn.BatchNorm3d):
            assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
            assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-5)
            assert ours.momentum == 0.1
    conv = [model[0](x).detach() for x in batches]  # by hand: the mean of per-batch means and unbiased variances
    assert torch.allclose(model[1].running_mean, torch.stack([c.mean((0, 2, 3, 4)) for c in conv]).mean(0), atol=1e-6)
    assert torch.allclose(model[1].running_var, torch.stack([c.transpose(0, 1).flatten(1).var(1) for c in conv]).mean(0), atol=1e-5)


def pyslowfast_lr(tc: dict, cur_epoch: float) -> float:
    """slowfast/utils/lr_policy.py get_lr_at_epoch with lr_func_cosine / lr_func_steps_with_relative_lrs, read literally."""
    def lr_func(epoch):
        if tc["lr_policy"] == "steps":
            steps = tc["lr_steps"] + [tc["epochs"]]
            for ind, step in enumerate(steps):
                if epoch < step:
                    break
            return tc["lr_step_factors"][ind - 1] * tc["lr"]
        offset = tc["warmup_epochs"] if tc["cosine_after_warmup"] else 0.0
        return tc["min_lr"] + (tc["lr"] - tc["min_lr"]) * (math.cos(math.pi * (epoch - offset) / (tc["epochs"] - offset)) + 1.0) * 0.5

    lr = lr_func(cur_epoch)
    if cur_epoch < tc["warmup_epochs"]:
        lr_start, lr_end = tc["warmup_start_factor"] * tc["lr"], lr_func(tc["warmup_epochs"])
        lr = cur_epoch * (lr_end - lr_start) / tc["warmup_epochs"] + lr_start
    return lr


@pytest.mark.parametrize("model,dataset", [("slowfast", "ssv2ta"), ("c2d", "synta"), ("mvitv2", "k400ta")])
def test_lr_schedule_is_pyslowfasts(model, dataset):
    """SlowFast's SSv2 steps, C2D's cosine over all epochs, MViT's cosine after the warmup, per optimizer step."""
    tc = load_recipe(model, dataset)["train"]
    for step in range(tc["epochs"] * 100):
        assert train.lr_factor(step, tc, 100) * tc["lr"] == pytest.approx(pyslowfast_lr(tc, step / 100), rel=1e-9, abs=1e-15)


def test_recipes_switch_on_what_the_studys_configs_use():
    recipes = {}
    get = lambda m, d, section, key: recipes.setdefault((m, d), load_recipe(m, d))[section][key]  # noqa: E731
    for m in ("c2d", "i3d", "x3d", "slowfast"):
        for d in ("synta", "k400ta", "ssv2ta"):
            assert get(m, d, "train", "precise_bn") == 200 and get(m, d, "test", "crop_size") == 256 == get(m, d, "test", "short_side")
            assert get(m, d, "train", "cosine_after_warmup") is False
    assert [get(m, "ssv2ta", "input", "jitter_inverse_uniform") for m in ("c2d", "i3d", "x3d", "slowfast")] == [True, True, False, True]
    assert get("slowfast", "ssv2ta", "train", "lr_steps") == [0, 25, 33] and get("slowfast", "ssv2ta", "train", "sync_bn")
    for m in ("mvitv2", "revmvit"):
        assert [get(m, d, "train", "repeated_augmentation") for d in ("synta", "k400ta", "ssv2ta")] == [2, 2, 1]
        cfg = recipes[m, "synta"]
        assert (cfg["input"]["randaugment"], cfg["input"]["randaugment_magnitude"], cfg["input"]["randaugment_magnitude_std"],
                cfg["input"]["random_erasing"], cfg["input"]["random_erasing_mode"]) == (4, 7, 0.5, 0.25, "pixel")
        assert [get(m, d, "test", "short_side") for d in ("synta", "ssv2ta")] == [256, 224]
    for m in ("xclip", "vificlip", "ezclip"):
        assert (get(m, "k400ta", "input", "color_jitter"), get(m, "k400ta", "input", "grayscale")) == (0.8, 0.2)
    aim = [(get("aim", d, "input", "randaugment"), get("aim", d, "input", "randaugment_prob"), get("aim", d, "input", "random_erasing"))
           for d in ("k400ta", "ssv2ta", "synta")]
    assert aim == [(0, 0.5, 0.0), (4, 1.0, 0.25), (4, 1.0, 0.25)]  # imgaug RandAugment(n=4, m=7) and erasing 0.25 off K400
    assert [get("uniformerv2", d, "input", "randaugment") for d in ("k400ta", "ssv2ta", "synta")] == [4, 4, 4]
    assert [get("uniformerv2", d, "train", "repeated_augmentation") for d in ("k400ta", "ssv2ta", "synta")] == [1, 2, 1]
    for m in ("c2d", "i3d", "x3d", "slowfast", "mvitv2", "revmvit", "xclip", "vificlip", "ezclip", "aim", "uniformerv2"):
        text = (train.Path(train.__file__).parent / "models" / f"{m}.yaml").read_text()
        assert "not available in this harness" not in text and "jitter/grayscale" not in text and "colour jitter (p" not in text


def run_cfg(model="c2d", **settings):
    cfg = load_recipe(model, "synta", tiny=True)
    cfg.update(dataset="synta", task="coarse", train_set=1, splits="splits")
    for key, value in settings.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


@pytest.mark.parametrize("model,settings,words", [
    ("vit", {"test__crop_size": 40, "test__short_side": 40}, ("test.crop_size", "input.size", "models/resnet.py")),
    ("c2d", {"test__crop_size": 48}, ("test crop", "test.short_side")),
    ("c2d", {"train__lr_policy": "steps", "train__lr_steps": [1, 2], "train__lr_step_factors": [1, 0.1]}, ("train.lr_steps",)),
    ("c2d", {"train__lr_policy": "steps", "train__lr_steps": [0, 2], "train__lr_step_factors": [1]}, ("train.lr_step_factors",)),
    ("c2d", {"train__lr_steps": [0, 2], "train__lr_step_factors": [1, 0.1]}, ("train.lr_policy",)),
    ("c2d", {"train__lr_steps": "0, 2"}, ("train.lr_steps", "a list of numbers")),
    ("c2d", {"input__color_jitter_strength": [0.4, 0.4, 0.2, 0.6]}, ("hue",)),
    ("c2d", {"input__randaugment_magnitude": 11}, ("input.randaugment_magnitude",)),
    ("c2d", {"input__random_erasing_mode": "noise"}, ("input.random_erasing_mode",)),
    ("c2d", {"train__repeated_augmentation": 0}, ("train.repeated_augmentation",)),
    ("c2d", {"input__grayscale": 1.5}, ("input.grayscale",)),
])
def test_setting_mistakes_are_one_line(model, settings, words):
    with pytest.raises(SystemExit) as e:
        check_config(run_cfg(model, **settings))
    one_line_error(e, *words)


def test_a_checkpoint_written_before_these_keys_takes_their_defaults():
    cfg = run_cfg()
    for section, keys in (("input", ["randaugment", "random_erasing"]), ("train", ["precise_bn", "lr_policy"]), ("test", ["crop_size"])):
        for key in keys:
            del cfg[section][key]
    with pytest.raises(SystemExit, match="missing"):
        check_config(copy.deepcopy(cfg))
    assert check_config(cfg, source="old/ckpt.pt")["train"]["precise_bn"] == 0 and cfg["test"]["crop_size"] == 0


def test_batchnorm_settings_need_batchnorm_and_sync_bn_needs_cuda(synta_tiny, tmp_path, monkeypatch):
    _, splits = synta_tiny
    with pytest.raises(SystemExit) as e:
        train.main(train_args(splits, tmp_path / "a", "vit", "--set", "train.precise_bn=2"))
    one_line_error(e, "train.precise_bn", "BatchNorm")
    monkeypatch.setattr(train, "init_distributed", lambda: (0, 2, 0))  # two processes on the CPU
    with pytest.raises(SystemExit) as e:
        train.main(train_args(splits, tmp_path / "b", "c2d", "--set", "train.sync_bn=true"))
    one_line_error(e, "train.sync_bn", "CUDA")


def test_test_crop_larger_than_the_training_crop_for_cnns(synta_tiny):
    root, splits = synta_tiny
    cfg = run_cfg(test__crop_size=40, test__short_side=40)
    views = VideoDataset(load_videos(splits, "val_set1", "synta"), root, "coarse", check_config(cfg), train=False)
    clip = views[0][0]
    assert clip.shape == (1, 8, 3, 40, 40) == views.view_shape()
    assert build_model(cfg, ["a", "b"]).eval()(clip).shape == (1, 2)  # trained at 32, tested at 40: the head pools


def test_resumed_run_with_every_augmentation_matches_an_uninterrupted_one(synta_tiny, tmp_path, monkeypatch):
    """precise BN (the tiny c2d recipe), RandAugment, random erasing, colour jitter, grayscale, repeated
    augmentation, the steps schedule and a larger test crop: stopped mid-epoch and resumed, the same weights."""
    _, splits = synta_tiny
    check_resume_matches_uninterrupted(
        splits, tmp_path, "c2d", monkeypatch, "--set", "input.randaugment=2", "--set", "input.random_erasing=0.5",
        "--set", "input.color_jitter=0.5", "--set", "input.grayscale=0.5", "--set", "train.repeated_augmentation=2",
        "--set", "train.lr_policy=steps", "--set", "train.lr_steps=[0, 1.5]", "--set", "train.lr_step_factors=[1, 0.1]",
        "--set", "test.crop_size=36", "--set", "test.short_side=36")
