"""What a connector plugin gives the shared conformance suite (tests/connectors/test_conformance.py).

A plugin declares, in entry point group :data:`GROUP` under its kind's name, a loader::

    def load(table: pa.Table, name: str, folder: Path) -> ConformanceSource: ...

It writes ``table`` (the suite's dataset: every type, NULLs, unicode, extremes) into a new
source of its kind in ``folder``, as relation ``name``, with the source's own tools (not
through the connector under test), and says how a domain reaches it. A loader for a source
that needs cleaning up (a database schema) may instead return a context manager yielding
the :class:`ConformanceSource`. Run the suite against the kind with
``pytest tests/connectors/test_conformance.py --connector KIND``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

GROUP = "meshgate.conformance"
"""The entry point group conformance loaders are declared in (one per kind, named after it)."""


@dataclass(frozen=True)
class ConformanceSource:
    """The loaded dataset, as a domain of the plugin's kind sees it.

    ``settings`` are the domain's ``connector:`` settings besides ``type``, as YAML gives them
    (paths absolute). ``source`` is a product's ``source:`` naming the loaded relation, and
    ``product`` the name :meth:`Connector.discover` gives it. ``expected`` is what the connector
    returns for the dataset when the source cannot hold every value exactly (None: the dataset).
    """

    settings: Mapping[str, Any]
    source: str
    product: str
    expected: pa.Table | None = field(default=None, compare=False)


ConformanceLoader = Callable[[pa.Table, str, Path], ConformanceSource | AbstractContextManager[ConformanceSource]]
