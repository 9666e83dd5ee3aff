"""Enforcing policies at planning time: one governed view per product a query reads.

The engine gives each query a hidden catalog (an unguessable name) holding the raw
products, and the domain schemas hand out only *governed views* over them: granted
columns, masks applied, row filters in the WHERE clause. DataFusion inlines the views,
so row filters are pushed down to the sources with the rest of the query, and a
predicate on a masked column compares masked values. A product the engine did not
prepare a view for cannot be resolved at all: access fails closed.

    >>> view_sql('__raw', "sales", "customers", schema, access, 'meshgate_mask_hash_1f…')  # doctest: +SKIP
    SELECT "id", meshgate_mask_hash_1f…(CAST("email" AS VARCHAR)) AS "email"
    FROM "__raw"."sales"."customers" WHERE (region = 'eu')

The ``hash`` mask is HMAC-SHA256 under the mesh's mask key (:func:`register_masks`): a
Python UDF that holds the key in its closure, so the key is in no SQL, plan, EXPLAIN
output or error message. Each query's context registers it under a name of its own
(unguessable, like the raw catalog's), so a caller's SQL cannot call it to hash guesses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable

import pyarrow as pa
from datafusion import SessionContext, udf
from sqlglot import exp, parse
from sqlglot.errors import SqlglotError

from gateway.policy import Access
from meshcore.arrow import is_text
from meshcore.sql import quote_identifier

log = logging.getLogger(__name__)

MIN_MASK_KEY_BYTES = 32  # an HMAC-SHA256 key shorter than the hash output is weaker than the hash
MASK_HASH_FUNCTION = "meshgate_mask_hash"  # the prefix of the UDF's per-context name


def referenced_products(sql: str, catalog: str, default_domain: str | None) -> set[tuple[str, str]] | None:
    """The ``(domain, product)`` pairs ``sql`` names; None when it cannot be read.

    Unquoted names are lower-cased as DataFusion does; names of CTEs are not products;
    a one-part name belongs to the session's default domain.
    """
    try:
        statements = parse(sql, read="postgres")
    except SqlglotError:
        return None
    found: set[tuple[str, str]] = set()
    for statement in statements:
        if statement is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            parts = [_normalise(part) for part in table.parts]
            if not parts or (len(parts) == 1 and parts[0] in ctes):
                continue
            if len(parts) == 3 and parts[0] != catalog:
                continue
            if len(parts) >= 2:
                found.add((parts[-2], parts[-1]))
            elif default_domain is not None:
                found.add((default_domain, parts[0]))
    return found


def _normalise(identifier: exp.Expr) -> str:
    name = identifier.name
    return name if isinstance(identifier, exp.Identifier) and identifier.quoted else name.lower()


def view_sql(raw_catalog: str, domain: str, product: str, schema: pa.Schema, access: Access, hash_function: str) -> str:
    """The governed view of one product for one caller, in DataFusion SQL.

    ``hash_function`` is the name :func:`register_masks` gave the hash mask in this context.
    """
    projections = [
        _projection(name, schema.field(name).type, access.masks.get(name), hash_function) for name in access.columns
    ]
    source = f"{quote_identifier(raw_catalog)}.{quote_identifier(domain)}.{quote_identifier(product)}"
    sql = f"SELECT {', '.join(projections) or '1 AS no_granted_columns'} FROM {source}"
    if access.row_filter is not None:
        sql += f" WHERE {access.row_filter}"
    return sql


def governed_schema(schema: pa.Schema, access: Access) -> pa.Schema:
    """The schema a caller sees: granted columns, masked ones with the mask's type."""
    fields = []
    for name in access.columns:
        field = schema.field(name)
        mask = access.masks.get(name)
        if mask in ("hash", "last4") or (mask == "redact" and is_text(field.type)):
            field = field.with_type(pa.string())
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


def _projection(name: str, kind: pa.DataType, mask: str | None, hash_function: str) -> str:
    column = quote_identifier(name)
    if mask is None:
        return column
    if mask == "hash":
        expression = f"{hash_function}(CAST({column} AS VARCHAR))"
    elif mask == "last4":
        expression = (
            f"CASE WHEN {column} IS NULL THEN NULL ELSE concat('****', right(CAST({column} AS VARCHAR), 4)) END"
        )
    elif mask == "redact" and is_text(kind):
        expression = f"CASE WHEN {column} IS NULL THEN NULL ELSE '****' END"
    else:  # "null", and "redact" of a value that is not text: a NULL of the column's own type
        expression = f"CASE WHEN FALSE THEN {column} END"
    return f"{expression} AS {column}"


# --------------------------------------------------------------------------- the hash mask


def register_masks(ctx: SessionContext, key: bytes) -> str:
    """Register the ``hash`` mask (HMAC-SHA256 under ``key``) on ``ctx``; answers its name there.

    The name is new for every context: the governed views call it, a caller's SQL cannot
    (it is planned in a context whose name it could not know in advance), so nobody can
    hash a guess and compare. The key lives only in the UDF's closure.
    """
    name = f"{MASK_HASH_FUNCTION}_{uuid.uuid4().hex}"
    ctx.register_udf(udf(hmac_hex(key), [pa.string()], pa.string(), "immutable", name))
    return name


def hmac_hex(key: bytes) -> Callable[[pa.Array], pa.Array]:
    """A vectorised HMAC-SHA256: text values to 64 lower-case hex digits, NULL to NULL.

    It hashes each value's UTF-8 bytes as they are (nothing is decoded, so invalid UTF-8
    cannot fail) and never raises: DataFusion calls it from native code, where an escaping
    Python exception has aborted the whole process. A batch it cannot hash becomes NULLs
    (fail closed: no clear value leaves) and is logged, without any value.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()  # RFC 2104: a long key is hashed first
    padded = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))  # the key's two HMAC pads, hashed once
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
    del key, padded

    def mask(values: pa.Array) -> pa.Array:
        try:
            inner_copy, outer_copy = inner.copy, outer.copy
            out: list[str | None] = []
            append = out.append
            for value in _as_bytes(values).to_pylist():
                if value is None:
                    append(None)
                    continue
                h = inner_copy()
                h.update(value)
                o = outer_copy()
                o.update(h.digest())
                append(o.hexdigest())
            return pa.array(out, pa.string())
        except BaseException as error:  # nothing may escape into native code
            return _failed(values, error)

    return mask


_SHA256_BLOCK = 64


def _as_bytes(values: pa.Array) -> pa.Array:
    """The values as binary, without decoding or copying text."""
    kind = values.type
    if pa.types.is_string(kind):
        return values.view(pa.binary())
    if pa.types.is_large_string(kind):
        return values.view(pa.large_binary())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return values
    return values.cast(pa.string()).view(pa.binary())


def _failed(values: object, error: BaseException) -> pa.Array:
    try:
        length = len(values)  # type: ignore[arg-type]
        log.error(
            "the hash mask could not hash a batch of %d values (%s): they are returned as NULL",
            length,
            type(error).__name__,
        )
        return pa.nulls(length, pa.string())
    except BaseException:
        return pa.nulls(0, pa.string())


def generate_mask_key() -> bytes:
    """A random mask key: hashed values then change whenever the gateway restarts."""
    return secrets.token_bytes(MIN_MASK_KEY_BYTES)


_HEX = re.compile(r"[0-9a-fA-F]+")


def decode_mask_key(text: bytes | str) -> bytes:
    """A mask key written as hex or base64 (standard or URL-safe), surrounding blanks ignored.

    Raises:
        ValueError: not hex or base64, or shorter than :data:`MIN_MASK_KEY_BYTES`; the
            message never quotes the text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the mask key is neither hex nor base64 (not even text); {_KEY_FORMAT}") from None
    compact = "".join(text.split())
    if not compact:
        raise ValueError(f"the mask key is empty; {_KEY_FORMAT}")
    if _HEX.fullmatch(compact):
        if len(compact) % 2:
            raise ValueError(f"the mask key is neither hex (an odd number of digits) nor base64; {_KEY_FORMAT}")
        key = bytes.fromhex(compact)
    else:
        standard = compact.replace("-", "+").replace("_", "/")
        try:
            key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the mask key is neither hex nor base64; {_KEY_FORMAT}") from None
    if len(key) < MIN_MASK_KEY_BYTES:
        raise ValueError(f"the mask key must be at least {MIN_MASK_KEY_BYTES} bytes, got {len(key)}; {_KEY_FORMAT}")
    return key


_KEY_FORMAT = (
    f"write at least {MIN_MASK_KEY_BYTES} random bytes as hex or base64"
    " (for example: python -c 'import secrets; print(secrets.token_hex(32))')"
)
