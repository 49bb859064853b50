"""How a search draws from its space and stops its trials: the sampler and the pruner its settings name.

``hydra/sweeper/sampler=...`` names a sampler config (``_target_`` and its arguments); ``hydra.sweeper.pruner`` a
pruner by name (``median``, ...) or as a config. Each is built only after its settings are checked, and a
constructor's refusal is one line naming the setting.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from experiments.errors import ExperimentError

PRUNERS = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
}


def _built(what: str, node: Any) -> Any:
    """A sampler or pruner from its config (``_target_`` and keyword arguments; a null argument is the class's
    own default)."""
    settings = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if v is not None}
    try:
        return instantiate(settings)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ExperimentError(f"hydra.sweeper.{what} ({settings.get('_target_')}) cannot be built: {cause}") from None


def build_pruner(pruner: Any) -> optuna.pruners.BasePruner:
    """``none`` (the default), ``median``, ``hyperband``, ``successive_halving``, or a config
    with ``_target_``."""
    if pruner is None or isinstance(pruner, str):
        name = pruner or "none"
        if name not in PRUNERS:
            raise ExperimentError(
                f"hydra.sweeper.pruner={name!r} is unknown: one of {', '.join(PRUNERS)}, or a config with _target_"
            )
        return _built("pruner", OmegaConf.create({"_target_": PRUNERS[name]}))
    built = _built("pruner", pruner)
    if not isinstance(built, optuna.pruners.BasePruner):
        raise ExperimentError(f"hydra.sweeper.pruner builds {type(built).__name__}, which is no Optuna pruner")
    return built


def _grid(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of each searched parameter, for the grid sampler: choices, and stepped ranges."""
    grid = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
            count = round((dist.high - dist.low) / dist.step) + 1
            grid[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise ExperimentError(
                f"hydra.sweeper.params.{key}: the grid sampler needs its values listed; an interval has none "
                f"(use choice(...) or range(...))"
            )
    return grid


def build_sampler(node: Any, distributions: dict[str, BaseDistribution]) -> optuna.samplers.BaseSampler:
    if OmegaConf.select(node, "_target_") == "optuna.samplers.GridSampler" and node.get("search_space") is None:
        node = OmegaConf.merge(node, {"search_space": _grid(distributions)})
    built = _built("sampler", node)
    if not isinstance(built, optuna.samplers.BaseSampler):
        raise ExperimentError(f"hydra.sweeper.sampler builds {type(built).__name__}, which is no Optuna sampler")
    return built


def offset_seed(sampler: Any, offset: int) -> Any:
    """``sampler``'s config with its seed (where it has one) moved on by ``offset``."""
    if not offset or sampler.get("seed") is None:
        return sampler
    return OmegaConf.merge(sampler, {"seed": int(sampler.seed) + offset})
