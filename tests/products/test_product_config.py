"""Product metadata in the mesh config: what loads, and the precise errors for what does not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from gateway.config import CheckConfig, ColumnContract, Freshness, load_config, parse_duration
from gateway.errors import ConfigError

PRODUCT = """domains:
  - name: sales
    owner: sales-team
    connector: {type: sqlite, path: sales.db}
    products:
      - name: orders
        source: orders
"""


def write_mesh(tmp_path: Path, product_keys: str) -> Path:
    (tmp_path / "sales.db").write_text("")
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(PRODUCT + product_keys)
    return mesh


def test_every_metadata_key(tmp_path: Path) -> None:
    config = load_config(
        write_mesh(
            tmp_path,
            """        description: One row per order
        owner: order-desk
        tags: [finance, gold]
        version: "1.2.0"
        freshness: {max_age: 24h, column: updated_at}
        primary_key: [order_id]
        on_drift: block
        columns:
          - {name: order_id, type: int64, description: The order's number}
          - {name: email, type: string, tags: [pii]}
          - {name: total, type: "decimal(12,2)"}
          - {name: updated_at, type: "timestamp[us, tz=UTC]"}
        checks:
          - unique: [order_id]
          - not_null: email
            max_null_ratio: 0.25
          - row_count: {min: 1, max: 1000000}
          - name: no_negative_totals
            sql: SELECT order_id FROM sales.orders WHERE total < 0
""",
        )
    )
    (sales,) = config.domains
    assert sales.products is not None
    (orders,) = sales.products
    assert (orders.owner, orders.tags, orders.version, orders.on_drift) == (
        "order-desk",
        ("finance", "gold"),
        "1.2.0",
        "block",
    )
    assert orders.freshness == Freshness(dt.timedelta(hours=24), "updated_at")
    assert orders.primary_key == ("order_id",)
    assert orders.columns == (
        ColumnContract("order_id", pa.int64(), "The order's number"),
        ColumnContract("email", pa.string(), tags=("pii",)),
        ColumnContract("total", pa.decimal128(12, 2)),
        ColumnContract("updated_at", pa.timestamp("us", tz="UTC")),
    )
    assert orders.checks == (
        CheckConfig("unique", "unique(order_id)", columns=("order_id",)),
        CheckConfig("not_null", "not_null(email)", columns=("email",), max_null_ratio=0.25),
        CheckConfig("row_count", "row_count", min_rows=1, max_rows=1_000_000),
        CheckConfig("sql", "no_negative_totals", sql="SELECT order_id FROM sales.orders WHERE total < 0"),
        # the product's freshness expectation is checked too
        CheckConfig("freshness", "freshness", freshness=Freshness(dt.timedelta(hours=24), "updated_at")),
    )
    assert orders.origin == f"{tmp_path / 'mesh.yaml'}:6"


def test_defaults_owner_from_the_domain_and_flags_drift(tmp_path: Path) -> None:
    (sales,) = load_config(write_mesh(tmp_path, "        columns: [{name: id, type: int64}]\n")).domains
    assert sales.products is not None
    (orders,) = sales.products
    assert (orders.owner, orders.on_drift, orders.tags, orders.checks) == ("sales-team", "flag", (), ())


# Each case: the product's extra YAML, and the error (file:line: domain: field: message).
INVALID = {
    "unknown_key": ("        owners: [a]\n", r"mesh.yaml:6: domain 'sales': products.orders.owners: unknown key"),
    "version_not_quoted": (
        "        version: 1.2\n",
        r":6: .*products.orders.version: must be a quoted semantic version",
    ),
    "version_not_semver": ('        version: "v1"\n', r"products.orders.version: must be a quoted semantic version"),
    "tags_not_a_list": ("        tags: pii\n", r"products.orders.tags: must be a list of tags"),
    "bad_tag": ("        tags: [PII]\n", r"products.orders.tags: 'PII' is not a valid tag"),
    "on_drift_unknown": (
        "        on_drift: stop\n        columns: [{name: id, type: int64}]\n",
        r"products.orders.on_drift: must be one of flag, block, got 'stop'",
    ),
    "on_drift_without_contract": ("        on_drift: block\n", r"on_drift: there is no contract to drift from"),
    "columns_empty": ("        columns: []\n", r"products.orders.columns: must be a non-empty list"),
    "column_without_type": (
        "        columns:\n          - {name: id}\n",
        r"mesh.yaml:9: domain 'sales': products.orders.columns.id.type: missing",
    ),
    "column_bad_type": (
        "        columns:\n          - {name: id, type: integer64}\n",
        r":9: .*products.orders.columns.id.type: 'integer64' is not an Arrow type",
    ),
    "column_twice": (
        "        columns:\n          - {name: id, type: int64}\n          - {name: id, type: string}\n",
        r":10: .*products.orders.columns.id.name: declared twice",
    ),
    "column_unknown_key": (
        "        columns:\n          - {name: id, type: int64, nullable: false}\n",
        r"products.orders.columns.id.nullable: unknown key",
    ),
    "primary_key_not_in_contract": (
        "        primary_key: [order_id]\n        columns: [{name: id, type: int64}]\n",
        r"products.orders.primary_key: column 'order_id' is not in the product's columns \(id\)",
    ),
    "freshness_as_text": (
        "        freshness: 24h\n",
        r"products.orders.freshness: must be a mapping with max_age and the column",
    ),
    "freshness_bad_duration": (
        "        freshness: {max_age: a day, column: ts}\n",
        r"products.orders.freshness.max_age: 'a day' is not a duration",
    ),
    "freshness_zero": ("        freshness: {max_age: 0h, column: ts}\n", r"freshness.max_age: '0h' is no time at all"),
    "freshness_of_a_number": (
        "        freshness: {max_age: 1h, column: id}\n        columns: [{name: id, type: int64}]\n",
        r"products.orders.freshness.column: column 'id' is int64: freshness needs a timestamp or date column",
    ),
    "checks_not_a_list": ("        checks: {unique: id}\n", r"products.orders.checks: must be a list of checks"),
    "check_two_kinds": (
        "        checks:\n          - {unique: [id], not_null: id}\n",
        r":9: .*products.orders.checks\[0\]: declare exactly one of unique, not_null, freshness, row_count, sql",
    ),
    "check_unknown_kind": ("        checks:\n          - {distinct: id}\n", r"checks\[0\].distinct: unknown key"),
    "check_column_not_in_contract": (
        "        columns: [{name: id, type: int64}]\n        checks:\n          - {unique: [idd]}\n",
        r"checks\[0\].unique: column 'idd' is not in the product's columns",
    ),
    "not_null_of_two_columns": (
        "        checks:\n          - {not_null: [a, b]}\n",
        r"checks\[0\].not_null: must be one column name",
    ),
    "null_ratio_out_of_range": (
        "        checks:\n          - {not_null: a, max_null_ratio: 2}\n",
        r"checks\[0\].max_null_ratio: must be a number from 0 to 1, got 2",
    ),
    "null_ratio_on_unique": (
        "        checks:\n          - {unique: [a], max_null_ratio: 0.1}\n",
        r"checks\[0\].max_null_ratio: only applies to a not_null check",
    ),
    "row_count_without_bounds": (
        "        checks:\n          - {row_count: {}}\n",
        r"row_count: must be a mapping with min",
    ),
    "row_count_negative": ("        checks:\n          - {row_count: {min: -1}}\n", r"row_count.min: must be a whole"),
    "row_count_min_above_max": (
        "        checks:\n          - {row_count: {min: 5, max: 1}}\n",
        r"row_count: min \(5\) is greater than max \(1\)",
    ),
    "sql_without_name": (
        "        checks:\n          - {sql: SELECT 1}\n",
        r"checks\[0\].name: missing: a sql check needs a name",
    ),
    "sql_invalid": (
        "        checks:\n          - {name: x, sql: 'SELECT FROM WHERE ('}\n",
        r"checks\[0\].sql: not a valid SQL query",
    ),
    "freshness_check_name_taken": (
        "        freshness: {max_age: 1h, column: ts}\n        checks:\n          - {name: freshness, row_count: {min: 1}}\n",
        r":6: .*products.orders.checks: 'freshness' names the product's own freshness check",
    ),
    "duplicate_check_names": (
        "        checks:\n          - {unique: [a]}\n          - {unique: [a]}\n",
        r":10: .*checks\[1\].name: two checks are named 'unique\(a\)'",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_metadata_is_refused_with_its_location(tmp_path: Path, case: str) -> None:
    keys, message = INVALID[case]
    with pytest.raises(ConfigError, match=message):
        load_config(write_mesh(tmp_path, keys))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600), ("1h30m", 5400), ("1H 5M", 3900)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "1y", "-1h", "0s"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|no time"):
        parse_duration(text)
