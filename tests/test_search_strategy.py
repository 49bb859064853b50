"""``config/search_strategy.py``: the sampler and the pruner a search's settings name, built only once checked."""

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from experiments.config.search_strategy import PRUNERS, build_pruner, build_sampler, offset_seed
from experiments.errors import ExperimentError


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_each_pruner_is_built_by_its_name_and_none_by_default(name):
    assert type(build_pruner(name)).__name__ == PRUNERS[name].rpartition(".")[2]
    assert isinstance(build_pruner(None), optuna.pruners.NopPruner)


def test_a_pruner_config_is_built_with_its_arguments_and_a_refused_one_is_one_line():
    pruner = build_pruner(OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1}))
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    with pytest.raises(ExperimentError, match=r"^hydra.sweeper.pruner='medium' is unknown: one of none, median"):
        build_pruner("medium")
    with pytest.raises(ExperimentError, match=r"hydra.sweeper.pruner \(optuna.pruners.MedianPruner\) cannot be built"):
        build_pruner(OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1}))
    with pytest.raises(ExperimentError, match=r"builds RandomSampler, which is no Optuna pruner"):
        build_pruner(OmegaConf.create({"_target_": "optuna.samplers.RandomSampler"}))


def test_the_grid_sampler_takes_every_value_of_the_choices_and_stepped_ranges():
    space = {
        "act": CategoricalDistribution(("relu", "elu")),
        "depth": IntDistribution(1, 3),
        "p": FloatDistribution(0.0, 0.5, step=0.25),
    }
    sampler = build_sampler(OmegaConf.create({"_target_": "optuna.samplers.GridSampler", "seed": 0}), space)
    study = optuna.create_study(sampler=sampler)
    seen = {tuple(sorted(study.ask(space).params.items())) for _ in range(2 * 3 * 3)}
    assert len(seen) == 18  # every point of the grid once
    with pytest.raises(ExperimentError, match=r"hydra.sweeper.params.lr: the grid sampler needs its values listed"):
        build_sampler(OmegaConf.create({"_target_": "optuna.samplers.GridSampler"}), {"lr": FloatDistribution(0, 1)})


def test_a_continued_search_moves_a_seeded_samplers_seed_on_and_leaves_an_unseeded_one():
    seeded = OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 7})
    assert offset_seed(seeded, 5).seed == 12 and offset_seed(seeded, 0).seed == 7
    unseeded = OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": None})
    assert offset_seed(unseeded, 5).seed is None
