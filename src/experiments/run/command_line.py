"""The command line before Hydra reads it: options that moved, and overrides Hydra's grammar cannot read, each
answered by one line that says what to type; and ``hydra.main`` with that check in front, for train.py, eval.py
and their console scripts."""

from __future__ import annotations

import sys
from typing import Any

from experiments.errors import exit_with


def unreadable_override(args: list[str]) -> str | None:
    """The first command-line override Hydra's grammar cannot read, as a line that says how to quote it:
    Hydra's own message ("mismatched input '=' expecting <EOF>") never says, and the sweep job directories
    this project names (``0_activation=relu,optimizer.lr=0.1``) need it whenever a path holds one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in (a for a in args if "=" in a and not a.startswith("-")):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as exc:
            key, _, value = arg.partition("=")
            return (
                f"Hydra cannot read {arg!r} ({str(exc).splitlines()[0]}): a value holding '=', ',', brackets or "
                f"quotes is quoted for Hydra, inside the shell's quotes: '{key}=\"{value}\"'"
            )
    return None


# Options that moved, with where they went: Hydra would only list the group's options.
MOVED_OPTIONS = {"trainer=debug": "debug=limit (more: debug=fdr, overfit, profiler or anomaly; README 'Debugging')"}


def moved_option(args: list[str]) -> str | None:
    found = next((a for a in args if a in MOVED_OPTIONS), None)
    return f"{found} is now {MOVED_OPTIONS[found]}" if found else None


def hydra_main(conf_dir: str, config_name: str, task: Any) -> Any:
    """``hydra.main`` for train.py, eval.py and their console scripts, with a command line Hydra's grammar
    cannot read answered by one line that says how to quote it."""
    import hydra

    main = hydra.main(version_base="1.3", config_path=conf_dir, config_name=config_name)(task)

    def checked() -> None:
        if problem := moved_option(sys.argv[1:]) or unreadable_override(sys.argv[1:]):
            exit_with(problem)
        main()

    return checked
