"""The config contract: what loads, and the precise errors for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return write(tmp_path / "sales.db", "")


def test_single_file_with_all_contract_keys(tmp_path: Path, sqlite_file: Path) -> None:
    config = load_config(
        write(
            tmp_path / "mesh.yaml",
            """
catalog: corp
domains:
  - name: sales
    owner: sales-team
    description: Orders and customers
    connector:
      type: postgres
      uri: postgresql://user:secret@127.0.0.1:5432/test
    products:
      - name: orders
        source: public.orders
        description: One row per order
      - name: big_customers
        sql: SELECT * FROM public.customers WHERE lifetime_value > 1000
  - name: finance
    connector: {type: sqlite, path: sales.db}
""",
        )
    )
    assert config.catalog == "corp"
    sales, finance = config.domains
    assert sales.owner == "sales-team"
    assert sales.connector.uri == "postgresql://user:secret@127.0.0.1:5432/test"
    assert sales.connector.location == "postgresql://user:***@127.0.0.1:5432/test"
    assert sales.products is not None
    assert [p.name for p in sales.products] == ["orders", "big_customers"]
    assert sales.products[1].sql is not None and sales.products[1].source is None
    assert finance.products is None
    assert finance.connector.path == sqlite_file.resolve()


def test_directory_merges_one_file_per_domain(tmp_path: Path, sqlite_file: Path) -> None:
    write(tmp_path / "a.yaml", "domains:\n  - name: sales\n    connector: {type: sqlite, path: sales.db}\n")
    write(tmp_path / "b.yml", "catalog: mesh\ndomains:\n  - name: hr\n    connector: {type: sqlite, path: sales.db}\n")
    write(tmp_path / "notes.txt", "not yaml at all: [")
    config = load_config(tmp_path)
    assert [d.name for d in config.domains] == ["sales", "hr"]
    assert config.catalog == "mesh"
    assert config.domains[0].file.name == "a.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("domains:\n  - name: sales\n    conector: {}\n", r"mesh.yaml:2: domain 'sales': conector: unknown key"),
        (
            "domains:\n  - name: sales\n    connector: {type: postgress, uri: x}\n",
            r"domain 'sales': connector.type: unknown connector type 'postgress'; expected one of csv, .*postgres, sqlite",
        ),
        (
            "domains:\n  - name: sales\n    connector: {type: sqlite, path: missing.db}\n",
            r"domain 'sales': connector.path: 'missing.db' does not exist",
        ),
        ("domains:\n  - name: sales\n", r"domain 'sales': connector: missing"),
        (
            "domains:\n  - name: sales\n    connector: {type: postgres}\n",
            r"domain 'sales': connector.uri: missing",
        ),
        (
            "domains:\n  - name: sales\n    connector: {type: postgres, uri: x, path: y}\n",
            r"domain 'sales': connector.path: unknown key",
        ),
        (
            "domains:\n  - name: Sales Team\n    connector: {type: postgres, uri: x}\n",
            r"domains\[0\].name: 'Sales Team' is not a valid name",
        ),
        (
            "domains:\n  - name: sales\n    connector: {type: postgres, uri: x}\n"
            "    products:\n      - {name: a, source: t}\n      - {name: a, source: u}\n",
            r"mesh.yaml:6: domain 'sales': products.a.name: duplicate product name",
        ),
        (
            "domains:\n  - name: sales\n    connector: {type: postgres, uri: x}\n    products:\n      - {name: a}\n",
            r"domain 'sales': products.a: declare exactly one of 'source'",
        ),
        (
            "domains:\n  - name: sales\n    connector: {type: postgres, uri: x}\n"
            "    products:\n      - {name: a, source: t, sql: select 1}\n",
            r"products.a: declare exactly one of",
        ),
        ("domains: {name: sales}\n", r"mesh.yaml:1: domains: must be a list"),
        ("catalog: mesh\n", r"domains: missing"),
        ("- just\n- a list\n", r"expected a mapping with a 'domains' list"),
        ("domains:\n  - name: sales\n    connector: {type: [\n", r"mesh.yaml:\d+:\d+: invalid YAML"),
        ("domains: []\n", r"no domains declared"),
        ("catalog: 3\ndomains: []\n", r"catalog: must be a string"),
    ],
)
def test_bad_config_names_file_domain_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path / "mesh.yaml", text))


def test_csv_options_and_file_products_without_sql(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    good = load_config(
        write(
            tmp_path / "mesh.yaml",
            "domains:\n  - name: ref\n    connector: {type: csv, path: data, delimiter: ';', has_header: true}\n",
        )
    )
    assert dict(good.domains[0].connector.options) == {"delimiter": ";", "has_header": True}
    with pytest.raises(ConfigError, match=r"products.x.sql: a csv source has no SQL dialect"):
        load_config(
            write(
                tmp_path / "mesh.yaml",
                "domains:\n  - name: ref\n    connector: {type: csv, path: data}\n"
                "    products:\n      - {name: x, sql: select 1}\n",
            )
        )


def test_duplicate_domain_across_files(tmp_path: Path, sqlite_file: Path) -> None:
    write(tmp_path / "a.yaml", "domains:\n  - name: sales\n    connector: {type: sqlite, path: sales.db}\n")
    write(tmp_path / "b.yaml", "domains:\n  - name: sales\n    connector: {type: sqlite, path: sales.db}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: domain 'sales': name: duplicate domain, already declared in .*a"):
        load_config(tmp_path)


def test_conflicting_catalog_names(tmp_path: Path, sqlite_file: Path) -> None:
    write(tmp_path / "a.yaml", "catalog: one\ndomains:\n  - name: a\n    connector: {type: sqlite, path: sales.db}\n")
    write(tmp_path / "b.yaml", "catalog: two\ndomains:\n  - name: b\n    connector: {type: sqlite, path: sales.db}\n")
    with pytest.raises(ConfigError, match=r"b.yaml: catalog: 'two' differs from 'one'"):
        load_config(tmp_path)


def test_yaml_booleans_are_only_true_and_false(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = load_config(
        write(
            tmp_path / "mesh.yaml",
            "domains:\n  - name: ref\n    connector: {type: csv, path: data, has_header: true, delimiter: no}\n",
        )
    )
    assert dict(config.domains[0].connector.options) == {"has_header": True, "delimiter": "no"}


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"no \*.yaml or \*.yml files"):
        load_config(tmp_path)


def test_postgres_partition_options_are_connector_keys(tmp_path: Path) -> None:
    """Documented in README (parallel PostgreSQL reads); the config once refused them as unknown keys."""
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: sales\n    connector: {type: postgres, uri: 'postgresql://h/db',"
        " max_partitions: 1, partition_pages: 2000}\n"
    )
    (domain,) = load_config(tmp_path / "mesh.yaml").domains
    assert domain.connector.options == {"max_partitions": 1, "partition_pages": 2000}
