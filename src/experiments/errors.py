"""The project's own error types: what a user can fix, printed as one line naming the key or file.

Anything else raised during a run is a bug or an environment problem and keeps its traceback.
"""


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
