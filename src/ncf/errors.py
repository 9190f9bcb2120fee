"""The errors a user can act on: each message is one line that names what is wrong and the fix.

Stage scripts (stage.run) print them as `error: ...` and exit with code 2, without a traceback.
This module imports nothing, so the data stages need not load torch to report one.
"""


class ParamsError(ValueError):
    """A bad value in params.yaml; its message is one line a user can act on."""


class DataError(RuntimeError):
    """A source or a data file that cannot be used; the message is one actionable line."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or built for another model."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message says what to change."""


USER_ERRORS = (ParamsError, DataError, CheckpointError, TrainingError)
