"""The ``hash`` mask is HMAC-SHA256 under the mesh's mask key, and the key never shows.

alice (tests/governance/mesh.py) reads sales.customers with ``name`` hashed and only the
DE rows. These tests use engines and `meshgate serve` processes with a known key, and
check the masked values against Python's ``hmac``, that plain SHA-256 guesses find
nothing, that the same key gives the same (joinable) values and another key other
values, and that the key is in no plan, EXPLAIN output, error, audit record or log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from gateway.config import load_config
from gateway.engine import Engine
from gateway.errors import MeshgateError, PlanningError
from tests.governance.mesh import USERS, credentials
from tests.support.gateway import GatewayProcess, query

KEY = b"meshgate-test-mask-key-0123456789abcdef"
OTHER_KEY = b"another-mask-key-for-the-other-gateway!"
ALICE = USERS["alice"]


def keyed(value: str, key: bytes = KEY) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def key_forms(key: bytes = KEY) -> list[str]:
    """Every way the key could be written out: as text, hex and base64."""
    return [
        key.decode("latin-1"),
        key.hex(),
        key.hex().upper(),
        base64.b64encode(key).decode().rstrip("="),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    ]


def assert_no_key(text: str) -> None:
    for form in key_forms():
        assert form not in text, "the mask key appears in the output"


@pytest.fixture(scope="module")
def keyed_engine(governed_config: Path) -> Iterator[Engine]:
    engine = Engine.from_config(load_config(governed_config), mask_key=KEY)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def de_customers(tables: dict[str, pa.Table]) -> dict[int, str]:
    return {r["customer_id"]: r["name"] for r in tables["sales.customers"].to_pylist() if r["country"] == "DE"}


def names_by_id(table: pa.Table) -> dict[int, str]:
    return dict(zip(table.column("customer_id").to_pylist(), table.column("name").to_pylist(), strict=True))


# -- in the engine -------------------------------------------------------------------------


def test_the_hash_mask_is_hmac_sha256_under_the_mesh_key(keyed_engine: Engine, de_customers: dict[int, str]) -> None:
    seen = names_by_id(keyed_engine.run("SELECT customer_id, name FROM sales.customers", ALICE).read_all())
    assert seen == {customer: keyed(name) for customer, name in de_customers.items()}
    assert all(value != hashlib.sha256(de_customers[c].encode()).hexdigest() for c, value in seen.items())


def test_a_plain_sha256_guess_finds_nothing_and_the_keyed_value_finds_the_row(
    keyed_engine: Engine, de_customers: dict[int, str]
) -> None:
    customer, name = next(iter(de_customers.items()))
    escaped = name.replace("'", "''")

    def matching(predicate: str) -> list[int]:
        sql = f"SELECT customer_id FROM sales.customers WHERE {predicate}"
        return keyed_engine.run(sql, ALICE).read_all().column(0).to_pylist()

    assert matching(f"name = encode(sha256('{escaped}'), 'hex')") == []
    assert matching(f"name = '{escaped}'") == []
    assert matching(f"name = '{keyed(name)}'") == [customer]  # equality on masked values still works (joins)


def test_callers_cannot_call_the_hash_function(keyed_engine: Engine) -> None:
    plan = "\n".join(keyed_engine.run("EXPLAIN SELECT name FROM sales.customers", ALICE).read_all()["plan"].to_pylist())
    (used,) = {word.split("(")[0] for word in plan.split() if word.startswith("meshgate_mask_hash_")}
    # The name is new in every query's context: neither the prefix nor a name seen before resolves.
    for name in ("meshgate_mask_hash", used):
        with pytest.raises(PlanningError) as raised:
            keyed_engine.run(f"SELECT {name}('Ana Núñez 6') AS guess", ALICE).read_all()
        assert_no_key(str(raised.value))


def test_the_same_key_gives_the_same_values_and_another_key_others(
    governed_config: Path, keyed_engine: Engine, de_customers: dict[int, str]
) -> None:
    sql = "SELECT customer_id, name FROM sales.customers"
    first = names_by_id(keyed_engine.run(sql, ALICE).read_all())
    twin = Engine.from_config(load_config(governed_config), mask_key=bytes(KEY))
    other = Engine.from_config(load_config(governed_config), mask_key=OTHER_KEY)
    try:
        assert names_by_id(twin.run(sql, ALICE).read_all()) == first
        different = names_by_id(other.run(sql, ALICE).read_all())
        assert different == {c: keyed(n, OTHER_KEY) for c, n in de_customers.items()}
        assert all(different[c] != first[c] for c in first)
    finally:
        twin.close()
        other.close()


def test_an_engine_without_a_key_gets_a_random_one(governed_config: Path, keyed_engine: Engine) -> None:
    engine = Engine.from_config(load_config(governed_config))
    try:
        assert len(engine.mask_key) >= 32 and engine.mask_key != KEY
        sql = "SELECT customer_id, name FROM sales.customers ORDER BY customer_id LIMIT 3"
        assert engine.run(sql, ALICE).read_all() != keyed_engine.run(sql, ALICE).read_all()
    finally:
        engine.close()


EXPLAINED = [
    "EXPLAIN SELECT name FROM sales.customers",
    "EXPLAIN VERBOSE SELECT name FROM sales.customers WHERE name = 'Ana Núñez 6'",
    "EXPLAIN ANALYZE SELECT customer_id, name FROM sales.customers WHERE name LIKE '0%' AND customer_id > 3",
    "EXPLAIN SELECT c.name, count(*) AS n FROM sales.customers c JOIN sales.orders o USING (customer_id) GROUP BY 1",
]
FAILING = [
    "SELECT name + 1 FROM sales.customers",
    "SELECT CAST(name AS INT) AS n FROM sales.customers",
    "SELECT meshgate_mask_hash(name) FROM sales.customers",
    "SELECT name FROM sales.customers WHERE name = ",
    "SELECT nope FROM sales.customers",
]


def test_the_key_is_in_no_plan_error_audit_record_or_log(
    keyed_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    for sql in EXPLAINED:
        table = keyed_engine.run(sql, ALICE).read_all()
        outputs.extend(table["plan"].to_pylist())
    assert any("meshgate_mask_hash_" in text for text in outputs)
    for sql in FAILING:
        with pytest.raises(MeshgateError) as raised:
            keyed_engine.run(sql, ALICE).read_all()
        outputs.append(str(raised.value))
    # DataFusion's own renderings of the governed plan, in every form the binding offers.
    planned = keyed_engine._plan("SELECT name FROM sales.customers WHERE name <> 'x'", ALICE)
    outputs += [planned.plan.display_indent(), planned.plan.display_indent_schema(), planned.plan.display_graphviz()]
    outputs.append(str(planned.dataframe.execution_plan().display_indent()))
    log = keyed_engine.run('SELECT "sql", policies, error FROM system.query_log', USERS["root"]).read_all()
    outputs.append(str(log.to_pylist()))
    outputs.append(caplog.text)
    for text in outputs:
        assert_no_key(text)


def test_a_predicate_on_a_hashed_column_reaches_no_source(keyed_engine: Engine, de_customers: dict[int, str]) -> None:
    name = next(iter(de_customers.values()))
    escaped = name.replace("'", "''")
    for predicate in (f"name = '{escaped}'", f"name = '{keyed(name)}'", f"name IN ('{escaped}', 'x')"):
        execution = keyed_engine.run(
            f"SELECT customer_id FROM sales.customers WHERE {predicate} AND customer_id > 0", ALICE
        )
        execution.read_all()
        received = [record.sql for record in execution.source_queries]  # what PostgreSQL was sent
        assert received, predicate
        for sql in received:
            assert "'DE'" in sql and "> 0" in sql  # the row filter and the other conjunct are pushed
            assert name.split()[0] not in sql and keyed(name) not in sql and "mask_hash" not in sql


# -- through the client, against `meshgate serve` --------------------------------------------


@pytest.fixture(scope="module")
def keyed_gateway(governed_config: Path) -> Iterator[GatewayProcess]:
    """A gateway whose key comes from ``MESHGATE_MASK_KEY`` (hex)."""
    process = GatewayProcess(governed_config, credentials=credentials("root"), env={"MESHGATE_MASK_KEY": KEY.hex()})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key_file_gateway(governed_config: Path) -> Iterator[GatewayProcess]:
    """A second gateway over the same sources, its key (base64) in ``auth.mask_key_file``."""
    config = governed_config.parent / "config-with-mask-key"
    shutil.copytree(governed_config, config, dirs_exist_ok=True)
    (config / "mask.key").write_text(base64.b64encode(KEY).decode() + "\n")
    auth = config / "auth.yaml"
    auth.write_text(auth.read_text() + "  mask_key_file: mask.key\n")
    process = GatewayProcess(config, credentials=credentials("root"), env={"MESHGATE_MASK_KEY": ""})
    yield process
    process.stop()


def client_names(uri: str) -> dict[int, str]:
    return names_by_id(query(uri, "SELECT customer_id, name FROM sales.customers", credentials("alice")))


def test_through_the_client_the_hash_is_the_keyed_hmac(
    keyed_gateway: GatewayProcess, de_customers: dict[int, str]
) -> None:
    assert client_names(keyed_gateway.uri) == {c: keyed(n) for c, n in de_customers.items()}
    name = next(iter(de_customers.values())).replace("'", "''")
    sql = f"SELECT count(*) AS n FROM sales.customers WHERE name = encode(sha256('{name}'), 'hex')"
    assert query(keyed_gateway.uri, sql, credentials("alice")).column("n").to_pylist() == [0]
    for explain in EXPLAINED:
        plan = query(keyed_gateway.uri, explain, credentials("alice"))
        assert_no_key(str(plan.to_pylist()))
    assert not any("the hash mask uses a key generated" in line for line in keyed_gateway.startup_log)
    assert_no_key("".join(keyed_gateway.startup_log))


def test_two_gateways_with_the_same_key_agree_and_one_with_another_key_does_not(
    keyed_gateway: GatewayProcess, key_file_gateway: GatewayProcess, gateway: str
) -> None:
    assert client_names(key_file_gateway.uri) == client_names(keyed_gateway.uri)
    unkeyed = client_names(gateway)  # the package's gateway: a key generated at its start
    keyed_values = client_names(keyed_gateway.uri)
    assert unkeyed.keys() == keyed_values.keys()
    assert all(unkeyed[c] != keyed_values[c] for c in unkeyed)
