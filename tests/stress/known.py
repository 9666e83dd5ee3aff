"""Findings of the fuzzer that are reported and not yet fixed (see RESULTS.md, "Failing cases").

Each is a predicate on a :class:`~tests.stress.harness.Failure`. The default-suite fuzz
tests let failures that match one pass (counted, and printed), and each finding has a
test of its own in ``test_fuzz.py``, ``xfail(strict=True)`` with its smallest reproduction:
once the gateway is fixed that test passes, strict xfail turns it into a failure, and the
entry here is removed.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.stress.cases import ProtocolCase, SqlCase
from tests.stress.harness import Failure


def _get_schema(failure: Failure) -> bool:
    case = failure.case
    return (isinstance(case, SqlCase) and case.path == "schema") or (
        isinstance(case, ProtocolCase) and case.rpc == "get_schema"
    )


KNOWN: dict[str, Callable[[Failure], bool]] = {
    # GetSchema: pyarrow 26's get_schema callback sends any exception, FlightError included,
    # with the Python traceback (server file paths) as the status detail; a long message,
    # twice in the traceback, can then exceed gRPC's metadata limit (RESOURCE_EXHAUSTED).
    "get-schema-traceback": lambda failure: (
        failure.outcome.why.endswith("[from pyarrow._flight._get_schema]")
        or (_get_schema(failure) and "metadata size exceeds" in failure.outcome.message)
    ),
    # F11: a NULL bound into an IN list (DataFusion makes it ``NULL OR x = 5``) over a product
    # read through DataFusion's Python dataset scan (a masked column keeps the query federated):
    # datafusion-python turns the filter into pyarrow's ``BooleanScalar | Expression``, which fails.
    "null-in-a-dataset-filter": lambda failure: (
        "unsupported operand type(s) for |: 'pyarrow.lib.BooleanScalar'" in failure.outcome.message
    ),
}


def known(failure: Failure) -> str | None:
    """The name of the known finding ``failure`` is an instance of, if any."""
    return next((name for name, matches in KNOWN.items() if matches(failure)), None)
