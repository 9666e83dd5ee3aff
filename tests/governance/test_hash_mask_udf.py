"""The hash mask's UDF on its own: HMAC-SHA256 values, NULLs, odd input, and it never raises.

An exception escaping a Python callback that DataFusion calls from native code has
aborted the whole process (NOTES.md), so the cases that run through DataFusion run in a
child process: a crash fails the test instead of ending the test session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from datafusion import SessionContext

from gateway import governance
from gateway.governance import MIN_MASK_KEY_BYTES, decode_mask_key, hmac_hex, register_masks

KEY = bytes(range(40))


def expected(value: bytes | str, key: bytes = KEY) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def test_values_are_hmac_sha256_in_lower_case_hex_and_null_stays_null() -> None:
    values = ["alice@example.com", "", None, "Zoë Keller", "王小明", "🦀\u0301\u200b", "a\x00b", "x" * 10_000]
    out = hmac_hex(KEY)(pa.array(values, pa.string())).to_pylist()
    assert out == [None if v is None else expected(v) for v in values]
    assert all(len(v) == 64 and v == v.lower() for v in out if v is not None)
    assert out[0] != hashlib.sha256(b"alice@example.com").hexdigest()


@pytest.mark.parametrize("key", [b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(256))])
def test_any_key_length_matches_the_hmac_module(key: bytes) -> None:
    assert hmac_hex(key)(pa.array(["555-12-3456"])).to_pylist() == [expected("555-12-3456", key)]


def test_invalid_utf8_is_hashed_as_its_bytes_and_other_types_as_text() -> None:
    invalid = pa.array([b"\xff\xfe", b"ok", None], pa.binary()).view(pa.string())  # not valid UTF-8
    assert hmac_hex(KEY)(invalid).to_pylist() == [expected(b"\xff\xfe"), expected("ok"), None]
    large = pa.array(["a", None], pa.large_string())
    assert hmac_hex(KEY)(large).to_pylist() == [expected("a"), None]
    assert hmac_hex(KEY)(pa.array([123, None], pa.int64())).to_pylist() == [expected("123"), None]
    assert hmac_hex(KEY)(pa.array(["a", "b"]).slice(1)).to_pylist() == [expected("b")]


def test_it_never_raises_and_a_failed_batch_is_nulls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mask = hmac_hex(KEY)

    def broken(values: pa.Array) -> pa.Array:
        raise UnicodeDecodeError("utf-8", b"\xff secret value", 0, 1, "invalid start byte")

    monkeypatch.setattr(governance, "_as_bytes", broken)
    with caplog.at_level(logging.ERROR, logger="gateway.governance"):
        result = mask(pa.array(["a", "b", None]))
    assert result.type == pa.string() and result.to_pylist() == [None, None, None]
    assert "could not hash a batch of 3 values (UnicodeDecodeError)" in caplog.text
    assert "secret value" not in caplog.text
    monkeypatch.undo()
    assert mask(None).to_pylist() == []  # type: ignore[arg-type]  # not even an array: still no exception
    assert mask(pa.array([{"a": 1}])).to_pylist() == [None]  # a struct cannot be cast to text: NULL


def test_register_masks_gives_each_context_its_own_name() -> None:
    first, second = SessionContext(), SessionContext()
    name = register_masks(first, KEY)
    assert name.startswith("meshgate_mask_hash_") and len(name) > len("meshgate_mask_hash_") + 16
    assert register_masks(second, KEY) != name
    assert first.sql(f"SELECT {name}('x') AS h").to_pydict() == {"h": [expected("x")]}
    with pytest.raises(Exception, match="Invalid function"):
        second.sql(f"SELECT {name}('x') AS h").collect()


CHILD = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from datafusion import SessionContext
    from gateway import governance

    key = bytes(range(40))
    ctx = SessionContext()
    name = governance.register_masks(ctx, key)
    invalid = pa.array([b"\\xff\\xfe\\xfd", b"\\xc3", None], pa.binary()).view(pa.string())
    weird = pa.array(["\\U0001f980\\u0301", "\\u202etxt.exe", "a\\x00b", "\\ud7ff\\ue000", ""], pa.string())
    huge = pa.array(["x" * (64 * 1024 * 1024)], pa.string())
    ctx.register_record_batches("invalid", [[pa.record_batch([invalid], names=["v"])]])
    ctx.register_record_batches("weird", [[pa.record_batch([weird], names=["v"])]])
    ctx.register_record_batches("huge", [[pa.record_batch([huge], names=["v"])]])
    out = {}
    for table in ("invalid", "weird", "huge"):
        out[table] = ctx.sql(f"SELECT {name}(CAST(v AS VARCHAR)) AS h FROM {table}").to_pydict()["h"]
    def broken(values):
        raise UnicodeDecodeError("utf-8", b"\\xff", 0, 1, "invalid start byte")
    governance._as_bytes = broken
    out["broken"] = ctx.sql(f"SELECT {name}(CAST(v AS VARCHAR)) AS h FROM weird").to_pydict()["h"]
    json.dump(out, sys.stdout)
    """
)


def test_bad_input_through_datafusion_does_not_crash_the_process() -> None:
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["invalid"] == [expected(b"\xff\xfe\xfd"), expected(b"\xc3"), None]
    assert out["weird"] == [expected(v) for v in ["\U0001f980\u0301", "\u202etxt.exe", "a\x00b", "\ud7ff\ue000", ""]]
    assert out["huge"] == [expected("x" * (64 * 1024 * 1024))]
    assert out["broken"] == [None] * 5
    assert "could not hash a batch of 5 values (UnicodeDecodeError)" in child.stderr


# -- the key's text form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        bytes(range(32)).hex(),
        bytes(range(32)).hex().upper() + "\n",
        base64.b64encode(bytes(range(32))).decode(),
        base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("="),
        "  "
        + base64.b64encode(bytes(range(32))).decode()[:20]
        + "\n"
        + base64.b64encode(bytes(range(32))).decode()[20:],
    ],
)
def test_a_key_is_read_as_hex_or_base64(text: str) -> None:
    assert decode_mask_key(text) == bytes(range(32))
    assert decode_mask_key(text.encode()) == bytes(range(32))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the mask key is empty"),
        ("  \n", "the mask key is empty"),
        ("ab" * 16, f"must be at least {MIN_MASK_KEY_BYTES} bytes, got 16"),
        (base64.b64encode(b"s" * 31).decode(), "must be at least 32 bytes, got 31"),
        ("not a key: has $ymbols!", "neither hex nor base64"),
        ("abc" * 21, r"neither hex \(an odd number of digits\)"),
        (b"\xff\xfe" * 40, "hex or base64"),
    ],
)
def test_a_bad_key_is_refused_without_quoting_it(text: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$")) as raised:
        decode_mask_key(text)
    shown = text.decode("latin-1") if isinstance(text, bytes) else text
    if shown.strip():
        assert shown.strip() not in str(raised.value)
