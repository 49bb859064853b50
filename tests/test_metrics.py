"""The measures of a stage's outputs, built from names.py: what they compute, and that one place defines them."""

import pytest
import torch

from experiments import names
from experiments.lit.metrics import build_measures, compute, logged, update


def test_macro_f1_weighs_every_class_alike_where_accuracy_weighs_every_example():
    measures = build_measures("test", num_classes=3)
    assert set(logged("test", measures)) == {"test/acc", "test/f1"}
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    predicted = torch.tensor([0, 0, 0, 0, 0, 0, 0, 2])  # class 1 never found
    update(measures, torch.nn.functional.one_hot(predicted, 3).float(), y)
    values = compute("test", measures)
    # per class F1: class 0 has precision 6/7 and recall 1, class 1 none found, class 2 both 1
    f1_class0 = 2 * (6 / 7) / (6 / 7 + 1)
    assert values["test/acc"] == pytest.approx(7 / 8)
    assert values["test/f1"] == pytest.approx((f1_class0 + 0 + 1) / 3, abs=1e-6)
    update(measures, torch.nn.functional.one_hot(y, 3).float(), y)  # compute reset them: a clean slate
    assert compute("test", measures) == {"test/acc": pytest.approx(1.0), "test/f1": pytest.approx(1.0)}


def test_each_measured_metric_is_defined_once_with_its_direction():
    for stage in ("val", "test"):
        for logged_name, metric in names.measured(stage).items():
            assert metric.measure in names.MEASURES and logged_name.startswith(f"{stage}/")
    assert names.mode_of("val/f1") == "max" and names.mode_of("train/loss_epoch") == "min"
    assert names.mode_of("diag/dead_frac/total") is None
    assert names.summarized()[:3] == ("test/acc", "val/acc", "test/loss") and "test/f1" in names.summarized()


def test_a_measure_added_in_names_is_built_for_the_stage_it_names(monkeypatch):
    top2 = names.Metric("val/top2", "val/top2", per_epoch=True, measure="top2")
    monkeypatch.setattr(names, "METRICS", (*names.METRICS, top2))
    spec = ("torchmetrics.classification.MulticlassAccuracy", {"average": "micro", "top_k": 2})
    monkeypatch.setitem(names.MEASURES, "top2", spec)
    measures = build_measures("val", num_classes=4)
    assert set(logged("val", measures)) == {"val/acc", "val/f1", "val/top2"}
    update(measures, torch.tensor([[0.1, 0.5, 0.4, 0.0]]), torch.tensor([2]))
    assert compute("val", measures)["val/top2"] == 1.0
