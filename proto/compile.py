"""Regenerate the protobuf modules of ``gateway/flightsql`` and ``gateway/plan/substrait`` (``.py`` and ``.pyi``).

``flight_sql.proto`` becomes ``flight_sql_pb2`` (Flight SQL commands) and ``flight.proto``
becomes ``flight_pb2`` (the Flight RPC messages of the CancelFlightInfo and session
actions). Run from anywhere with the project's interpreter (needs ``grpcio-tools``)::

    .venv/bin/python proto/compile.py            # writes into gateway/flightsql/
    .venv/bin/python proto/compile.py --out DIR  # writes into DIR (used by the tests)

Substrait's ``substrait/*.proto`` (copied unchanged from github.com/substrait-io/substrait,
Apache-2.0, see proto/README.md) become ``gateway/plan/substrait/*_pb2.py``: the planner
reads and rewrites DataFusion's plans as Substrait (gateway/plan/substrait_plan.py). They
share one private pool of their own (``_pool.py``), for the same reason as above: the
``substrait`` package on PyPI registers the same names globally.

The generated modules register their messages in private descriptor pools instead of
protobuf's global one: other Flight libraries (``flightsql-dbapi`` for one) register
the same ``arrow.flight.protocol`` names globally, and two registrations of one name
in a process are an error. Messages travel by full name (``google.protobuf.Any``) or
as plain bytes, so a private pool changes nothing on the wire. A module that imports a
well-known type (``flight.proto`` uses ``google.protobuf.Timestamp``) first adds that
type's file to its private pool.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILES = ("flight_sql.proto", "flight.proto")
DEFAULT_OUT = PROTO_DIR.parent / "gateway" / "flightsql"
SUBSTRAIT_FILES = (
    "substrait/type.proto",
    "substrait/extensions/extensions.proto",
    "substrait/algebra.proto",
    "substrait/plan.proto",
)
SUBSTRAIT_PACKAGE = "gateway.plan.substrait"
DEFAULT_SUBSTRAIT_OUT = PROTO_DIR.parent / "gateway" / "plan"

_GLOBAL_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = (
    "# Private pool: other Flight SQL modules register the same names globally.\n"
    "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("
)
_PRIVATE_POOL_WITH_DEPENDENCIES = (
    "# Private pool: other Flight modules register the same names globally.\n"
    "_pool = _descriptor_pool.DescriptorPool()\n"
    "{dependencies}"
    "DESCRIPTOR = _pool.AddSerializedFile("
)
_WELL_KNOWN_IMPORT = re.compile(r"^from google\.protobuf import \w+_pb2 as (\w+)$", re.MULTILINE)


def compile_proto(out_dir: Path) -> list[Path]:
    """Run protoc on every ``.proto`` of PROTO_FILES into ``out_dir``; return the written files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for proto in PROTO_FILES:
        module = _protoc(proto, out_dir)
        _use_private_pool(module)
        written += [module, module.with_suffix(".pyi")]
    return written


def _protoc(proto: str, out_dir: Path) -> Path:
    """Run protoc on ``proto`` (relative to PROTO_DIR) into ``out_dir``; the ``_pb2.py`` it wrote."""
    from grpc_tools import protoc  # imported here: only needed when regenerating

    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--proto_path={_well_known()}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / proto),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / proto} (exit status {status})")
    return out_dir / Path(proto).with_name(f"{Path(proto).stem}_pb2.py")


def compile_substrait(out_dir: Path) -> list[Path]:
    """Run protoc on Substrait's files into ``out_dir/substrait``, importing each other as
    ``gateway.plan.substrait`` modules and registering in that package's private pool."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for proto in SUBSTRAIT_FILES:
        module = _protoc(proto, out_dir)
        for path in (module, module.with_suffix(".pyi")):
            text = path.read_text(encoding="utf-8")
            text = re.sub(
                r"^from substrait(\.extensions)? import", rf"from {SUBSTRAIT_PACKAGE}\1 import", text, flags=re.M
            )
            text = re.sub(r"^import substrait\.", f"import {SUBSTRAIT_PACKAGE}.", text, flags=re.M)
            if path.suffix == ".py":
                if text.count(_GLOBAL_POOL) != 1:
                    raise RuntimeError(f"{path}: expected one global descriptor pool registration to replace")
                text = text.replace(
                    _GLOBAL_POOL,
                    f"from {SUBSTRAIT_PACKAGE}._pool import POOL  # private: see proto/compile.py\n"
                    "DESCRIPTOR = POOL.AddSerializedFile(",
                )
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def _well_known() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto


def _use_private_pool(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    if source.count(_GLOBAL_POOL) != 1:
        raise RuntimeError(f"{module}: expected one global descriptor pool registration to replace")
    imported = _WELL_KNOWN_IMPORT.findall(source)
    if imported:
        dependencies = "".join(f"_pool.AddSerializedFile({alias}.DESCRIPTOR.serialized_pb)\n" for alias in imported)
        private = _PRIVATE_POOL_WITH_DEPENDENCIES.format(dependencies=dependencies)
    else:
        private = _PRIVATE_POOL
    module.write_text(source.replace(_GLOBAL_POOL, private), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (Flight SQL)")
    parser.add_argument(
        "--substrait-out", type=Path, default=DEFAULT_SUBSTRAIT_OUT, help="output directory (its substrait/ folder)"
    )
    args = parser.parse_args(argv)
    for path in [*compile_proto(args.out), *compile_substrait(args.substrait_out)]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
