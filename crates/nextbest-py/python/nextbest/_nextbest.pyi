"""Type stubs of the native module ``nextbest._nextbest`` (Rust, pyo3).

Users import :mod:`nextbest`, whose ``Engine`` subclasses this module's
and whose functions wrap these in polars DataFrames.
"""

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

_Path = Union[str, "os.PathLike[str]"]
_Logs = Union[_Path, Sequence[_Path]]
_Time = Union[str, int, Any]

__version__: str
STAGES: Tuple[str, ...]
"""The stages of the decision funnel, in order."""

class Batches:
    """Arrow record batches, exported through ``__arrow_c_stream__``."""

    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...
    def __len__(self) -> int: ...

class Engine:
    """A decision engine serving one rule directory (thread-safe)."""

    def __init__(self, rules_dir: _Path, **config: Any) -> None: ...
    def decide(
        self,
        customer_id: str,
        channel: str,
        context: Optional[Dict[str, Any]] = None,
        explain: bool = False,
        limit: Optional[int] = None,
        now: Optional[_Time] = None,
    ) -> Dict[str, Any]: ...
    def _decide_batch(
        self,
        table: Any,
        channel: str,
        customer_id: str,
        limit: Optional[int],
        now: Optional[_Time],
        chunk_rows: int,
        threads: Optional[int],
    ) -> Batches: ...
    def record_outcome(
        self,
        customer_id: str,
        action: str,
        channel: str,
        outcome: str,
        decision_id: Optional[str] = None,
        timestamp: Optional[_Time] = None,
    ) -> None: ...
    def publish(self, rules_dir: _Path) -> int: ...
    def rollback(self) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def flush(self) -> None: ...
    @property
    def schema(self) -> Dict[str, str]:
        """The live version's context schema: attribute name to type name."""
    @property
    def rules_dir(self) -> str:
        """The rule directory the engine was opened with."""

def _read_decisions(log: _Logs) -> Tuple[Batches, List[str]]: ...
def _read_candidates(log: _Logs) -> Tuple[Batches, List[str]]: ...
def _read_outcomes(log: _Logs) -> Tuple[Batches, List[str]]: ...
def _funnel(log: _Logs) -> Tuple[Dict[str, Any], List[str]]: ...
def evaluate(
    log: _Logs, candidate_dir: _Path, success: Optional[Iterable[str]] = None
) -> Dict[str, Any]: ...
def impact(log: _Logs, mde: float = 0.1) -> Dict[str, Any]: ...
def _panic_in_guard(message: str) -> None:
    """Panic inside the engine calls' guard (for the tests): raises InternalError."""
