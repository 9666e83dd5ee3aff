"""Schema contracts on SQLite and Parquet products: drift flagged or blocked, seen in discovery."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import ColumnContract, load_config
from gateway.contracts import Drift, check_contract, parse_type
from gateway.engine import Engine
from gateway.errors import ContractError

# --------------------------------------------------------------------------- types and comparison


@pytest.mark.parametrize(
    "kind",
    [
        pa.int8(),
        pa.int64(),
        pa.uint32(),
        pa.float16(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.large_string(),
        pa.binary(),
        pa.date32(),
        pa.date64(),
        pa.time32("ms"),
        pa.time64("us"),
        pa.timestamp("us"),
        pa.timestamp("ns", tz="Europe/Paris"),
        pa.decimal128(12, 2),
        pa.decimal256(50, 4),
        pa.list_(pa.string()),
        pa.large_list(pa.int32()),
        pa.duration("s"),
    ],
)
def test_arrow_type_text_round_trips(kind: pa.DataType) -> None:
    assert parse_type(str(kind)) == kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("int64", pa.int64()),
        ("utf8", pa.string()),
        ("boolean", pa.bool_()),
        ("float64", pa.float64()),
        ("decimal(12,2)", pa.decimal128(12, 2)),
        ("DECIMAL( 40 , 3 )", pa.decimal256(40, 3)),
        ("timestamp[us, tz=UTC]", pa.timestamp("us", tz="UTC")),
        ("timestamp[ms]", pa.timestamp("ms")),
        ("date32", pa.date32()),
        ("list<string>", pa.list_(pa.string())),
    ],
)
def test_arrow_type_aliases(text: str, kind: pa.DataType) -> None:
    assert parse_type(text) == kind


@pytest.mark.parametrize("text", ["integer64", "decimal(12)", "timestamp[minutes]", "list<nope>", ""])
def test_unknown_type_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not an Arrow type"):
        parse_type(text)


def test_drift_is_a_missing_column_or_a_changed_type_never_an_extra_column() -> None:
    declared = (
        ColumnContract("id", pa.int64()),
        ColumnContract("total", pa.decimal128(12, 2)),
        ColumnContract("gone", pa.string()),
    )
    live = pa.schema([("id", pa.int64()), ("total", pa.string()), ("extra", pa.bool_())])
    drift = check_contract(declared, live)
    assert drift == (
        Drift("type_changed", "total", "decimal128(12, 2)", "string"),
        Drift("missing", "gone", "string"),
    )
    assert [str(d) for d in drift] == [
        "column 'total' changed type: declared decimal128(12, 2), found string",
        "column 'gone' is missing (declared string)",
    ]
    assert check_contract(declared[:1], live) == ()
    assert check_contract(None, live) == ()


# --------------------------------------------------------------------------- through the engine

SHOP = """domains:
  - name: shop
    owner: shop-team
    connector: {type: sqlite, path: shop.db}
    products:
      - name: items
        source: items
        description: Everything we sell
        owner: catalogue-team
        tags: [catalogue, gold]
        version: "2.1.0"
        primary_key: [id]
        columns:
          - {name: id, type: int64, description: Item number}
          - {name: name, type: string, description: What it is called, tags: [public]}
          - {name: price, type: "decimal(10,2)"}
      - name: items_flagged
        source: items
        columns:
          - {name: id, type: int64}
          - {name: colour, type: string}
      - name: items_blocked
        source: items
        on_drift: block
        columns:
          - {name: id, type: int64}
          - {name: colour, type: string}
      - name: items_retyped
        source: items
        on_drift: block
        columns:
          - {name: id, type: string}
  - name: ship
    connector: {type: parquet, path: ship}
    products:
      - name: parcels
        source: parcels.parquet
        on_drift: flag
        columns:
          - {name: parcel_id, type: int64}
          - {name: weight, type: double}
"""

PLATFORM = """policies:
  roles:
    analyst: [alice]
  grants:
    - {role: analyst, on: "*"}
"""

ALICE = CallerContext(user="alice")


@pytest.fixture(params=["open", "governed"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """The shop mesh, without policies and with a platform policy (governed views)."""
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price DECIMAL(10,2), stock INTEGER)")
        connection.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", [(1, "pen", 1.5, 10), (2, "ink", 7.25, 0)])
    (tmp_path / "ship").mkdir()
    pq.write_table(
        pa.table({"parcel_id": [1, 2, 3], "weight": [0.5, 1.25, 3.0]}), tmp_path / "ship" / "parcels.parquet"
    )
    (tmp_path / "shop.yaml").write_text(SHOP)
    if request.param == "governed":
        (tmp_path / "platform.yaml").write_text(PLATFORM)
    engine = Engine.from_config(load_config(tmp_path))
    yield engine, tmp_path
    engine.close()


def rows(engine: Engine, sql: str) -> list[dict[str, object]]:
    return engine.run(sql, ALICE).read_all().to_pylist()


def test_a_matching_contract_serves_with_its_metadata(mesh: tuple[Engine, Path]) -> None:
    engine, _ = mesh
    assert rows(engine, "SELECT id, name, price, stock FROM shop.items ORDER BY id")[0]["name"] == "pen"
    (items,) = rows(
        engine,
        "SELECT owner, description, tags, version, status, drift, columns FROM system.products WHERE product = 'items'",
    )
    assert items == {
        "owner": "catalogue-team",
        "description": "Everything we sell",
        "tags": ["catalogue", "gold"],
        "version": "2.1.0",
        "status": "ok",
        "drift": [],
        "columns": 4,
    }
    columns = rows(
        engine,
        "SELECT column, type, description, tags, declared_type, in_contract FROM system.columns"
        " WHERE product = 'items' ORDER BY ordinal",
    )
    assert columns == [
        {
            "column": "id",
            "type": "int64",
            "description": "Item number",
            "tags": [],
            "declared_type": "int64",
            "in_contract": True,
        },
        {
            "column": "name",
            "type": "string",
            "description": "What it is called",
            "tags": ["public"],
            "declared_type": "string",
            "in_contract": True,
        },
        {
            "column": "price",
            "type": "decimal128(10, 2)",
            "description": None,
            "tags": [],
            "declared_type": "decimal128(10, 2)",
            "in_contract": True,
        },
        # a column the contract does not name is allowed, and shown as such
        {
            "column": "stock",
            "type": "int64",
            "description": None,
            "tags": [],
            "declared_type": None,
            "in_contract": False,
        },
    ]


def test_product_metadata_rides_in_the_table_schema(mesh: tuple[Engine, Path]) -> None:
    engine, _ = mesh
    schemas = {(p.domain, p.name): p.schema for p in engine.products(ALICE)}
    items = schemas[("shop", "items")]
    assert items.metadata is not None
    assert {k: v for k, v in items.metadata.items() if k.startswith(b"meshgate.")} == {
        b"meshgate.product": b"shop.items",
        b"meshgate.description": b"Everything we sell",
        b"meshgate.owner": b"catalogue-team",
        b"meshgate.tags": b"catalogue,gold",
        b"meshgate.version": b"2.1.0",
        b"meshgate.status": b"ok",
    }
    assert items.field("name").metadata == {b"meshgate.description": b"What it is called", b"meshgate.tags": b"public"}
    assert items.field("stock").metadata is None
    flagged = schemas[("shop", "items_flagged")].metadata or {}
    assert flagged[b"meshgate.status"] == b"flagged"
    assert flagged[b"meshgate.drift"] == b"column 'colour' is missing (declared string)"
    assert flagged[b"meshgate.owner"] == b"shop-team"  # the domain's, when the product names none


def test_flagged_products_serve_and_show_their_drift(mesh: tuple[Engine, Path]) -> None:
    engine, _ = mesh
    assert [r["id"] for r in rows(engine, "SELECT id FROM shop.items_flagged ORDER BY id")] == [1, 2]
    (flagged,) = rows(engine, "SELECT status, drift FROM system.products WHERE product = 'items_flagged'")
    assert flagged == {"status": "flagged", "drift": ["column 'colour' is missing (declared string)"]}
    (parcels,) = rows(engine, "SELECT status, drift FROM system.products WHERE product = 'parcels'")
    assert parcels == {"status": "ok", "drift": []}


@pytest.mark.parametrize(
    ("sql", "drift"),
    [
        ("SELECT * FROM shop.items_blocked", r"column 'colour' is missing \(declared string\)"),
        ("SELECT count(*) FROM shop.items_retyped", r"column 'id' changed type: declared string, found int64"),
        (
            "SELECT i.name FROM shop.items i JOIN shop.items_blocked b ON b.id = i.id",
            r"column 'colour' is missing",
        ),
        ("SELECT * FROM (SELECT id FROM shop.items_retyped) t", r"column 'id' changed type"),
    ],
)
def test_blocked_products_refuse_queries_naming_the_drift(mesh: tuple[Engine, Path], sql: str, drift: str) -> None:
    engine, folder = mesh
    with pytest.raises(
        ContractError, match=r"data product 'shop\.items_(blocked|retyped)' is blocked: .*" + drift
    ) as e:
        engine.run(sql, ALICE)
    assert f"on_drift: block in {folder / 'shop.yaml'}:" in str(e.value)


def test_blocked_products_stay_visible_in_discovery(mesh: tuple[Engine, Path]) -> None:
    engine, _ = mesh
    listed = rows(engine, "SELECT product, status FROM system.products WHERE domain = 'shop' ORDER BY product")
    assert listed == [
        {"product": "items", "status": "ok"},
        {"product": "items_blocked", "status": "blocked"},
        {"product": "items_flagged", "status": "flagged"},
        {"product": "items_retyped", "status": "blocked"},
    ]
    assert ("shop", "items_blocked") in {(p.domain, p.name) for p in engine.products(ALICE)}
    # information_schema lists only what can be queried, and listing it does not fail
    tables = rows(engine, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop'")
    assert sorted(str(t["table_name"]) for t in tables) == ["items", "items_flagged"]
    assert rows(engine, "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = 'shop'") == [
        {"n": 8}  # items and items_flagged, four columns each
    ]


def test_refresh_finds_a_source_that_came_back_to_its_contract(mesh: tuple[Engine, Path]) -> None:
    engine, folder = mesh
    with sqlite3.connect(folder / "shop.db") as connection:
        connection.execute("ALTER TABLE items ADD COLUMN colour TEXT")
        connection.execute("UPDATE items SET colour = 'blue'")
    with pytest.raises(ContractError):
        engine.run("SELECT * FROM shop.items_blocked", ALICE)  # nothing changes until the domain is read again
    engine.refresh("shop")
    assert rows(engine, "SELECT colour FROM shop.items_blocked") == [{"colour": "blue"}] * 2
    assert rows(engine, "SELECT status FROM system.products WHERE product = 'items_blocked'") == [{"status": "ok"}]


def test_refresh_flags_a_parquet_file_whose_type_changed(mesh: tuple[Engine, Path]) -> None:
    engine, folder = mesh
    pq.write_table(
        pa.table({"parcel_id": [1, 2, 3, 4], "weight": ["light", "light", "heavy", "heavy"]}),
        folder / "ship" / "parcels.parquet",
    )
    engine.refresh("ship")
    (parcels,) = rows(engine, "SELECT status, drift FROM system.products WHERE product = 'parcels'")
    assert parcels == {"status": "flagged", "drift": ["column 'weight' changed type: declared double, found string"]}
    # flagged: still served, with the new file's rows and types
    assert rows(engine, "SELECT count(*) AS n, max(weight) AS w FROM ship.parcels") == [{"n": 4, "w": "light"}]


def test_meshgate_check_lists_the_drift(mesh: tuple[Engine, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    _, folder = mesh
    assert main(["check", "--config", str(folder)]) == 1  # a blocked product fails the check; flagged drift does not
    out = capsys.readouterr().out
    assert "5 products: 2 ok, 1 flagged, 2 blocked" in out, out
    assert "shop.items_blocked: 4 columns\n           BLOCKED: column 'colour' is missing (declared string)\n" in out
    assert "shop.items_flagged: 4 columns\n           FLAGGED: column 'colour' is missing (declared string)\n" in out
    assert "shop.items: 4 columns - Everything we sell\n" in out
