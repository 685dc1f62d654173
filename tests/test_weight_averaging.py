"""train.weight_averaging: the mean of the weights of the epochs from N on (Open-VCLIP's and FROSTER's
weight_average_tool.py) and the weights evaluation uses. Through train.py, with an interruption:
tests/test_froster.py (FROSTER's recipe averages)."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import one_line_error, tiny_cfg
import evaluate
import train
from models import check_config


def test_the_average_is_the_mean_of_the_weights_after_each_epoch_from_the_first_averaged_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = SimpleNamespace(cfg={"train": {"weight_averaging": 2, "precise_bn": 0}}, model=model, weight_average=None)
    snapshots = []
    for epoch in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked += 3
        train.end_of_epoch(state, epoch)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        assert (state.weight_average or {}).get("epochs", 0) == max(0, epoch)  # from the 2nd epoch (1-based) on
    for k, mean in state.weight_average["model"].items():
        if mean.is_floating_point():  # weight_average_tool.py: torch.mean(torch.stack(epochs 2 .. last), 0)
            torch.testing.assert_close(mean, torch.stack([s[k] for s in snapshots[1:]]).mean(0), atol=1e-6, rtol=1e-6)
        else:  # counters: the latest
            assert torch.equal(mean, snapshots[-1][k])
    assert not torch.equal(state.weight_average["model"]["0.weight"], model[0].weight)  # a copy, not the weights


def test_evaluation_uses_the_average_where_the_run_averages_and_the_setting_is_checked(capsys):
    cfg = {"train": {"weight_averaging": 2}}
    ckpt = {"config": cfg, "epoch": 5, "model": {"w": torch.zeros(1)}, "weight_average": {"epochs": 4, "model": {"w": torch.ones(1)}}}
    assert evaluate.evaluation_weights(ckpt, "ckpt.pt")["w"].item() == 1.0
    assert "average of its weights after epochs 2 to 5" in capsys.readouterr().err
    assert evaluate.evaluation_weights({**ckpt, "epoch": 1, "weight_average": None}, "ckpt.pt")["w"].item() == 0.0
    assert "its latest weights" in capsys.readouterr().err
    assert evaluate.evaluation_weights({**ckpt, "config": {"train": {"weight_averaging": 0}}}, "ckpt.pt")["w"].item() == 0.0
    assert capsys.readouterr().err == ""
    bad = tiny_cfg("i3d_small")
    bad["train"]["weight_averaging"] = 3
    with pytest.raises(SystemExit) as e:
        check_config(bad)
    one_line_error(e, "train.weight_averaging 3", "train.epochs 2")
