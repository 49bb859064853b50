"""The project's own error types: what a user can fix, printed as one line naming the key or file.

Anything else raised during a run is a bug or an environment problem and keeps its traceback.
"""

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

INTERRUPTED = 128 + 2  # a shell's status for a process that Ctrl-C (SIGINT) ended
BEFORE_TRAINING = "interrupted (Ctrl-C) before training began"  # the record's error: there is nothing to resume


def say(line: str) -> None:
    """One line on stderr, written whole: ``print`` writes the line and its newline apart, and a thread that
    forwards other processes' output (Ray's log monitor) could write between them. The run's log file gets it
    too (``to_log_file``)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    to_log_file(line)


def tell(line: str) -> None:
    """A run's outcome on stdout, and in its log file: ``train.log`` ends with the line the console ended with
    (behind the log's time stamp)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    to_log_file(line)


def to_log_file(line: str) -> None:
    """``line`` into the log files the root logger writes (Hydra's ``<run_dir>/<job>.log``), in the log's own format
    (its time stamp and level before the console's words); none before Hydra has set its logging up."""
    level = logging.ERROR if line.startswith("Error: ") else logging.INFO
    record = logging.LogRecord("experiments", level, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def exit_with(message: str, code: int = 2) -> NoReturn:
    """The one-line form of an error a user can fix: ``Error: <message>`` on stderr, then exit."""
    say(f"Error: {message}")
    sys.exit(code)


@contextmanager
def ctrl_c_in_one_line(
    where: str = "while starting, before a run began", record: Callable[[], None] | None = None
) -> Iterator[None]:
    """A Ctrl-C that lands outside training (Python's imports, Hydra's start, a run's checks and build) ends
    the process with one line and the status a shell expects, not a traceback, after ``record`` (a run's
    record of it); training handles its own and records it."""
    try:
        yield
    except KeyboardInterrupt:
        if record is not None:
            record()
        say(f"Interrupted (Ctrl-C) {where}")
        sys.exit(INTERRUPTED)


def first_line(exc: BaseException) -> str:
    """An exception's message as one line: its first, or its type's name where it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ExperimentError(Exception):
    """Base of every error a user can fix by changing a value, a file or a directory."""


class ConfigError(ExperimentError, ValueError):
    """A config value that cannot work; ``str()`` lists every problem, one per line."""


class DataError(ExperimentError):
    """A data file that is missing, damaged or not what its name says."""


class CheckpointError(ExperimentError, ValueError):
    """A file that is not a checkpoint this project can load, or one it refuses to load."""


class RunDirectoryError(ExperimentError):
    """A run or sweep directory that holds earlier results, or cannot be written."""


class DamagedFile(ExperimentError, ValueError):
    """A file read back (a checkpoint, a record, a sweep's config) that does not hold what this project wrote
    there: damaged, edited by hand, or crafted. Said in one line naming the file and the key."""
