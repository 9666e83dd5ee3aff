"""Arrow type questions both the gateway and the connectors ask."""

from __future__ import annotations

import pyarrow as pa


def is_text(kind: pa.DataType) -> bool:
    """Whether ``kind`` holds text: ``string``, ``large_string`` or ``string_view``."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def is_binary(kind: pa.DataType) -> bool:
    """Whether ``kind`` holds bytes: ``binary``, ``large_binary``, ``binary_view`` or ``fixed_size_binary``."""
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_fixed_size_binary(kind)
    )
