"""Reproducible benchmarks of Meshgate: TPC-H across four sources, pushdown, streaming, latency.

Each benchmark is one command (``python -m benchmarks.tpch``, ``python -m benchmarks.pushdown``,
``python -m benchmarks.streaming``, ``python -m benchmarks.latency``) that starts and stops
everything it needs on loopback and writes ``results/<name>.json``, ``results/<name>.md`` and
PNG plots. See ``benchmarks/README.md``.
"""
