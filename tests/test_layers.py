"""The layers import downwards only: meshcore <- connectors <- gateway (STYLE.md: no import circles)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_after(modules: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing ``modules``."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(sorted({n.split('.')[0] for n in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(eval(out))  # a list of names printed by the code above


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ([f"connectors.{p.stem}" for p in sorted((ROOT / "connectors").glob("*.py")) if p.stem != "__init__"], {"gateway"}),
        (["meshcore.errors", "meshcore.config"], {"gateway", "connectors"}),
    ],
    ids=["connectors", "meshcore"],
)
def test_a_layer_never_imports_the_one_above(modules: list[str], forbidden: set[str]) -> None:
    assert not imported_after(modules) & forbidden
