"""Errors that reach the user as one clear line.

Every error a user can cause (a bad file, a bad parameter, a missing
reference) derives from :class:`WebbflowError`.  The command line prints
``webbflow: error: <message>`` for these and exits non-zero, without a
traceback.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def a_an(name: str) -> str:
    """``name`` with its indefinite article, for messages: "an ImageModel", "a RampModel"."""
    return f"{'an' if name[:1].upper() in 'AEIOU' else 'a'} {name}"


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'jump'?)`` when a known name is close to ``name`` (difflib), else ``""``."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        lower = {k.lower(): k for k in known}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close else ""


class WebbflowError(Exception):
    """Base class for errors caused by the user's input or configuration."""

    exit_code = 1


class InputFileError(WebbflowError):
    """An input file is missing, unreadable or malformed."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelValidationError(InputFileError):
    """A file's arrays or keywords contradict its datamodel."""


class ParameterError(WebbflowError):
    """A step or pipeline parameter is unknown or has the wrong type."""


class ReferenceFileError(WebbflowError):
    """A reference file is missing, unreadable or does not fit the exposure."""

    def __init__(self, reftype: str, path, problem: str):
        self.reftype = reftype
        self.path = str(path)
        super().__init__(f"{reftype} reference {self.path}: {problem}")


class UnsupportedModeError(WebbflowError):
    """The instrument or exposure type is not supported by the pipeline."""
