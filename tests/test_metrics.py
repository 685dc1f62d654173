import pytest
import torch

from evaluate import average_directions, direction_metrics, harmonic_mean, mean_class_accuracy, top1


def predictions(correct: int, total: int, num_classes: int = 4):
    """Hand-made predictions: `correct` of `total` videos right."""
    labels = torch.arange(total) % num_classes
    pred = labels.clone()
    pred[correct:] = (labels[correct:] + 1) % num_classes
    return pred, labels


def test_official_table_arithmetic():
    # two directions whose Known/Unknown average to ResNet50's Syn-TA row: 66.66 / 29.93
    d1 = direction_metrics(top1(*predictions(7000, 10000)), top1(*predictions(3200, 10000)))
    d2 = direction_metrics(top1(*predictions(6332, 10000)), top1(*predictions(2786, 10000)))
    avg = average_directions([d1, d2])
    assert avg["known"] == pytest.approx(66.66, abs=1e-3) and avg["unknown"] == pytest.approx(29.93, abs=1e-3)
    assert round(avg["d_abs"], 2) == 36.73
    # HM is averaged per direction, which is below the HM of the averages (the tables' convention)
    assert avg["hm"] == pytest.approx((harmonic_mean(70.0, 32.0) + harmonic_mean(63.32, 27.86)) / 2)
    assert round(avg["hm_of_means"], 2) == 41.31 and avg["hm"] < avg["hm_of_means"]


def test_harmonic_mean_and_drop():
    m = direction_metrics(80.0, 40.0)
    assert m["d_abs"] == 40.0 and m["hm"] == pytest.approx(2 * 80 * 40 / 120)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_mean_class_accuracy_weights_classes_equally():
    labels = torch.tensor([0] * 9 + [1])
    pred = torch.zeros(10, dtype=torch.long)  # class 0 all right, class 1 all wrong
    assert top1(pred, labels) == pytest.approx(90.0)
    assert mean_class_accuracy(pred, labels) == pytest.approx(50.0)
