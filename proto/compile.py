"""Regenerate ``gateway/flightsql/flight_sql_pb2.py`` (and ``.pyi``) from ``flight_sql.proto``.

Run from anywhere with the project's interpreter (needs ``grpcio-tools``)::

    .venv/bin/python proto/compile.py            # writes into gateway/flightsql/
    .venv/bin/python proto/compile.py --out DIR  # writes into DIR (used by the tests)

The generated module registers its messages in a private descriptor pool instead of
protobuf's global one: other Flight SQL libraries (``flightsql-dbapi`` for one) register
the same ``arrow.flight.protocol.sql`` names globally, and two registrations of one name
in a process are an error. ``google.protobuf.Any`` packing only uses full names, so the
private pool changes nothing on the wire.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILE = "flight_sql.proto"
DEFAULT_OUT = PROTO_DIR.parent / "gateway" / "flightsql"
MODULE = "flight_sql_pb2.py"

_GLOBAL_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = (
    "# Private pool: other Flight SQL modules register the same names globally.\n"
    "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile("
)


def compile_proto(out_dir: Path) -> list[Path]:
    """Run protoc on ``flight_sql.proto`` into ``out_dir``; return the written files."""
    from grpc_tools import protoc  # imported here: only needed when regenerating

    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / PROTO_FILE),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / PROTO_FILE} (exit status {status})")
    module = out_dir / MODULE
    _use_private_pool(module)
    return [module, module.with_suffix(".pyi")]


def _use_private_pool(module: Path) -> None:
    source = module.read_text(encoding="utf-8")
    if source.count(_GLOBAL_POOL) != 1:
        raise RuntimeError(f"{module}: expected one global descriptor pool registration to replace")
    module.write_text(source.replace(_GLOBAL_POOL, _PRIVATE_POOL), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    for path in compile_proto(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
