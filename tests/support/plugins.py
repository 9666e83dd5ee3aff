"""Connector plugins for tests: installed into a folder of their own, never into the project's venv.

A folder on ``sys.path`` (or ``PYTHONPATH``) holding ``<name>.dist-info`` is where Python finds
installed distributions and their entry points. :func:`install_example` puts the example
plugin there with pip, as a user would install it; :func:`write_distribution` writes the
smallest such distribution by hand, for plugins that are broken on purpose.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "meshgate-connector-example"
EXAMPLE_KIND = "arrow_ipc"


def install_example(site: Path, scratch: Path) -> Path:
    """``pip install --target site`` of examples/meshgate-connector-example (built from a copy in
    ``scratch``, so that no build files land in the working tree); returns ``site``."""
    source = scratch / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    return site


def write_distribution(
    site: Path, name: str, entry_points: Mapping[str, Mapping[str, str]], modules: Mapping[str, str]
) -> None:
    """An installed distribution ``name`` in ``site``: its metadata, entry points by group, and modules."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    sections = [
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items())
        for group, entries in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(sections))
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)
