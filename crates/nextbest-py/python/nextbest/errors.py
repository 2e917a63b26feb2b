"""The exceptions nextbest raises.

Every one is a :class:`NextbestError`; ``str(e)`` is the engine's own
message. Errors about input values are also ``ValueError``\\ s, file errors
also ``OSError``\\ s, so generic handlers keep working.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

__all__ = [
    "NextbestError",
    "RuleProblem",
    "RuleError",
    "ContextError",
    "RequestError",
    "ChannelError",
    "ConfigError",
    "RollbackError",
    "StateError",
    "FileError",
    "BatchError",
    "InternalError",
]


class NextbestError(Exception):
    """Base class of every nextbest error. ``message`` is the engine's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RuleProblem(NamedTuple):
    """One problem in a rule directory, where the author must look."""

    file: str
    """The file (under the rule directory)."""
    line: int
    """1-based line."""
    column: int
    """1-based column, in characters."""
    message: str
    """What is wrong and, where possible, what to do."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RuleError(NextbestError, ValueError):
    """A rule directory did not load; nothing was published.

    ``errors`` lists every problem found (validation reports them all at
    once); ``file``, ``line`` and ``column`` are the first one's.
    """

    def __init__(self, message: str, errors: Optional[List[RuleProblem]] = None) -> None:
        super().__init__(message)
        self.errors: List[RuleProblem] = list(errors or [])
        first = self.errors[0] if self.errors else None
        self.file: Optional[str] = first.file if first else None
        self.line: Optional[int] = first.line if first else None
        self.column: Optional[int] = first.column if first else None


class ContextError(NextbestError, ValueError):
    """A context value has the wrong type or is not an allowed value.

    ``attribute`` names it.
    """

    def __init__(self, message: str, attribute: str = "") -> None:
        super().__init__(message)
        self.attribute = attribute


class RequestError(NextbestError, ValueError):
    """A request or outcome is malformed (a limit out of range, an unknown
    outcome kind or action, a bad decision id)."""


class ChannelError(RequestError):
    """The channel is not declared by the rule set. ``channel`` names it."""

    def __init__(self, message: str, channel: str = "") -> None:
        super().__init__(message)
        self.channel = channel


class ConfigError(NextbestError, ValueError):
    """The engine configuration (``Engine(rules_dir, **config)``) is invalid."""


class RollbackError(NextbestError):
    """There is no previous version to roll back to."""


class StateError(NextbestError):
    """Engine state could not be saved or loaded."""


class FileError(NextbestError, OSError):
    """Reading or writing a file failed. ``path`` names it."""

    def __init__(self, message: str, path: str = "") -> None:
        NextbestError.__init__(self, message)
        self.path = path

    def __str__(self) -> str:
        return self.message


class BatchError(NextbestError, ValueError):
    """``decide_batch`` stopped: a column cannot be used, or a row cannot be
    bound or decided.

    ``column`` names the column (when one is at fault), ``row`` the 0-based
    row and ``customer_id`` its customer (when a row is at fault).
    """

    def __init__(
        self,
        message: str,
        column: Optional[str] = None,
        row: Optional[int] = None,
        customer_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.column = column
        self.row = row
        self.customer_id = customer_id


class InternalError(NextbestError):
    """A bug in nextbest (a Rust panic, caught at the boundary). Please report it."""
