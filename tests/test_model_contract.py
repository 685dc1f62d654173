"""The contract of models/__init__.py: model arguments are the keyword-only constructor arguments of each
file's `Model`, checked (keys and types) wherever a `model:` section comes from, completed with the
signature's defaults; recipes fold per-task settings into `datasets: <ds>/<task>:`."""
import inspect

import pytest
import torch

from conftest import one_line_error

import models
from models import apply_override, build_model, list_models, load_recipe, model_class, parse_override


def keyword_arguments(model: type) -> list:
    return [p.name for p in inspect.signature(model.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]


@pytest.mark.parametrize("name", list_models())
def test_every_recipe_holds_constructor_arguments_completed_with_their_defaults(name):
    for dataset in (None, "synta", "k400ta", "ssv2ta"):
        for tiny in (False, True):
            cfg = load_recipe(name, dataset, tiny=tiny)
            assert list(cfg["model"]) == keyword_arguments(model_class(cfg)), (name, dataset, tiny)


def test_model_keys_are_checked_in_set_overrides():
    cfg = load_recipe("xclip", "synta", tiny=True)
    with pytest.raises(SystemExit) as e:
        apply_override(cfg, *parse_override("model.mit_layer=4"))  # the typo of mit_layers
    assert "mit_layers" in one_line_error(e, "--set model.mit_layer is not an argument of XCLIP", "valid keys")
    for text, words in (("model.mit_layers=abc", ("model.mit_layers", "must be an integer", "'abc'")),
                        ("model.mit_layers=2.5", ("model.mit_layers", "must be an integer")),
                        ("model.fix_text=1", ("model.fix_text", "true or false")),
                        ("model.prompts_alpha=[0.1]", ("model.prompts_alpha", "a number")),
                        ("model.vision_heads=four", ("model.vision_heads", "an integer or null"))):
        with pytest.raises(SystemExit) as e:
            apply_override(cfg, *parse_override(text))
        one_line_error(e, *words)
    for text, value in (("model.mit_layers=2", 2), ("model.prompts_alpha=1", 1), ("model.vision_heads=null", None)):
        apply_override(cfg, *parse_override(text))
        assert cfg["model"][text.split("=")[0].split(".")[1]] == value
    cfg = load_recipe("uniformerv2", "synta", tiny=True)
    with pytest.raises(SystemExit) as e:
        apply_override(cfg, *parse_override("model.return_list=3"))
    one_line_error(e, "model.return_list", "a list")


def test_model_keys_are_checked_in_every_section_of_a_recipe_file(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)  # recipes written here, built by models/xclip.py
    cases = (("model: {mit_layer: 1}\n", ("models/xclip.yaml model.mit_layer", "mit_layers")),
             ("datasets:\n  ssv2ta/fine:\n    model: {mit_layer: 2}\n", ("datasets.ssv2ta/fine.model.mit_layer",)),
             ("tiny:\n  model: {prompt_layers: 1}\n", ("tiny.model.prompt_layers", "prompts_layers")),
             ("model: {prompts_alpha: strong}\n", ("model.prompts_alpha must be a number",)),
             ("datasets:\n  synta:\n    tasks:\n      fine: {train: {epochs: 3}}\n", ("datasets.synta.tasks", "synta/fine")))
    for recipe, words in cases:
        (tmp_path / "xclip.yaml").write_text(recipe)
        with pytest.raises(SystemExit) as e:
            load_recipe("xclip", "k400ta")  # every section is checked, whichever dataset is asked for
        one_line_error(e, *words)


def test_per_task_settings_are_a_dataset_slash_task_section():
    assert load_recipe("ezclip", "synta", task="fine")["train"]["epochs"] == 151
    assert load_recipe("ezclip", "synta", task="coarse")["train"]["epochs"] == 81
    assert load_recipe("ezclip", "synta")["train"]["lr"] == load_recipe("ezclip", "synta", task="fine")["train"]["lr"] == 1e-3
    assert load_recipe("ezclip", "k400ta", task="fine")["train"]["epochs"] == 71


def test_configs_of_older_checkpoints_build_or_are_refused_in_one_line():
    """A checkpoint's cfg["model"] as the older code stored it: the recipe's keys only. Missing keys take
    the signature's defaults (the values the older code used); a key it ignored is refused."""
    cfg = load_recipe("xclip", "synta", tiny=True)
    torch.manual_seed(0)
    model = build_model(cfg, ["a", "b"]).eval()
    old = {**cfg, "model": {k: v for k, v in cfg["model"].items() if k not in ("prompts_alpha", "new_lr_mult", "fix_text")}}
    torch.manual_seed(0)
    rebuilt = build_model(old, ["a", "b"]).eval()
    rebuilt.load_state_dict(model.state_dict())
    clips = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(rebuilt(clips), model(clips))
    assert rebuilt.new_lr_mult == 10.0 and rebuilt.fix_text is True
    stale = {**cfg, "model": {**cfg["model"], "mit_layer": 4}}  # `--set model.mit_layer=4` was accepted before
    with pytest.raises(SystemExit) as e:
        build_model(stale, ["a", "b"])
    assert "mit_layers" in one_line_error(e, "model.mit_layer is not an argument of XCLIP", "valid keys")


def test_a_model_file_without_Model_or_a_required_argument_is_named(monkeypatch):
    import models.xclip

    class NeedsDepth(torch.nn.Module):
        def __init__(self, num_classes: int = 2, *, depth: int, width: int = 8):
            super().__init__()

    monkeypatch.setattr(models.xclip, "Model", NeedsDepth)
    with pytest.raises(SystemExit) as e:
        models.model_arguments({"model_name": "xclip", "model": {"width": 4}})
    one_line_error(e, "model.depth has no default in NeedsDepth", "must set it")
    assert models.model_arguments({"model_name": "xclip", "model": {"depth": 2}}) == {"depth": 2, "width": 8}
    monkeypatch.delattr(models.xclip, "Model")
    with pytest.raises(SystemExit) as e:
        load_recipe("xclip", "synta")
    one_line_error(e, "xclip.py defines no `Model`")


# ---------------------------------------------------------------------------------------------
# forward_features / forward_head / class_logits: what a wrapper (e.g. the disentanglement study's) needs


def tiny_model(name, classes):
    cfg = load_recipe(name, "synta", tiny=True)
    cfg["pretrained"] = "none"
    if "teacher" in cfg["model"]:
        cfg["model"]["teacher"] = "none"
    torch.manual_seed(0)
    model = build_model(cfg, classes)
    inp = cfg["input"]
    clips = torch.randint(0, 256, (2, inp["frames"], 3, inp["size"], inp["size"]), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    return model, clips


def logits_of(out):
    return out["logits"] if isinstance(out, dict) else out


@pytest.mark.parametrize("name", list_models())
def test_forward_is_forward_head_of_forward_features(name):
    classes = ["punching bag", "punching person", "falling down"]
    model, clips = tiny_model(name, classes)
    text_model = hasattr(model, "class_logits")
    for training in (False, True):  # in training with the same random draws (dropout, stochastic depth, templates)
        model.train(training)
        torch.manual_seed(3)
        expected = logits_of(model(clips))
        torch.manual_seed(3)
        z, context = model.forward_features(clips, return_context=True) if text_model else (model.forward_features(clips), None)
        assert z.shape == (2, model.num_features) and expected.shape == (2, 3)
        got = model.forward_head(z, context) if text_model else model.forward_head(z)
        assert torch.equal(got, expected), (name, training)
    if text_model:  # the model's own class names scored through class_logits give forward's logits
        model.eval()
        with torch.no_grad():
            z, context = model.forward_features(clips, return_context=True)
            assert torch.equal(model.class_logits(z, classes, context), model(clips))


@pytest.mark.parametrize("name", [n for n in list_models() if n in ("actionclip", "ezclip", "froster", "vificlip", "xclip")])
def test_text_models_score_any_label_space_and_cache_each(name):
    coarse, fine = ["punching", "falling"], ["punching bag", "punching person", "falling down"]
    model, clips = tiny_model(name, fine)
    model.eval()
    text_tower = model.clip if name == "actionclip" else model.model if name == "froster" else model
    calls, encode = [], text_tower.encode_text
    text_tower.encode_text = lambda tokens: calls.append(len(tokens)) or encode(tokens)
    with torch.no_grad():
        z, context = model.forward_features(clips, return_context=True)
        scores = {tuple(names): model.class_logits(z, names, context) for names in (coarse, fine, coarse)}
        n = len(calls)
        for names in (coarse, fine, coarse, fine):  # both label spaces stay cached
            assert torch.equal(model.class_logits(z, names, context), scores[tuple(names)])
        assert len(calls) == n == 2
        other, _ = tiny_model(name, coarse)  # the same weights built on the coarse names
        other.eval()
        assert torch.equal(other(clips), scores[tuple(coarse)])
        assert model.texts.names == fine and torch.equal(model(clips), scores[tuple(fine)])
    if name == "xclip":
        with pytest.raises(ValueError, match="return_context=True"):
            model.class_logits(z, coarse)
