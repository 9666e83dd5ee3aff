"""Stress tests: a fuzzer and a soak against a real ``meshgate serve`` subprocess.

The gateway runs in a child process so that a crash (SIGABRT from a Rust panic, a
segfault) shows as the process dying, not as a test that stops. ``mesh.py`` builds the
mesh (PostgreSQL, SQLite and Parquet domains under platform policies, with real users)
and starts the gateway; ``strategies.py`` generates inputs (hypothesis); ``harness.py``
sends them and judges each answer; ``fuzz.py`` and ``soak.py`` are the long runs
(``python -m tests.stress.fuzz``, ``python -m tests.stress.soak``), and ``test_*.py``
their bounded versions in the default suite. ``RESULTS.md`` records the long runs.
"""
