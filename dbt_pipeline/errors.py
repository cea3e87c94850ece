"""The errors a user of the pipeline can meet, each with a message that says what to do next.

Everything the pipeline raises on purpose derives from `PipelineError`, so the command-line entry
points can print the message and exit non-zero without a traceback: a user's mistake is not a bug.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from dbt_pipeline.dbt_invocation import DbtCommandResult


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""

    def __repr__(self) -> str:
        # Prefect's engines write repr(error) into their log lines ("Task run failed with state: ..."): the first
        # line says which error it is, and the whole message (every failed node and its error) is said once, by
        # the command or the flow, rather than once more in each of those lines.
        return f"{type(self).__name__}({str(self).partition(chr(10))[0]!r})"


class ConfigError(PipelineError):
    """The environments file, a flag or a parameter is invalid."""


class UnknownTargetError(ConfigError):
    """A target is not declared in the environments file."""


class DbtProjectError(ConfigError):
    """The dbt project directory is missing or is not a dbt project."""


class CredentialsError(ConfigError):
    """A credentials file is missing, unreadable or of the wrong shape."""


class BlockNotFoundError(PipelineError):
    """A Prefect block the pipeline needs has not been created by the setup."""


class BlockTypeError(PipelineError):
    """A Prefect block exists under the expected name but is of another type."""


class PrefectApiError(PipelineError):
    """The Prefect API cannot be reached."""


class DbtRunError(PipelineError):
    """A dbt command failed: a node errored, a test failed or dbt itself could not run.

    Attributes:
        result: The failed command's outcome, for reports and alerts (None if unknown).
    """

    def __init__(self, message: str, result: DbtCommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class TransientDbtRunError(DbtRunError):
    """A dbt command failed because the warehouse was unavailable: worth another attempt."""


class StaleSourcesError(DbtRunError):
    """Sources are past their freshness `error_after` and the environment says to fail (`on_stale_source: fail`)."""


class StateStoreError(PipelineError):
    """A target's last good state (its latest successful run's dbt artifacts) cannot be read or saved.

    The message names the store's location (never its credentials) and what to do.
    """


class DiskFullError(PipelineError):
    """A disk the run writes to is full (ENOSPC, or EDQUOT: the user's quota on it).

    dbt writes its artifacts and the run its reports under the project's target folder: that is the disk
    to free, unless the message names another file.
    """

    DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

    @classmethod
    def behind(cls, error: OSError, target: str) -> DiskFullError | None:
        """The disk-full error `error` is, with what to do; None if it is another error."""
        if error.errno not in cls.DISK_FULL:
            return None
        where = f"could not write {error.filename}" if error.filename else "could not write a file"
        return cls(
            f"The disk is full: the run {where} ({os.strerror(error.errno)}). Free space on the disk that holds "
            f"the dbt project's target folder (the reports of old runs, in target/{target}/runs/, can go), "
            "then run again."
        )

    @classmethod
    def writing(cls, path: Path, error: OSError) -> DiskFullError:
        """A full disk met while writing `path` (a file named by the command, not one of the run's reports)."""
        return cls(
            f"The disk is full: could not write {path} ({os.strerror(error.errno or 0)}). Free space on the disk "
            "that holds it, then run the command again."
        )


class TargetSkipped(PipelineError):  # noqa: N818 - not a failure: the setup skips the target and says why
    """A target cannot be set up on this machine yet (e.g. no GCP project): the message says what it lacks."""


class CheckFailedError(PipelineError):
    """A check of the doctor failed: the message says what is wrong, `fix` what to do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix
