"""Hot reload: domain teams change their files under a running gateway."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import PermissionDeniedError, PlanningError
from gateway.reload import Reloader

SALES = """domains:
  - name: sales
    owner: sales-team
    connector: {type: sqlite, path: sales.db}
    products:
      - {name: orders, source: orders}
"""
PLATFORM = """policies:
  roles:
    admin: [root]
    analyst: [alice, bob, "group:sales-team"]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "*"}
"""
ALICE = CallerContext(user="alice", attributes={"region": "eu"})


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Engine, Reloader, Path]]:
    with sqlite3.connect(tmp_path / "sales.db") as connection:
        connection.execute("CREATE TABLE orders (id INTEGER, region TEXT, total REAL)")
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(i, "eu" if i % 2 else "us", i * 1.5) for i in range(1, 101)]
        )
    (tmp_path / "ref.csv").write_text("code,label\na,alpha\nb,beta\n")
    (tmp_path / "sales.yaml").write_text(SALES)
    (tmp_path / "ref.yaml").write_text(
        "domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: ref.csv}\n"
    )
    (tmp_path / "platform.yaml").write_text(PLATFORM)
    engine = Engine.from_config(load_config(tmp_path))
    reloader = Reloader(engine, tmp_path)
    yield engine, reloader, tmp_path
    engine.close()


def count(engine: Engine, sql: str, caller: CallerContext = ALICE) -> int:
    return int(engine.run(sql, caller).read_all().column(0).to_pylist()[0])


def test_product_and_policy_change_while_queries_run(mesh: tuple[Engine, Reloader, Path]) -> None:
    engine, reloader, folder = mesh
    failures: list[BaseException] = []
    stop = threading.Event()
    done = [0]

    def keep_querying() -> None:
        while not stop.is_set():
            try:
                count(engine, "SELECT count(*) FROM sales.orders o JOIN ref.ref r ON true")
                done[0] += 1
            except BaseException as error:
                failures.append(error)

    workers = [threading.Thread(target=keep_querying) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        (folder / "sales.yaml").write_text(
            SALES
            + "      - {name: big_orders, sql: 'SELECT id, total FROM orders WHERE total > 100'}\n"
            + "    policies:\n      row_filters:\n"
            + "        - {on: sales.orders, where: \"region = current_user_attribute('region')\", except: [admin]}\n"
        )
        applied = reloader.poll()
        assert [a.changed for a in applied] == [("sales",)]
        assert count(engine, "SELECT count(*) FROM sales.big_orders") == 34
        assert count(engine, "SELECT count(*) FROM sales.orders") == 50, "the new row filter applies at once"
        assert count(engine, "SELECT count(*) FROM sales.orders", CallerContext(user="root")) == 100
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures[:3]
    assert done[0] > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("domains:\n  - name: sales\n    connector: {type: sqlite, path: sales.db\n", r"invalid YAML"),
        (SALES.replace("owner:", "ownr:"), r"sales.yaml:\d+: domain 'sales': ownr: unknown key"),
        (SALES.replace("sales.db", "missing.db"), r"connector.path: 'missing.db' does not exist"),
        (SALES.replace("source: orders", "source: no_such_table"), r"no_such_table"),
        (
            SALES + "    policies:\n      grants:\n        - {role: analyst, on: ref.ref}\n",
            r"only name its own products",
        ),
        (SALES + "    policies:\n      masks:\n        - {on: sales.orders.nope, mask: hash}\n", r"matches no column"),
    ],
)
def test_a_broken_file_leaves_the_last_good_version_serving(
    mesh: tuple[Engine, Reloader, Path], text: str, message: str
) -> None:
    engine, reloader, folder = mesh
    (folder / "sales.yaml").write_text(text)
    assert reloader.poll() == []
    assert any(_matches(message, error) for error in reloader.errors.values()), reloader.errors
    assert count(engine, "SELECT count(*) FROM sales.orders") == 100
    assert count(engine, "SELECT count(*) FROM ref.ref") == 2
    (folder / "sales.yaml").write_text(SALES)
    reloader.poll()
    assert reloader.errors == {}


def _matches(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_domains_come_and_go_with_their_files(mesh: tuple[Engine, Reloader, Path]) -> None:
    engine, reloader, folder = mesh
    (folder / "more.csv").write_text("x\n1\n2\n3\n")
    (folder / "more.yaml").write_text("domains:\n  - name: more\n    connector: {type: csv, path: more.csv}\n")
    reloader.poll()
    assert count(engine, "SELECT count(*) FROM more.more") == 3
    (folder / "more.yaml").unlink()
    reloader.poll()
    with pytest.raises(PlanningError, match=r"unknown domain 'more'"):
        engine.run("SELECT * FROM more.more", ALICE)
    (folder / "dupe.yaml").write_text(SALES)
    reloader.poll()
    assert "already declared in" in reloader.errors[folder / "dupe.yaml"]


def test_only_owners_and_admins_apply_domains(mesh: tuple[Engine, Reloader, Path]) -> None:
    engine, reloader, folder = mesh
    changed = SALES + "      - {name: eu_orders, sql: \"SELECT * FROM orders WHERE region = 'eu'\"}\n"
    with pytest.raises(PermissionDeniedError, match=r"may not change domain 'sales': it is owned by 'sales-team'"):
        reloader.apply_text(CallerContext(user="mallory"), changed)
    assert "eu_orders" not in engine.catalog.domain("sales").products
    owner = CallerContext(user="bob", attributes={"groups": "sales-team"})
    assert reloader.apply_text(owner, changed).changed == ("sales",)
    assert count(engine, "SELECT count(*) FROM sales.eu_orders") == 50
    assert "eu_orders" in (folder / "sales.yaml").read_text(), "an applied file is kept for the next start"
    with pytest.raises(PermissionDeniedError, match=r"may not send 'policies' over the network"):
        reloader.apply_text(owner, "policies:\n  grants:\n    - {role: analyst, on: '*'}\ndomains: []\n")
    ref = (
        "domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: ref.csv}\n    description: x\n"
    )
    assert reloader.apply_text(CallerContext(user="root"), ref).changed == ("ref",)


def test_a_served_mesh_picks_up_a_changed_file(tmp_path: Path) -> None:
    import time

    from tests.support.gateway import GatewayProcess, auth_yaml, query

    (tmp_path / "ref.csv").write_text("code\na\nb\n")
    (tmp_path / "more.csv").write_text("code\nx\ny\nz\n")
    (tmp_path / "auth.yaml").write_text(auth_yaml())
    (tmp_path / "ref.yaml").write_text(
        "domains:\n  - name: ref\n    connector: {type: csv, path: ref.csv}\n    products:\n"
        "      - {name: codes, source: ref.csv}\n"
    )
    process = GatewayProcess(tmp_path, extra=("--watch-interval", "0.2"))
    try:
        assert query(process.uri, "SELECT count(*) FROM ref.codes", process.credentials).column(0).to_pylist() == [2]
        (tmp_path / "ref.yaml").write_text(
            "domains:\n  - name: ref\n    connector: {type: csv, path: .}\n    products:\n"
            "      - {name: codes, source: ref.csv}\n      - {name: more, source: more.csv}\n"
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                result = query(process.uri, "SELECT count(*) FROM ref.more", process.credentials)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert result.column(0).to_pylist() == [3]
    finally:
        process.stop()


def test_domain_apply_through_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gateway.auth import hash_password
    from tests.support.gateway import Credentials, GatewayProcess, query

    owner, stranger = Credentials("olga", "olga-password-123"), Credentials("sam", "sam-password-456")
    (tmp_path / "ref.csv").write_text("code\na\nb\n")
    (tmp_path / "auth.yaml").write_text(
        "auth:\n  users:\n"
        + "".join(
            f"    - {{name: {c.user}, password_hash: '{hash_password(c.password)}', groups: [{g}]}}\n"
            for c, g in ((owner, "ref-team"), (stranger, "others"))
        )
    )
    (tmp_path / "ref.yaml").write_text(
        "domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: ref.csv}\n"
    )
    changed = tmp_path / "outside" / "ref.yaml"
    changed.parent.mkdir()
    changed.write_text(
        "domains:\n  - name: ref\n    owner: ref-team\n    connector: {type: csv, path: ref.csv}\n"
        "    products:\n      - {name: codes, source: ref.csv, description: applied remotely}\n"
    )
    process = GatewayProcess(tmp_path, extra=("--watch-interval", "0"), credentials=owner)

    def apply(who: Credentials) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "domain", "apply", str(changed), "--server", process.uri],
            env=who.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        denied = apply(stranger)
        assert denied.returncode == 1 and "may not change domain 'ref'" in denied.stderr, denied.stderr
        ok = apply(owner)
        assert ok.returncode == 0, ok.stderr
        assert "domains changed: ref" in ok.stdout
        assert query(process.uri, "SELECT count(*) FROM ref.codes", owner).column(0).to_pylist() == [2]
        assert "applied remotely" in (tmp_path / "ref.yaml").read_text()
    finally:
        process.stop()
