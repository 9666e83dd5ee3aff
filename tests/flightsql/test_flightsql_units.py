"""The small pure pieces of the Flight SQL layer."""

from __future__ import annotations

import doctest
import time

import pyarrow as pa
import pytest
from datafusion_test_engine import DataFusionEngine

from gateway.api import CallerContext
from gateway.errors import NotFoundError, ResourceLimitError
from gateway.flightsql import commands, handles, metadata, session, sql_info, statements, xdbc
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.statements import parameter_rows


@pytest.mark.parametrize("module", [commands, handles, metadata, session, sql_info, statements, xdbc])
def test_docstring_examples(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried > 0 and failures == 0


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        (None, ["", "anything"], []),
        ("%", ["", "x", "a.b"], []),
        ("sales", ["sales"], ["Sales", "sales2", "xsales"]),
        ("sal_s", ["sales", "salts"], ["sals", "salees"]),
        ("%_eu", ["sales_eu", "xeu"], ["eu"]),
        ("a\\_b", ["a_b"], ["axb"]),
        ("100\\%", ["100%"], ["1000"]),
        ("a.*b", ["a.*b"], ["aXXb", "ab"]),
        ("line\nbreak%", ["line\nbreak!"], []),
        ("trailing\\", ["trailing\\"], ["trailing"]),
    ],
)
def test_like_matcher(pattern: str | None, matching: list[str], not_matching: list[str]) -> None:
    matches = metadata.like_matcher(pattern)
    assert [name for name in matching if not matches(name)] == []
    assert [name for name in not_matching if matches(name)] == []


def test_registry_releases_what_it_drops_but_not_what_it_hands_out() -> None:
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "statement", maxsize=2, ttl=60, release=released.append
    )
    a, b = registry.add("a"), registry.add("b")
    assert len({a, b}) == 2 and len(a) == handles.HANDLE_BYTES

    registry.get(a)  # a is now the most recently used
    registry.add("c")  # evicts b
    assert released == ["b"]
    assert registry.pop(a) == "a"
    assert released == ["b"]
    assert registry.discard(a) is False
    with pytest.raises(NotFoundError, match="unknown or expired statement handle"):
        registry.get(b)
    assert len(registry) == 1


def test_registry_entries_expire_after_their_last_use() -> None:
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "prepared statement", maxsize=10, ttl=0.2, release=released.append
    )
    kept, dropped = registry.add("kept"), registry.add("dropped")
    for _ in range(3):
        time.sleep(0.1)
        registry.get(kept)
    registry.add("new")  # mutations purge what expired

    assert released == ["dropped"]
    assert registry.get(kept) == "kept"
    with pytest.raises(NotFoundError):
        registry.get(dropped)


def test_registry_entries_hold_at_most_max_bytes_together() -> None:
    """Ten entries of up to 100 bytes each, or fewer larger ones: 1,000 bytes in all."""
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "prepared statement", maxsize=10, ttl=60, release=released.append, size=len, max_bytes=1000
    )
    small = [registry.add(f"{i}") for i in range(10)]
    assert len(registry) == 10 and released == []
    large = registry.add("x" * 400)  # the room of four: the four least recently used go
    assert released == ["0", "1", "2", "3"]
    assert registry.get(small[4]) == "4" and registry.get(large) == "x" * 400
    huge = registry.add("y" * 5000)  # more than all: it alone is kept
    assert len(registry) == 1 and registry.get(huge) == "y" * 5000
    with pytest.raises(NotFoundError):
        registry.get(large)


def test_registry_makes_room_from_the_owner_who_holds_the_most() -> None:
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "statement", maxsize=4, ttl=60, release=released.append, owner=lambda value: value[0]
    )
    b1 = registry.add("b1")
    flood = [registry.add(f"a{i}") for i in range(6)]  # a owns the most: its oldest go, b1 stays
    assert released == ["a0", "a1", "a2"]
    assert registry.get(b1) == "b1" and registry.get(flood[-1]) == "a5"
    b2 = registry.add("b2")  # b would hold 2 beside a's 3: a's oldest goes
    assert released == ["a0", "a1", "a2", "a3"]
    b3 = registry.add("b3")  # b would hold the most: its own oldest goes
    assert released == ["a0", "a1", "a2", "a3", "b1"]
    assert [registry.get(h) for h in (b2, b3, flood[-1])] == ["b2", "b3", "a5"]


def test_registry_makes_room_from_an_owner_whose_entries_all_expired_unseen() -> None:
    """Expired entries are released at most once an interval (here never, but by the room they are
    asked for): making room from them releases them all, and the new entry fits."""
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "statement", maxsize=3, ttl=0.1, release=released.append, owner=lambda value: value[0]
    )
    registry._expiry_interval = 3600.0
    registry.add("b1"), registry.add("b2")
    time.sleep(0.2)
    kept = [registry.add("a1"), registry.add("a2")]
    assert sorted(released) == ["b1", "b2"] and [registry.get(h) for h in kept] == ["a1", "a2"]


def test_registry_refuses_an_entry_that_only_fits_by_dropping_smaller_owners() -> None:
    released: list[str] = []
    registry: handles.HandleRegistry[str] = handles.HandleRegistry(
        "prepared statement",
        maxsize=10,
        ttl=60,
        release=released.append,
        size=len,
        max_bytes=1000,
        owner=lambda value: value[0],
    )
    small = [registry.add(f"b{i}" + "." * 98) for i in range(3)]  # b holds 300 bytes
    with pytest.raises(ResourceLimitError, match="does not fit beside the ones other users hold"):
        registry.add("a" * 800)
    assert released == ["a" * 800] and len(registry) == 3
    fits = registry.add("a" * 700)
    assert len(registry) == 4 and registry.get(fits) == "a" * 700
    assert [registry.get(h)[:2] for h in small] == ["b0", "b1", "b2"]
    registry.add("a" * 300)  # a holds the most: its own entry makes room
    assert released == ["a" * 800, "a" * 700] and len(registry) == 4


def test_statements_waiting_for_their_client_hold_bounded_text(
    engine: DataFusionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found 2026-12-05: counted alone, any user could hold 10 GiB in 10,000 prepared statements of 1 MiB."""
    monkeypatch.setattr(statements, "HELD_BYTES", 4 << 20)
    held = statements.Statements(engine, ttl=60, maxsize=1000)
    try:
        text = "SELECT '" + "x" * (1 << 20) + "'"
        handles_ = [held.prepare(text, CallerContext(user="u"))[0] for _ in range(12)]
        assert len(held._prepared) == 3  # 4 MiB of text, not 12
        held.prepared(handles_[-1], CallerContext(user="u"))
        with pytest.raises(NotFoundError):
            held.prepared(handles_[0], CallerContext(user="u"))
        # Bound rows weigh too: 2 MiB of parameters on a small statement leave room for one more.
        small, _query = held.prepare("SELECT $1 AS x", CallerContext(user="u"))
        rows = pa.record_batch([pa.array(["y" * (1 << 20)] * 2)], names=["$1"])
        held.bind(small, CallerContext(user="u"), [rows])
        assert len(held._prepared) == 2
        assert held.prepared(small, CallerContext(user="u")).parameters is not None
    finally:
        held.shutdown()


def test_a_failing_release_does_not_fail_the_caller() -> None:
    def release(_value: str) -> None:
        raise RuntimeError("cannot close")

    registry: handles.HandleRegistry[str] = handles.HandleRegistry("statement", maxsize=1, ttl=60, release=release)
    registry.add("a")
    handle = registry.add("b")  # evicting "a" fails quietly
    assert registry.get(handle) == "b"
    assert registry.discard(handle) is True


def test_parameter_rows_become_one_execution_each() -> None:
    first = pa.record_batch({"a": [1, 2]})
    second = pa.record_batch({"a": [3]})

    assert parameter_rows(None) == [None]
    assert parameter_rows([]) == []
    assert [row.to_pylist() for row in parameter_rows([first, second])] == [[{"a": 1}], [{"a": 2}], [{"a": 3}]]


def test_sql_info_values_land_in_the_right_union_member() -> None:
    values: dict[int, sql_info.SqlInfoValue] = {
        1: "text",
        2: True,
        3: 7,
        4: sql_info.Int32(5),
        5: ["a", "b"],
        6: {1: [2, 3]},
    }
    table = sql_info.sql_info_table(values)
    table.validate(full=True)
    column = table.column("value").chunk(0)

    assert column.type_codes.to_pylist() == [0, 1, 2, 3, 4, 5]
    assert table.column("value").to_pylist() == ["text", True, 7, 5, ["a", "b"], [(1, [2, 3])]]
    assert sql_info.bits(pb.SQL_UNION, pb.SQL_UNION_ALL) == sql_info.Int32(3)


def test_every_declared_xdbc_type_names_a_known_type_code() -> None:
    codes = set(pb.XdbcDataType.values())
    assert all(t.data_type in codes and t.row()["sql_data_type"] in codes for t in xdbc.TYPES)
    names = {t.type_name for t in xdbc.TYPES}
    for data_type in (pa.int16(), pa.float32(), pa.string(), pa.binary(), pa.date32(), pa.timestamp("ms")):
        assert xdbc.sql_type_name(data_type) in names
