"""The README's "A complete example", run as written: examples/make_data.py, `meshgate check`,
`meshgate serve`, and each query of the walkthrough through the ADBC client (and `meshgate query`),
compared with the results the README shows.

The examples folder is copied to a temporary directory first, so the data never lands in the
working tree; the PostgreSQL tables go to schema ``meshgate_example`` of the test server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Credentials, GatewayProcess, query

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## A complete example"


@dataclass(frozen=True)
class Step:
    """One query of the walkthrough: who runs it, the SQL, and the table the README shows."""

    user: Credentials
    sql: str
    header: list[str]
    rows: list[list[str]]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def steps(section: str) -> list[Step]:
    """Each ``meshgate query`` block with the ``export`` before it and the Markdown table after it."""
    found = []
    pattern = re.compile(
        r"```bash\nexport MESHGATE_USER=(\S+) MESHGATE_PASSWORD=(\S+)\n\.venv/bin/meshgate query \"(.*?)\"\n```"
        r"\n\n((?:\|[^\n]*\|\n)+)",
        re.DOTALL,
    )
    for user, password, sql, table in pattern.findall(section):
        lines = [
            [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")] for line in table.splitlines()
        ]
        found.append(Step(Credentials(user, password), sql, lines[0], lines[2:]))
    return found


def shown(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of examples/ with its data made by make_data.py (PostgreSQL: the test server)."""
    folder = tmp_path_factory.mktemp("example") / "examples"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("data", "__pycache__"))
    env = {**os.environ, "MESHGATE_EXAMPLE_PG": postgres_uri}
    made = subprocess.run(
        [sys.executable, str(folder / "make_data.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    yield folder, env


def test_the_example_has_one_file_per_domain_and_the_platform_files() -> None:
    files = sorted(p.name for p in (ROOT / "examples").iterdir() if p.suffix == ".yaml")
    assert files == ["auth.yaml", "finance.yaml", "inventory.yaml", "logistics.yaml", "platform.yaml", "sales.yaml"]
    platform = (ROOT / "examples" / "platform.yaml").read_text()
    for section in ("roles:", "grants:", "masks:", "row_filters:", "rules:", "classify:", "self_serve:"):
        assert section in platform
    assert "${MESHGATE_EXAMPLE_PG:-postgresql://127.0.0.1:5432/test}" in (ROOT / "examples" / "sales.yaml").read_text()


def test_meshgate_check_says_what_the_readme_says(example: tuple[Path, dict[str, str]]) -> None:
    folder, env = example
    summary = re.search(r"ends with\n`([^`]+)`", walkthrough())
    assert summary is not None
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == summary.group(1)
    assert "logistics.shipments: 7 columns" in checked.stdout


def test_the_walkthrough_queries_return_what_the_readme_shows(example: tuple[Path, dict[str, str]]) -> None:
    folder, env = example
    walk = steps(walkthrough())
    assert [step.user.user for step in walk] == ["ana", "olga", "ana"]
    process = GatewayProcess(folder, extra=("--watch-interval", "0"), credentials=walk[0].user, env=env)
    try:
        for step in walk:
            table = query(process.uri, step.sql, step.user)
            assert table.column_names == step.header, step.sql
            got = [[shown(value) for value in row.values()] for row in table.to_pylist()]
            assert got == step.rows, f"{step.user.user}: {step.sql}"
            # The command as the README writes it, against this gateway.
            cli = subprocess.run(
                [str(Path(sys.executable).parent / "meshgate"), "query", step.sql],
                env={**env, **step.user.env(), "MESHGATE_SERVER": process.uri},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stderr
            for row in step.rows:
                for cell in row:
                    assert cell in cli.stdout, f"{cell!r} missing from `meshgate query` output:\n{cli.stdout}"
        # The partition filter reaches the Parquet scan, as the README says.
        filters = re.search(
            r"`(full_filters=\[logistics\.shipments\.year = Int64\(2024\)), \.\.\.\]`", (ROOT / "README.md").read_text()
        )
        assert filters is not None
        plan = "\n".join(query(process.uri, f"EXPLAIN {walk[2].sql}", walk[2].user).column("plan").to_pylist())
        assert filters.group(1) in plan and "logistics.shipments.month <= Int64(2)" in plan, plan
        # What ana may not read: invoice amounts.
        invoices = query(process.uri, "SELECT * FROM finance.invoices ORDER BY invoice_id", walk[0].user)
        assert invoices.column_names == ["invoice_id", "order_id", "paid"]
    finally:
        process.stop()
