"""What a client may see of a server error: what went wrong, never the server's Python insides."""

from __future__ import annotations

import builtins
import re

# Builtin exception classes (warnings aside: "Warning" is an ordinary word), and the
# library and gateway exception classes a careless mapping would show.
PYTHON_EXCEPTIONS = sorted(
    {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException) and not issubclass(value, Warning)
    }
    | {
        "PanicException",
        "ArrowException",
        "ArrowInvalid",
        "ArrowNotImplementedError",
        "ArrowKeyError",
        "ArrowTypeError",
        "DecodeError",
        "SqlglotError",
        "MeshgateError",
        "PlanningError",
        "NotSupportedError",
        "InvalidRequestError",
        "SourceError",
        "FlightError",
        "FlightServerError",
        "FlightInternalError",
    }
)
_CLASS_NAMES = re.compile(r"\b(?:" + "|".join(PYTHON_EXCEPTIONS) + r")\b")


def assert_clean(message: str) -> None:
    """No traceback, no server file path, no Python exception class name in ``message``.

    pyarrow clients may append a ``gRPC client debug context`` that repeats the server's
    message next to the client library's own status (``Client context: IOError: ...``, an
    Arrow status name written by the client): only the server's part is judged.
    """
    message = message.split(". gRPC client debug context:")[0]
    for leak in ("Traceback", 'File "', ".py", "Python exception"):
        assert leak not in message, f"{leak!r} leaks in {message!r}"
    leaked = _CLASS_NAMES.search(message)
    assert leaked is None, f"Python exception class {leaked.group()!r} leaks in {message!r}"
