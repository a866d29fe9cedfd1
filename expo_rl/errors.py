"""Errors a user can fix (bad config, data, setup, a used or busy output directory, a diverged
run): every command reports them as one line and exits with the error's ``exit_code`` (2 unless
stated), while anything else is a bug and keeps its traceback (``expo_rl.cli.main``)."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure with a message that says what to change; exit status ``exit_code``."""

    exit_code = 2


class RunDirError(UserError):
    """The output directory is used by another run, busy, unwritable or too small."""


class NonFiniteError(UserError):
    """A training update had a non-finite loss or gradient norm (``train.on_nonfinite: stop``)."""

    exit_code = 3



class ModelSpecError(UserError, ValueError):
    """A model spec names no model this machine can load (a ValueError, as before)."""


class ModelNotAvailableError(UserError, OSError):
    """A hub model that is not in the local cache while offline (an OSError, as before)."""
