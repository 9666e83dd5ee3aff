"""conform(): every source batch becomes the expected schema exactly, or fails loudly."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from connectors.sqlbase import ConversionError, conform, convert

MONEY = pa.decimal128(12, 2)


@pytest.mark.parametrize(
    ("values", "source_type"),
    [
        (["12.34", "-0.01", None], pa.string()),
        ([12.34, -0.01, None], pa.float64()),  # through the float's shortest text, not its binary value
    ],
)
def test_decimals_convert_exactly(values: list[object], source_type: pa.DataType) -> None:
    got = convert(pa.array(values, source_type), MONEY, "amount")
    assert got.to_pylist() == [Decimal("12.34"), Decimal("-0.01"), None]


def test_integers_convert_to_decimals_of_any_precision() -> None:
    assert convert(pa.array([5, -7]), pa.decimal128(3, 1), "n").to_pylist() == [Decimal("5.0"), Decimal("-7.0")]


@pytest.mark.parametrize(
    ("values", "target"),
    [
        (["12.345"], MONEY),  # would round
        ([12.345], MONEY),
        (["nan"], MONEY),
        ([1.5], pa.int64()),  # would truncate
        (["2024-01-02 03:04:05+02:00"], pa.timestamp("us")),  # an offset in a naive column
        ([20240102], pa.date32()),  # a number is not a date
        ([2**60], pa.float64()),  # not exactly representable
    ],
)
def test_values_without_an_exact_form_fail(values: list[object], target: pa.DataType) -> None:
    with pytest.raises(ConversionError, match="column 'c'"):
        convert(pa.array(values), target, "c")


def test_conform_renames_strips_metadata_and_unwraps_extensions() -> None:
    opaque = pa.opaque(pa.string(), "numeric", "PostgreSQL")
    numbers = pa.ExtensionArray.from_storage(opaque, pa.array(["1.50"]))
    field = pa.field("?column?", opaque, metadata={"POSTGRESQL:typmod": "786438"})
    batch = pa.RecordBatch.from_arrays(
        [numbers, pa.array(["a"]).dictionary_encode()],
        schema=pa.schema([field, ("d", pa.dictionary(pa.int32(), pa.string()))]),
    )
    schema = pa.schema([("amount", MONEY), ("label", pa.string())])
    got = conform(batch, schema)
    assert got.schema == schema and got.schema.field("amount").metadata is None
    assert got.to_pylist() == [{"amount": Decimal("1.50"), "label": "a"}]


def test_no_columns_keeps_the_row_count() -> None:
    assert conform(pa.record_batch({"one": [1, 1, 1]}), pa.schema([])).num_rows == 3


def test_a_wrong_column_count_fails() -> None:
    with pytest.raises(ConversionError, match="returned 1 columns, expected 2"):
        conform(pa.record_batch({"a": [1]}), pa.schema([("a", pa.int64()), ("b", pa.int64())]))


def test_lists_convert_element_by_element_and_take_arrow_names() -> None:
    """DuckDB names list elements ``l``, PostgreSQL sends numerics as text inside lists; slices keep their rows."""
    named = pa.array([[1], [2, 3], None, [4, None]], pa.list_(pa.field("l", pa.int32()))).slice(1)
    assert convert(named, pa.list_(pa.int32()), "c").to_pylist() == [[2, 3], None, [4, None]]
    assert convert(named, pa.list_(pa.int32()), "c").type == pa.list_(pa.int32())
    texts = pa.array([["1.5", None], [], None], pa.list_(pa.string()))
    assert convert(texts, pa.list_(pa.decimal128(38, 10)), "c").to_pylist() == [[Decimal("1.5"), None], [], None]
    nested = pa.array([[[1, None], None], None], pa.list_(pa.list_(pa.field("l", pa.int32()))))
    assert convert(nested, pa.list_(pa.list_(pa.int32())), "c").to_pylist() == [[[1, None], None], None]
    pairs = pa.array([[1, 2], [3, 4], None], pa.list_(pa.field("", pa.int32()), 2)).slice(1)
    assert convert(pairs, pa.list_(pa.int32(), 2), "c").to_pylist() == [[3, 4], None]
    with pytest.raises(ConversionError, match=r"column 'c\[\]'"):
        convert(pa.array([["1.12345678901"]]), pa.list_(pa.decimal128(38, 10)), "c")


def test_times_of_day_from_text_and_never_24_00() -> None:
    text = pa.array(["00:00:00", "23:59:59.999999", "12:34:56.5", None])
    assert convert(text, pa.time64("us"), "t").cast(pa.int64()).to_pylist() == [0, 86_399_999_999, 45_296_500_000, None]
    assert convert(pa.array(["00:00:01.5"]), pa.time32("ms"), "t").cast(pa.int32()).to_pylist() == [1500]
    for bad in (pa.array(["24:00:00"]), pa.array(["12:00:00.1234567"]), pa.array(["noon"])):
        with pytest.raises(ConversionError, match="column 't'"):
            convert(bad, pa.time64("us"), "t")
    with pytest.raises(ConversionError, match="24:00:00 or later"):
        convert(pa.array([86_400_000_000], pa.time64("us")), pa.time64("us"), "t")
