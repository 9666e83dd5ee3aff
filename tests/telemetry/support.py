"""A mesh for the telemetry tests: a CSV domain read by DataFusion and a SQLite domain whose
queries go to its source, with an admin (``root``) and a reader of the CSV domain only
(``alice``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.support.gateway import Credentials, auth_yaml

ROOT = Credentials("root", "root-secret-password")
ALICE = Credentials("alice", "alice-secret-password")

T = TypeVar("T")


def write_mesh(folder: Path) -> Path:
    """The mesh's files in ``folder``; answers the config's path."""
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n")
    with sqlite3.connect(folder / "shop.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, secret TEXT)")
        db.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"item {i}", f"s3cr3t-{i}") for i in range(1, 6)])
    config = folder / "mesh.yaml"
    config.write_text(mesh_yaml())
    return config


def mesh_yaml(extra_domain: str = "") -> str:
    return (
        "domains:\n"
        "  - name: ref\n    connector: {type: csv, path: kinds.csv}\n"
        "  - name: shop\n    connector: {type: sqlite, path: shop.db}\n"
        + extra_domain
        + "policies:\n  roles:\n    admin: [root]\n    reader: [alice]\n"
        '  grants:\n    - {role: admin, on: "*"}\n    - {role: reader, on: "ref.*"}\n' + auth_yaml(ROOT, ALICE)
    )


def wait_for(answer: Callable[[], T], done: Callable[[T], bool], what: str, seconds: float = 30.0) -> T:
    """``answer()`` once ``done`` holds for it (the gateway records a query just after its last row is sent)."""
    deadline = time.monotonic() + seconds
    while True:
        value = answer()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s; last: {value!r}")
        time.sleep(0.05)


def serve_error(*flags: str) -> str:
    """What ``meshgate serve`` says when it refuses ``flags`` (it must exit 1, without a traceback)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr
