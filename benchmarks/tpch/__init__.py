"""Cross-domain TPC-H: the 22 queries over PostgreSQL, Parquet, SQLite and CSV domains.

Run with ``python -m benchmarks.tpch``.
"""
