"""A search space written in Hydra's override grammar, as Optuna distributions.

The grammar is ``hydra-optuna-sweeper``'s, so a search written for that plugin (or for lightning-hydra-template)
searches the same space here: ``interval(a, b)`` is a float range (an int range where both ends are ints),
``tag(log, interval(a, b))`` its log-scaled form, ``choice(...)`` and ``a,b,c`` categorical, ``range(start, stop,
step)`` a stepped range *including* ``stop`` (that plugin's reading, kept so the same config draws the same
values), ``shuffle(range(...))`` categorical, and any other value fixed. The distributions are Optuna's current
ones (``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``), which replaced the plugin's.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from experiments.errors import ExperimentError, first_line


def _categorical(override: Override) -> CategoricalDistribution:
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def distribution(override: Override) -> BaseDistribution | str:
    """The distribution of one sweep override, or, for a plain ``key=value``, the value as typed (fixed)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep():
        return _categorical(override)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if value.shuffle:
            return _categorical(override)
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ExperimentError(f"{override.input_line}: a sweep the search cannot draw from; use interval, choice or range")


def parse(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """The searched parameters' distributions and the fixed ones' values, by key, from ``key=expression`` lines
    (where a key comes twice, the later line).

    An expression that does not parse, or a range Optuna refuses (``interval(5, 1)``), is one ``ExperimentError``
    naming the line."""
    searched: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    parser = OverridesParser.create()
    for line in arguments:
        try:
            override = parser.parse_override(line)
            found = distribution(override)
        except ExperimentError:
            raise
        except (HydraException, ValueError) as exc:  # Hydra's grammar, or Optuna's check of the bounds
            raise ExperimentError(f"the search space's {line!r} cannot be read: {first_line(exc)}") from None
        key = override.get_key_element()
        searched.pop(key, None)  # a later line wins: the command line over hydra.sweeper.params
        fixed.pop(key, None)
        if isinstance(found, str):
            fixed[key] = found
        else:
            searched[key] = found
    return searched, fixed


def overrides_of(params: dict[str, Any] | None) -> list[str]:
    """``hydra.sweeper.params`` (``{key: expression}``) as override lines."""
    return [f"{key}={value}" for key, value in (params or {}).items()]
