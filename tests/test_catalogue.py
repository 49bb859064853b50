"""config/catalogue.py: the keys the options of a config group set (the hyperparameters every run names).

What the catalogue allows a checkpoint to build is tested with the loading (test_classifier.py)."""

import pytest

from experiments.config import catalogue


def test_option_keys_are_every_key_some_option_of_the_group_sets():
    activation = catalogue.option_keys("activation")
    assert {"alpha", "negative_slope", "num_parameters"} <= set(activation)  # ELU's, Leaky ReLU's, PReLU's
    assert not any(k.startswith("_") for k in activation) and "defaults" not in catalogue.option_keys("trainer")
    # a @package _global_ option (gd.yaml) counts with its own group's section, not what it sets elsewhere
    assert "momentum" in catalogue.option_keys("optimizer") and "batch_size" not in catalogue.option_keys("optimizer")
    # nested keys dotted; none.yaml's `scheduler: null` is named by the other options' inner keys
    scheduler = catalogue.option_keys("scheduler")
    assert "scheduler.gamma" in scheduler and "scheduler" not in scheduler and "interval" in scheduler
    assert catalogue.option_keys("no_such_group") == ()


def test_an_unreadable_option_file_is_passed_over(tmp_path, monkeypatch):
    group = tmp_path / "activation"
    group.mkdir()
    (group / "good.yaml").write_text("_target_: torch.nn.ELU\nalpha: 1.0\n")
    (group / "half_written.yaml").write_text("_target_: torch.nn.ELU\nalpha: [1.0\n")
    (group / "a_list.yaml").write_text("- 1\n- 2\n")
    (group / "empty.yaml").write_text("")
    monkeypatch.setattr(catalogue, "CONF_DIR", tmp_path)  # the answer is kept per set of directories read
    assert catalogue.option_keys("activation") == ("alpha",)


@pytest.mark.parametrize("group", ["activation", "optimizer", "scheduler", "loss", "model", "data", "trainer"])
def test_no_option_key_is_also_a_mapping_elsewhere(group):
    keys = catalogue.option_keys(group)
    assert not any(other.startswith(f"{key}.") for key in keys for other in keys), group
