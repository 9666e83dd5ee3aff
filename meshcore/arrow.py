"""Arrow type questions both the gateway and the connectors ask."""

from __future__ import annotations

import pyarrow as pa


def is_text(kind: pa.DataType) -> bool:
    """Whether ``kind`` holds text: ``string``, ``large_string`` or ``string_view``."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))
