"""The exception tree. Only cli.py turns these into user-facing messages."""


class LoopError(Exception):
    """Base class for every error loop raises on purpose."""


class ConfigError(LoopError):
    """A config file or option is wrong: the message names the file and key."""


class DataError(LoopError):
    """A data file or row is wrong: the message names the file, line or column."""


class AssetError(LoopError):
    """A packaged model or data asset is missing or corrupt."""


class TeacherError(LoopError):
    """The teacher back-end failed in a way retrying did not fix.

    `partial` holds the results that did arrive before the failure, so the caller can
    store (and pay for) them instead of losing them.
    """

    def __init__(self, message: str, partial: list | None = None):
        super().__init__(message)
        self.partial = list(partial or [])


class TeacherDown(TeacherError):
    """The teacher failed too many times in a row: the run stops (resumable) instead of retrying forever."""


class RunStateError(LoopError):
    """A run cannot be started or resumed as asked (in use by another process, unknown, finished, changed)."""


class TrackingError(LoopError):
    """The MLflow tracking server cannot be reached when the run starts."""
