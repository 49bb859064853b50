"""The command line before Hydra reads it: options that moved, and overrides Hydra's grammar cannot read, each
answered by one line that says what to type; ``finish=<sweep_dir>``, turned into that sweep's own command line;
and ``hydra.main`` with these in front, for train.py, eval.py and their console scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from experiments.errors import ExperimentError, RunDirectoryError, exit_with
from experiments.read_back import damaged


def unreadable_override(args: list[str]) -> str | None:
    """The first command-line override Hydra's grammar cannot read, as a line that says how to quote it:
    Hydra's own message ("mismatched input '=' expecting <EOF>") never says, and the sweep job directories
    this project names (``0_activation=relu,optimizer.lr=0.1``) need it whenever a path holds one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in overrides_of(args):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as exc:
            key, _, value = arg.partition("=")
            return (
                f"Hydra cannot read {arg!r} ({str(exc).splitlines()[0]}): a value holding '=', ',', brackets or "
                f"quotes is quoted for Hydra, inside the shell's quotes: '{key}=\"{value}\"'"
            )
    return None


# Hydra's flags that take the next argument as their value (``-sc query=bash`` is no override)
FLAGS_WITH_VALUE = {
    "-sc",
    "--shell-completion",
    "-c",
    "--cfg",
    "-p",
    "--package",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "-i",
    "--info",
    "--experimental-rerun",
}


def overrides_of(args: list[str]) -> list[str]:
    """The command line's overrides (``key=value``), without Hydra's flags and their values."""
    return [
        a
        for n, a in enumerate(args)
        if "=" in a and not a.startswith("-") and not (n and args[n - 1] in FLAGS_WITH_VALUE)
    ]


def searchpath(args: list[str]) -> list[str]:
    """The ``hydra.searchpath=[...]`` the command line gives (the user's own config directories), as Hydra reads it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in overrides_of(args) if a.lstrip("+").startswith("hydra.searchpath=")]
    try:
        value = OverridesParser.create().parse_overrides(given[-1:])[0].value() if given else []
    except Exception:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def misspelt_override(args: list[str], script: str = "train.py") -> str | None:
    """The first override whose key no config of ``conf/`` holds, as the line that names the key meant and what to
    type: Hydra would answer a typo with seven lines ending in advice (``+activaton=relu``) that leads into a
    second refusal. A key added with ``+`` is new by intent: the config checks judge it once composed, except a
    near miss of a group or a top-level key (``+optimiser=sgd``), which is the same typo."""
    import difflib

    from experiments.config.catalogue import config_keys, search_dirs
    from experiments.names import CONF_DIR

    known = config_keys((CONF_DIR, *search_dirs(searchpath(args))))
    close = lambda name, keys: next(iter(difflib.get_close_matches(name, sorted(keys), n=1)), None)
    for arg in overrides_of(args):
        key, _, value = arg.partition("=")
        name = key.lstrip("+~")
        head, dot, rest = name.partition(".")
        if name == "hydra/sweeper/sampler" and value not in (samplers := sampler_options()):
            guess = f" (did you mean {meant}?)" if (meant := close(value, samplers)) else ""
            return f"hydra/sweeper/sampler={value} is no sampler{guess}: one of {', '.join(samplers)}"
        if head.split("/")[0] == "hydra" or name == "finish" or name in known:
            continue
        if key.startswith("+"):
            if head in known or any("${" + head in a for a in args):  # a new key, or one an override reads
                continue
            meant = close(head, (k for k in known if "." not in k))
            if meant is None and not dot:  # +max_epochs=3: a key of a group, by its last name
                leaves = {k.rpartition(".")[2]: k for k in sorted(known, reverse=True) if "." in k}
                meant = leaves.get(close(name, leaves) or "")
            if meant is None:
                continue  # a new top-level key: kept in the run's config, with a warning that nothing reads it
            setting = f"{meant}{dot}{rest}={value}"
            return f"{head} is not read by {script} (did you mean {meant}?): write {setting}, without the '+'"
        meant = close(name, (k for k in known if k.count(".") == name.count(".")))
        if meant is not None:
            return f"{script} has no {name} (did you mean {meant}?): write {meant}={value}"
        return (
            f"{script} has no {name}: python -m experiments lists the groups and python {script} --help every key; "
            f"a key the config does not have yet is added with +{name}={value}"
        )
    return None


def sampler_options() -> list[str]:
    """The samplers ``hydra/sweeper=optuna`` offers, as its plugin registers them with Hydra."""
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.hydra_optuna_sweeper.optuna_sweeper  # noqa: F401 - registers the group's options

    return sorted(name.removesuffix(".yaml") for name in ConfigStore.instance().list("hydra/sweeper/sampler"))


# Options that moved, with where they went: Hydra would only list the group's options.
MOVED_OPTIONS = {"trainer=debug": "debug=limit (more: debug=fdr, overfit, profiler or anomaly; README 'Debugging')"}


def moved_option(args: list[str]) -> str | None:
    found = next((a for a in args if a in MOVED_OPTIONS), None)
    return f"{found} is now {MOVED_OPTIONS[found]}" if found else None


# What a finishing sweep may change: where and how its jobs run, never what they compute; and the user's own
# config directories, which a sweep's record is not trusted to name (they are given again).
FINISH_MAY_ADD = ("hydra/launcher=", "hydra.launcher.", "hydra.searchpath=")
# An Optuna search's own settings, replayed from its record when it is finished: its sweeper, sampler and search
SEARCH_MAY_KEEP = ("hydra/sweeper=", "hydra/sweeper/sampler=", "hydra.sweeper.")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def finish_arguments(args: list[str]) -> list[str] | None:
    """``finish=<sweep_dir>`` (with, at most, another launcher or launcher settings): the sweep's own overrides
    from its ``multirun.yaml``, its directory, and the sweeper that finishes it in place
    (``hydra_plugins/finish_sweeper``; for an Optuna search, its own sweeper continuing its study). None where no
    ``finish=`` is given."""
    from experiments.run_dir import hydra_value
    from experiments.sweep_dir import OPTUNA_SWEEPER, SWEEP_FILE, read_sweep

    given = [a for a in args if a.startswith("finish=")]
    if not given:
        return None
    sweep_dir = Path(given[0].split("=", 1)[1]).expanduser()
    extra = [a for a in args if a not in given and a not in ("-m", "--multirun")]
    if bad := [a for a in extra if not a.startswith(FINISH_MAY_ADD)] + given[1:]:
        raise RunDirectoryError(
            f"finish= reads the sweep's overrides from its directory; {bad[0]} would change what its jobs compute: "
            f"give only finish=<sweep_dir>, and at most hydra/launcher=... or hydra.launcher.*=..."
        )
    hydra = read_sweep(sweep_dir)["hydra"]
    search = (hydra.get("sweeper") or {}).get("_target_") == OPTUNA_SWEEPER  # a search's own sweeper continues it
    replaced = {"hydra.sweep.dir", "hydra.mode", *map(_key, extra), *([] if search else ["hydra/sweeper"])}
    may_keep = (*FINISH_MAY_ADD, *(SEARCH_MAY_KEEP if search else ()))
    recorded = hydra.get("overrides") or {}
    source = sweep_dir / SWEEP_FILE
    kept = [o for o in replayable(recorded.get("hydra"), source, "hydra") if _key(o) not in replaced]
    task = replayable(recorded.get("task"), source, "task")
    if (config_name := (hydra.get("job") or {}).get("config_name") or "config") != "config":
        raise damaged(source, "hydra.job.config_name", f"is {config_name!r}; a sweep of train.py composes 'config'")
    if bad := [o for o in kept if not o.startswith(may_keep) or o.startswith("hydra.searchpath=")]:
        if bad[0].startswith("hydra.searchpath="):  # a record does not choose the code a run builds
            raise RunDirectoryError(
                f"{sweep_dir} was swept with your own config directories ({bad[0]}): a sweep's record is not "
                f"trusted to name them; give them again: finish={sweep_dir} '{bad[0]}'"
            )
        raise damaged(source, "hydra.overrides.hydra", f"holds {bad[0]!r}; finish= replays only launcher settings")
    return [
        "--config-name=config",
        "--multirun",
        *task,
        *kept,
        *extra,
        "hydra.sweeper.finishing=true" if search else "hydra/sweeper=finish",
        f"hydra.sweep.dir={hydra_value(str(sweep_dir))}",
    ]


def replayable(overrides: Any, source: Path, kind: str) -> list[str]:
    """A sweep's recorded overrides (``hydra.overrides.<kind>`` of its ``multirun.yaml``), held to the rule of
    every file read back: only what a sweep's command line carries and Hydra reads, naming no class
    (``_target_``), no interpolation, and no config file outside the config directories (an option given as a
    path); one line naming the file and the override otherwise."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    key = f"hydra.overrides.{kind}"
    if overrides is None:
        return []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise damaged(source, key, "is not a list of overrides")
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parsed = parser.parse_overrides([override])[0]
        except OverrideParseException:
            raise damaged(source, key, f"holds {override!r}, which Hydra cannot read") from None
        if "_target_" in override or "${" in override:
            raise damaged(
                source, key, f"holds {override!r}; an override read back may not name a class to build or interpolate"
            )
        value = override.partition("=")[2]
        if "." not in parsed.key_or_group and (value.startswith(("/", "~")) or ".." in Path(value).parts):
            raise damaged(source, key, f"holds {override!r}; an option is named, not given as a path")
    return overrides


def hydra_main(conf_dir: str, config_name: str, task: Any) -> Any:
    """``hydra.main`` for train.py, eval.py and their console scripts, with a command line Hydra's grammar
    cannot read answered by one line that says how to quote it."""
    import hydra

    main = hydra.main(version_base="1.3", config_path=conf_dir, config_name=config_name)(task)

    def checked() -> None:
        try:
            finishing = finish_arguments(sys.argv[1:]) if config_name == "config" else None
        except ExperimentError as exc:
            exit_with(str(exc))
        if finishing is not None:
            sys.argv[1:] = finishing
        script = "eval.py" if config_name == "eval" else "train.py"
        args = sys.argv[1:]
        if problem := moved_option(args) or unreadable_override(args) or misspelt_override(args, script):
            exit_with(problem)
        main()

    return checked
