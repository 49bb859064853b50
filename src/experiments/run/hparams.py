"""A run's settings as hyperparameters: flat, for TensorBoard's HParams tab and every other logger, beside
the final metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments import names


def labels(cfg: DictConfig) -> dict[str, Any]:
    """A run's name and tags, as its record keeps them."""
    return {
        key: plain(cfg[key]) if isinstance(cfg[key], ListConfig) else cfg[key] for key in names.LABELS if key in cfg
    }


def plain(cfg: DictConfig | None) -> Any:
    """A config section as plain dicts and lists, interpolations resolved."""
    return OmegaConf.to_container(cfg, resolve=True) if cfg is not None else None


def _flatten(value: Any, key: str, out: dict[str, Any]) -> None:
    if isinstance(value, (DictConfig, ListConfig)):
        value = plain(value)
    if isinstance(value, dict):
        for name, inner in value.items():
            if not str(name).startswith("_"):
                _flatten(inner, f"{key}.{name}", out)
    elif isinstance(value, (int, float, str, bool)):
        out[key] = value
    else:  # lists and nulls: as text, so that a sweep's values stay comparable
        out[key] = str(value)


def flat_hparams(cfg: DictConfig, choices: dict[str, str], overrides: list[str] = ()) -> dict[str, Any]:
    """Every setting a sweep could vary, flat, for TensorBoard's HParams tab: the group choices, every
    key of the groups (nested ones dotted: ``scheduler.scheduler.gamma``), the top-level settings, and
    whatever an override set, wherever it lives. A key that another option of a group sets and this run's
    does not (ELU's ``alpha`` in a ReLU run) is ``"None"``: TensorBoard takes the tab's columns from one run,
    so every run names the same ones."""
    from experiments.config.catalogue import option_keys

    out: dict[str, Any] = {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
    sections = (*names.group_names(hparams=True), *names.SEARCH_SECTIONS)
    for group in sections:
        _flatten(cfg.get(group) or {}, group, out)
        for key in option_keys(group):
            out.setdefault(f"{group}.{key}", "None")
    for key, value in cfg.items():
        if key not in sections and not isinstance(value, DictConfig):
            _flatten(value, str(key), out)
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if "/" not in key and not key.startswith("hydra"):
            _flatten(OmegaConf.select(cfg, key), key, out)  # None where the key is not in the config
    if "tags" in cfg:  # one column a reader can filter on, not a list's repr
        out["tags"] = ",".join(map(str, cfg.tags or []))
    return out


def log_final(
    loggers: list[Logger],
    step: int,
    cfg: DictConfig,
    choices: dict[str, str],
    result: dict[str, Any],
    overrides: list[str] = (),
) -> None:
    """Hyperparameters with the final metrics: TensorBoard's HParams tab, and every other logger."""
    # in names' order, the test's first: TensorBoard's HParams table shows only its first metrics till more are ticked
    final = {f"final/{k.replace('/', '_')}": result[k] for k in names.recorded() if k in result}
    params = flat_hparams(cfg, choices, overrides)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)
            # the logger writes hparams.yaml only once, at its first save (empty then): rewrite it whole
            save_hparams_to_yaml(Path(logger.log_dir) / "hparams.yaml", params)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(final, step=step)
        logger.finalize("success")
