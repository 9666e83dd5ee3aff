"""Parameter batches as clients send them: one-type unions unwrapped Arrow to Arrow."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gateway.parameters import plain_unions


def unwrapped(column: pa.Array) -> pa.Array:
    return plain_unions(pa.record_batch([column], names=["$1"])).column(0)


@pytest.mark.parametrize(
    ("union", "kind", "rows"),
    [
        pytest.param(  # children of the one type, in any order, and a null child
            pa.UnionArray.from_dense(
                pa.array([1, 0, 2, 1], pa.int8()),
                pa.array([1, 0, 0, 0], pa.int32()),
                [pa.array([10, None]), pa.array([20, 30]), pa.nulls(1)],
            ),
            pa.int64(),
            [30, 10, None, 20],
            id="dense-two-children",
        ),
        pytest.param(
            pa.UnionArray.from_dense(
                pa.array([0, 1, 0], pa.int8()), pa.array([0, 0, 1], pa.int32()), [pa.array(["a", "b"]), pa.nulls(1)]
            ).slice(1),
            pa.string(),
            [None, "b"],
            id="dense-sliced",
        ),
        pytest.param(
            pa.UnionArray.from_sparse(pa.array([0, 1, 0, 1], pa.int8()), [pa.array([1, 2, 3, 4]), pa.nulls(4)]).slice(
                1, 3
            ),
            pa.int64(),
            [None, 3, None],
            id="sparse-sliced",
        ),
        pytest.param(
            pa.UnionArray.from_dense(
                pa.array([5, 7], pa.int8()),
                pa.array([0, 0], pa.int32()),
                [pa.array([1.5]), pa.nulls(1)],
                type_codes=[5, 7],
            ),
            pa.float64(),
            [1.5, None],
            id="type-codes",
        ),
    ],
)
def test_a_union_of_one_value_type_becomes_a_column_of_that_type(
    union: pa.Array, kind: pa.DataType, rows: list
) -> None:
    column = unwrapped(union)
    assert column.type == kind
    assert column.to_pylist() == rows


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(pa.array([b"ab", None], pa.binary_view()), id="binary_view"),
        pytest.param(pa.RunEndEncodedArray.from_arrays(pa.array([1, 2], pa.int32()), pa.array(["s", "t"])), id="ree"),
    ],
)
def test_a_union_of_a_type_without_a_take_kernel_is_unwrapped_too(values: pa.Array) -> None:
    """Found by the fuzzer after the first change: pyarrow 26 cannot take() these; their values are Python's."""
    union = pa.UnionArray.from_dense(pa.array([0, 0], pa.int8()), pa.array([0, 1], pa.int32()), [values])
    column = unwrapped(union)
    assert column.type == values.type
    assert column.to_pylist() == values.to_pylist()


def test_a_union_of_two_value_types_stays_a_union() -> None:
    union = pa.UnionArray.from_dense(
        pa.array([0, 1], pa.int8()), pa.array([0, 0], pa.int32()), [pa.array([1]), pa.array(["a"])]
    )
    assert unwrapped(union).type == union.type
