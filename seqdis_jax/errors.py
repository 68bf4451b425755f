"""The library's error types, in one module that imports nothing of the project.

Every error a user can meet names the problem and its fix in its message. The types say who
must act: `UserInputError` (config, flags, workdir) and its subclasses are the user's to fix;
the others report a state of the run (no checkpoint, non-finite training, a failed write).
Modules raise these; the launcher (`experiments/main.py`) prints them as one `error:` line.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem with what the user passed (config, flags, workdir); the message says the fix."""


class MeshError(UserInputError):
    """A mesh the devices cannot form, or a batch the mesh cannot split; says the fix."""


class MissingLabelError(ValueError):
    """An evaluator needs a label that the dataset does not have."""


class JudgeMismatchError(ValueError):
    """The judge in config.judge.workdir was trained for other data or another architecture."""


class MissingCheckpointError(FileNotFoundError):
    """--mode=eval (or a restore) found no checkpoint in the workdir."""


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient (config.train.max_skips)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (full disk, lost permissions); the earlier ones stand."""


class NotPreparedError(FileNotFoundError):
    """The dataset directory holds no complete prepared version."""


class BadDataError(NotPreparedError, ValueError):
    """A dataset is there but unusable: a split without records, unreadable (damaged) files,
    records of another dtype or shape than the model takes, non-finite values. Like an
    unprepared one it needs its data_prep converter run again; the message says how."""


class WorkdirLockedError(UserInputError):
    """Another live run holds the workdir's lock; the message names it (pid, host, command)."""


class DamagedCheckpointError(RuntimeError):
    """The checkpoint asked for (or every checkpoint of the workdir) cannot be read back;
    nothing was deleted. The message names the step and the damaged file."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after it saved a checkpoint at the current step.

    A KeyboardInterrupt (not an Exception) so that no `except Exception` on the way up swallows
    it; the launcher prints the message and exits with `exit_code` (128 + the signal number)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
