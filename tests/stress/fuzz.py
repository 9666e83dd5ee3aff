"""Fuzz a ``meshgate serve`` subprocess: SQL text, prepared-statement parameters and raw protocol messages.

    .venv/bin/python -m tests.stress.fuzz --inputs 20000 --seed 1
    .venv/bin/python -m tests.stress.fuzz --replay /tmp/meshgate-fuzz/000123-unclean-4242.pickle

Inputs come from the hypothesis strategies of ``tests/stress/strategies.py``, in blocks
of one kind (SQL, parameters, protocol in the ratio 3:2:2) so that the kinds interleave;
each block is a hypothesis run seeded from ``--seed`` and the block's number, with only
the generate phase (no shrinking: a crash takes the server with it, so a failing input is
saved and minimised by hand instead). The same seed sends the same inputs.

It prints a summary (inputs, results, clean errors by status, unclean answers, crashes,
hangs, elapsed time, load average, the gateway's memory) and exits 1 on any crash,
unclean answer or hang. Each failure is saved under ``--findings`` (a pickle to
``--replay`` and a text file with the gateway's log tail); after a crash the gateway is
restarted and the run goes on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as seeded

from tests.stress.cases import Case, describe
from tests.stress.harness import Failure, Outcome, Stats, Target, load_average, load_case, save_failure
from tests.stress.known import known
from tests.stress.mesh import stress_mesh
from tests.stress.strategies import STRATEGIES

RATIO = {"sql": 3, "parameters": 2, "protocol": 2}
DEFAULT_FINDINGS = Path("/tmp/meshgate-fuzz")
SAVED_PER_SIGNATURE = 20
"""Failures of one signature saved with their log (every crash is)."""


def split(inputs: int) -> dict[str, int]:
    """``inputs`` shared between the kinds in :data:`RATIO` (SQL takes the remainder)."""
    total = sum(RATIO.values())
    counts = {kind: inputs * share // total for kind, share in RATIO.items()}
    counts["sql"] += inputs - sum(counts.values())
    return counts


def blocks(counts: dict[str, int], block: int) -> list[tuple[str, int]]:
    """Round-robin blocks of at most ``block`` inputs per kind (a kind with more inputs gets bigger blocks)."""
    rounds = max(1, -(-max(counts.values()) // block))
    plan = []
    for number in range(rounds):
        for kind, count in counts.items():
            size = count // rounds + (1 if number < count % rounds else 0)
            if size:
                plan.append((kind, size))
    return plan


def fuzz(
    target: Target,
    counts: dict[str, int],
    seed: int,
    *,
    block: int = 250,
    check_every: int = 25,
    restart: bool = True,
    findings: Path | None = None,
    progress: Callable[[Stats], None] | None = None,
) -> Stats:
    """Send ``counts`` inputs of each kind; a crash restarts the gateway when ``restart`` (else stops the run)."""
    stats = Stats()
    seen: Counter[str] = Counter()

    def record(case: Case | None, outcome: Outcome) -> None:
        if case is not None:
            stats.verdicts[outcome.verdict] += 1
            if outcome.verdict == "error":
                stats.statuses[outcome.status] += 1
            if outcome.verdict == "error" and outcome.status == "INTERNAL":
                stats.internal.append((case, outcome))
                if findings is not None and len(stats.internal) <= SAVED_PER_SIGNATURE:
                    internal = Failure(stats.total, case, Outcome("internal", "INTERNAL", outcome.message))
                    internal.log = target.gateway.tail(120)  # the traceback logged with the reference
                    save_failure(findings, internal)
        if outcome.failed:
            failure = Failure(stats.total, case, outcome)
            seen[failure.signature] += 1
            if seen[failure.signature] <= SAVED_PER_SIGNATURE or not target.gateway.alive():
                failure.log = target.gateway.tail()
                if findings is not None:
                    save_failure(findings, failure)
            stats.failures.append(failure)
            if not target.gateway.alive() or outcome.verdict == "unresponsive":
                if not restart:
                    raise _Stop
                target.restart()
                stats.restarts += 1

    def block_of(kind: str, size: int, block_seed: int) -> Callable[[], None]:
        @settings(
            max_examples=size,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @seeded(block_seed)
        @given(STRATEGIES[kind])
        def one(case: Case) -> None:
            stats.inputs[kind] += 1
            sent = time.monotonic()
            outcome = target.send(case)
            stats.timed(kind, time.monotonic() - sent, case)
            record(case, outcome)
            if stats.total % check_every == 0:
                stats.checks += 1
                record(None, target.probe())
                if progress is not None:
                    progress(stats)

        return one

    for number, (kind, size) in enumerate(blocks(counts, block)):
        try:
            block_of(kind, size, seed * 100_003 + number)()
        except _Stop:
            break
    return stats


class _Stop(Exception):
    """A crash in a run that does not restart the gateway."""


def summary(stats: Stats, seed: int, elapsed: float, loads: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(stats.statuses.items()) if status != "OK")
    lines = [
        f"Meshgate fuzz, seed {seed}: {stats.total} inputs"
        f" ({', '.join(f'{kind} {n}' for kind, n in stats.inputs.items())}) in {elapsed:.1f} s"
        f" (answers took {', '.join(f'{kind} {s:.1f} s' for kind, s in stats.seconds.items())})",
        f"  results:             {stats.verdicts['result']}",
        f"  clean errors:        {stats.verdicts['error']} ({by_status or 'none'})",
        f"  INTERNAL, clean, with a reference (an unexpected exception in the gateway): {len(stats.internal)}",
        f"  unclean answers:     {stats.count('unclean')}"
        f" (of known findings, tests/stress/known.py: {sum(1 for f in stats.failures if known(f))})",
        f"  crashes:             {stats.count('crash')}",
        f"  hangs:               {stats.count('hang')}",
        f"  not answering SELECT 1 while alive: {stats.count('unresponsive')}",
        f"  liveness checks:     {stats.checks} (gateway restarts: {stats.restarts})",
        f"  load average:        {_load(loads[0])} at start, {_load(loads[1])} at the end",
    ]
    return "\n".join(lines)


def _load(load: tuple[float, ...]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def slowest(stats: Stats) -> str:
    return "\n".join(
        f"    {seconds:.2f} s #{number}: " + describe(case).replace("\n", " ")[:300]
        for seconds, number, case in sorted(stats.slowest, key=lambda item: item[:2], reverse=True)
    )


def report_failures(stats: Stats) -> str:
    """Failures grouped by signature, each with its count and its shortest input."""
    groups: dict[str, list[Failure]] = {}
    for failure in stats.failures:
        groups.setdefault(failure.signature, []).append(failure)
    parts = []
    for signature, failures in sorted(groups.items(), key=lambda item: -len(item[1])):
        smallest = min(failures, key=lambda f: len(describe(f.case)) if f.case is not None else 0)
        name = known(failures[0])
        parts.append(f"{len(failures)} x {signature}" + (f" [known finding {name}]" if name else ""))
        parts.append(f"  e.g. input #{smallest.number}: {smallest.outcome.message[:300]}")
        if smallest.case is not None:
            parts.append("  " + describe(smallest.case).replace("\n", "\n  "))
    for case, outcome in stats.internal[:20]:
        parts.append(f"INTERNAL with a reference: {outcome.message}\n  " + describe(case).replace("\n", "\n  "))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=700, help="inputs in all (SQL, parameters, protocol 3:2:2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default="sql,parameters,protocol", help="which kinds of input, comma-separated")
    parser.add_argument("--block", type=int, default=250, help="inputs per hypothesis run")
    parser.add_argument("--check-every", type=int, default=25, help="inputs between SELECT 1 liveness checks")
    parser.add_argument("--findings", type=Path, default=DEFAULT_FINDINGS, help="where failing inputs are saved")
    parser.add_argument("--postgres", help="libpq URI (default: the test suite's PostgreSQL)")
    parser.add_argument("--replay", type=Path, nargs="*", help="send saved cases (pickles) instead of fuzzing")
    args = parser.parse_args(argv)

    with stress_mesh(args.postgres) as (config, _uri):
        target = Target(config)
        try:
            if args.replay:
                return _replay(target, args.replay)
            wanted = args.kinds.split(",")
            counts = {kind: n for kind, n in split(args.inputs).items() if kind in wanted}
            if len(wanted) < len(RATIO):  # all inputs go to the kinds asked for
                counts = {kind: args.inputs // len(wanted) for kind in wanted}
            start_load = load_average()
            rss_before = target.gateway.vitals()["rss"]
            started = time.monotonic()

            def progress(stats: Stats) -> None:
                if stats.total % 1000 == 0:
                    print(
                        f"  ... {stats.total} inputs, {time.monotonic() - started:.0f} s,"
                        f" failures {len(stats.failures)}, load {_load(load_average())}",
                        file=sys.stderr,
                        flush=True,
                    )

            stats = fuzz(
                target,
                counts,
                args.seed,
                block=args.block,
                check_every=args.check_every,
                findings=args.findings,
                progress=progress,
            )
            elapsed = time.monotonic() - started
            end_load = load_average()
            print(summary(stats, args.seed, elapsed, (start_load, end_load)))
            if target.gateway.alive():
                vitals = target.gateway.vitals()
                print(
                    f"  gateway:             RSS {rss_before / 2**20:.0f} MiB at start, {vitals['rss'] / 2**20:.0f} MiB"
                    f" at the end (peak {target.gateway.peak_rss_bytes() / 2**20:.0f} MiB), threads {vitals['threads']},"
                    f" fds {vitals['fds']}"
                )
            print("  slowest answers:\n" + slowest(stats))
            if stats.failures or stats.internal:
                print("\n" + report_failures(stats))
                print(f"\nfailing inputs saved under {args.findings}")
            return 1 if stats.failures else 0
        finally:
            target.close()


def _replay(target: Target, paths: list[Path]) -> int:
    failed = 0
    for path in paths:
        case = load_case(path)
        outcome = target.send(case)
        if not outcome.failed:
            outcome = target.probe() if target.gateway.alive() else outcome
        print(f"{path.name}: {outcome.verdict} {outcome.status} {outcome.why}\n  {outcome.message}\n{describe(case)}")
        if outcome.failed:
            failed += 1
            print(target.gateway.tail(40))
            target.restart()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
