"""Result formatting: the text table, and streaming CSV, JSON lines and Parquet."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from gateway.output import _display_width, format_table, write_result

UTC = dt.UTC

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("amount", pa.decimal128(12, 2)),
        pa.field("signed_up", pa.date32()),
        pa.field("seen_at", pa.timestamp("us", tz="UTC")),
        pa.field("score", pa.float64()),
        pa.field("active", pa.bool_()),
    ]
)


def people() -> pa.Table:
    return pa.table(
        {
            "id": [1, 22, None],
            "name": ["Zoë", "Łukasz O'Brien", None],
            "amount": [Decimal("1234.50"), None, Decimal("-0.05")],
            "signed_up": [dt.date(2024, 1, 2), dt.date(2023, 12, 31), None],
            "seen_at": [dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC), None, None],
            "score": [0.5, None, 12.25],
            "active": [True, False, None],
        },
        schema=SCHEMA,
    )


class Events:
    """Records, in order, which batches a source produced and when output was written."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def reader(self, table: pa.Table, batch_rows: int) -> pa.RecordBatchReader:
        def batches() -> Iterator[pa.RecordBatch]:
            for index, batch in enumerate(table.to_batches(max_chunksize=batch_rows)):
                self.log.append(f"batch {index}")
                yield batch

        return pa.RecordBatchReader.from_batches(table.schema, batches())

    def stream(self) -> io.StringIO:
        log = self.log

        class Stream(io.StringIO):
            def write(self, text: str) -> int:
                log.append("write")
                return super().write(text)

        return Stream()


def numbered(rows: int) -> pa.Table:
    return pa.table({"n": pa.array(range(rows), pa.int64()), "label": [f"row {i}" for i in range(rows)]})


# --- format_table ---------------------------------------------------------------------


def test_table_aligns_numbers_right_and_shows_null() -> None:
    assert format_table(people()) == "\n".join(
        [
            "  id | name           |  amount | signed_up  | seen_at                     | score | active",
            "-----+----------------+---------+------------+-----------------------------+-------+-------",
            "   1 | Zoë            | 1234.50 | 2024-01-02 | 2024-01-02 03:04:05.123000Z |   0.5 | true",
            "  22 | Łukasz O'Brien |    NULL | 2023-12-31 | NULL                        |  NULL | false",
            "NULL | NULL           |   -0.05 | NULL       | NULL                        | 12.25 | NULL",
            "(3 rows)",
        ]
    )


def test_footer_counts_rows() -> None:
    assert format_table(numbered(1)).endswith("\n(1 row)")
    assert format_table(numbered(0)) == "n | label\n--+------\n(0 rows)"
    assert format_table(numbered(12_345)).endswith("\n(showing 100 of 12,345 rows)")
    assert format_table(numbered(12_345), max_rows=None).endswith("\n(12,345 rows)")
    assert len(format_table(numbered(12_345)).splitlines()) == 2 + 100 + 1


def test_long_values_are_cut_to_max_width() -> None:
    text = format_table(pa.table({"note": ["x" * 50, "short"]}), max_width=10)
    lines = text.splitlines()
    assert lines[2] == "xxxxxxxxx…"
    assert lines[3] == "short"
    assert {len(line) for line in lines[1:3]} == {10}


def test_wide_and_combining_characters_keep_columns_aligned() -> None:
    table = pa.table({"name": ["李小龍", "Zoe\u0308", "ab"], "n": [1, 2, 3]})
    lines = format_table(table).splitlines()[:5]
    assert {_display_width(line.split(" | ")[0]) for line in lines if "|" in line} == {6}
    assert [line.index("|") if "|" in line else line.index("+") for line in lines[:2]] == [7, 7]
    assert lines[2] == "李小龍 | 1"
    assert lines[3] == "Zoe\u0308    | 2"
    cut = format_table(pa.table({"name": ["李小龍李小龍"]}), max_width=6).splitlines()[2]
    assert cut == "李小…"


def test_control_characters_do_not_break_lines() -> None:
    text = format_table(pa.table({"note": ["two\nlines\tand a tab"]}))
    assert text.splitlines()[2] == "two\\nlines\\tand a tab"


def test_binary_and_nested_values_are_readable() -> None:
    table = pa.table(
        {
            "raw": pa.array([b"\x00\xff"], pa.binary()),
            "tags": pa.array([["a", "ü"]], pa.list_(pa.string())),
            "point": pa.array([{"x": Decimal("1.5")}], pa.struct([("x", pa.decimal128(4, 1))])),
        }
    )
    assert format_table(table).splitlines()[2] == '0x00ff | ["a", "ü"] | {"x": "1.5"}'


def test_max_width_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_width"):
        format_table(numbered(1), max_width=0)


# --- write_result ---------------------------------------------------------------------


def test_csv_round_trips_types_and_nulls() -> None:
    stream = io.StringIO()
    write_result(people(), "csv", None, stream)
    text = stream.getvalue()
    assert text.splitlines()[0] == '"id","name","amount","signed_up","seen_at","score","active"'
    assert '"Łukasz O\'Brien"' in text
    back = pacsv.read_csv(
        io.BytesIO(text.encode()),
        convert_options=pacsv.ConvertOptions(column_types=SCHEMA, strings_can_be_null=True),
    )
    assert back.equals(people())


def test_csv_of_an_empty_stream_is_its_header() -> None:
    stream = io.StringIO()
    write_result(pa.RecordBatchReader.from_batches(SCHEMA, iter([])), "csv", None, stream)
    assert stream.getvalue() == '"id","name","amount","signed_up","seen_at","score","active"\n'


def test_csv_writes_each_batch_as_it_arrives() -> None:
    events = Events()
    stream = events.stream()
    write_result(events.reader(numbered(10), batch_rows=4), "csv", None, stream)
    assert events.log[:4] == ["batch 0", "write", "batch 1", "write"]
    assert stream.getvalue().count("\n") == 11
    assert stream.getvalue().count('"n","label"') == 1


def test_json_lines_keep_exact_values() -> None:
    stream = io.StringIO()
    write_result(people(), "json", None, stream)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "id": 1,
            "name": "Zoë",
            "amount": "1234.50",
            "signed_up": "2024-01-02",
            "seen_at": "2024-01-02T03:04:05.123000Z",
            "score": 0.5,
            "active": True,
        },
        {
            "id": 22,
            "name": "Łukasz O'Brien",
            "amount": None,
            "signed_up": "2023-12-31",
            "seen_at": None,
            "score": None,
            "active": False,
        },
        {
            "id": None,
            "name": None,
            "amount": "-0.05",
            "signed_up": None,
            "seen_at": None,
            "score": 12.25,
            "active": None,
        },
    ]
    assert "Zoë" in lines[0]


def test_json_handles_odd_values_and_repeated_names() -> None:
    table = pa.Table.from_arrays(
        [
            pa.array([1, 2]),
            pa.array([3, 4]),
            pa.array([float("nan"), float("-inf")]),
            pa.array([b"\x00\xff", None]),
            pa.array([[Decimal("1.10")], []], pa.list_(pa.decimal128(5, 2))),
            pa.array([dt.datetime(2024, 5, 6, 7, 8, 9)], pa.timestamp("ns")).take([0, 0]),
        ],
        names=["id", "id", "score", "raw", "parts", "at"],
    )
    stream = io.StringIO()
    write_result(table, "json", None, stream)
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert rows[0] == {
        "id": 1,
        "id_2": 3,
        "score": "NaN",
        "raw": "AP8=",
        "parts": ["1.10"],
        "at": "2024-05-06T07:08:09.000000000",
    }
    assert rows[1]["score"] == "-Infinity"
    assert rows[1]["raw"] is None


def test_json_writes_each_batch_as_it_arrives() -> None:
    events = Events()
    stream = events.stream()
    write_result(events.reader(numbered(9), batch_rows=3), "json", None, stream)
    assert events.log[:4] == ["batch 0", "write", "batch 1", "write"]
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == list(range(9))


def test_parquet_writes_a_row_group_per_batch(tmp_path: Path) -> None:
    events = Events()
    output = tmp_path / "out.parquet"
    write_result(events.reader(numbered(10), batch_rows=4), "parquet", output)
    assert pq.read_table(output).equals(numbered(10))
    assert pq.ParquetFile(output).num_row_groups == 3


def test_parquet_keeps_exact_types(tmp_path: Path) -> None:
    output = tmp_path / "people.parquet"
    write_result(people(), "parquet", output)
    assert pq.read_table(output).equals(people())


def test_parquet_needs_an_output_file_and_reads_nothing_without_one() -> None:
    events = Events()
    with pytest.raises(ValueError, match="parquet output is binary"):
        write_result(events.reader(numbered(3), batch_rows=1), "parquet", None)
    assert events.log == []


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown output format 'xml': choose one of table, csv, json, parquet"):
        write_result(people(), "xml", None, io.StringIO())


def test_table_format_counts_every_streamed_row() -> None:
    events = Events()
    stream = io.StringIO()
    write_result(events.reader(numbered(5), batch_rows=2), "table", None, stream, max_rows=3)
    lines = stream.getvalue().splitlines()
    assert lines[2:] == ["0 | row 0", "1 | row 1", "2 | row 2", "(showing 3 of 5 rows)"]
    assert events.log == ["batch 0", "batch 1", "batch 2"]


def test_text_goes_to_the_output_file_as_utf8(tmp_path: Path) -> None:
    output = tmp_path / "people.csv"
    stream = io.StringIO()
    write_result(people(), "csv", output, stream)
    assert stream.getvalue() == ""
    assert "Zoë" in output.read_bytes().decode("utf-8")


def test_default_stream_is_stdout_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    write_result(numbered(2), "table", None)
    assert capsys.readouterr().out == "n | label\n--+------\n0 | row 0\n1 | row 1\n(2 rows)\n"


def test_accepts_any_result_with_a_schema_and_batches() -> None:
    class Result:
        schema = numbered(0).schema

        def __iter__(self) -> Iterator[pa.RecordBatch]:
            return iter(numbered(4).to_batches(max_chunksize=2))

    stream = io.StringIO()
    write_result(Result(), "json", None, stream)
    assert len(stream.getvalue().splitlines()) == 4


def test_view_types_from_flight_readers_are_written_as_text() -> None:
    table = pa.table(
        {
            "name": pa.array(["é", None], pa.string_view()),
            "raw": pa.array([b"1", None], pa.binary_view()),
            "ids": pa.array([[1, 2], []], pa.list_view(pa.int64())),
        }
    )
    stream = io.StringIO()
    write_result(table, "csv", None, stream)
    assert stream.getvalue() == '"name","raw","ids"\n"é","0x31","[1, 2]"\n,,"[]"\n'
    assert format_table(table).splitlines()[2:4] == ["é    | 0x31 | [1, 2]", "NULL | NULL | []"]
