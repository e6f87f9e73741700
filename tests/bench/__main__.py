"""``make bench``: every benchmark, one table with PASS/FAIL per target, the same as JSON.

    python -m tests.bench [--quick] [--only 1,3] [--json PATH]

Exit code 1 when any figure FAILs. Each comparison runs both sides in this run on this machine;
the table's ratios are what the targets hold, absolute times are reported alongside.
"""

from __future__ import annotations

import argparse
import compileall
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import slotkeeper
from slotkeeper.cli import tune_interpreter
from tests.bench import (
    daemon,
    dora,
    economy,
    estate,
    installations,
    ledger,
    pacing,
    process,
    scale,
    throughput,
)
from tests.bench.report import Figure, machine, table, write_json
from tests.helpers import allow_egress_to_the_fakes

BENCHMARKS: dict[str, ModuleType] = {
    "1": scale,
    "2": economy,
    "3": pacing,
    "4": throughput,
    "5": ledger,
    "6": daemon,
    "7": dora,
    "8": process,
    "9": installations,
    "10": estate,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, times not held")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="targets to run, e.g. 1,3")
    parser.add_argument("--json", type=Path, default=Path(".slotkeeper/bench.json"))
    args = parser.parse_args(argv)
    tune_interpreter()  # what runs in-process here runs as under the CLI's entry point
    # slotkeeper's modules compiled, as an installed wheel has them (pip compiles at install;
    # this editable checkout, under PYTHONDONTWRITEBYTECODE, would compile them in every child)
    compileall.compile_dir(Path(slotkeeper.__file__).parent, quiet=1)
    allow_egress_to_the_fakes()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    started = time.perf_counter()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="slotkeeper-bench-") as scratch:
        for number in chosen:
            began = time.perf_counter()
            print(
                f"== target {number}: {BENCHMARKS[number].__name__.rsplit('.', 1)[-1]}",
                file=sys.stderr,
                flush=True,
            )
            found = BENCHMARKS[number].run(Path(scratch) / number, quick=args.quick)
            figures += found
            print(f"   {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    about = machine()
    print(table(figures))
    print(
        f"\n{about['cpu']}, {about['cores']} cores, {about['memory']}; Python {about['python']}, "
        f"SQLite {about['sqlite']}; {about['system']}; {seconds:.0f}s"
    )
    write_json(args.json, figures, seconds)
    failed = [f for f in figures if f.passed is False]
    print(
        f"{len(failed)} of {sum(f.passed is not None for f in figures)} targets FAILED"
        if failed
        else "every target PASSED"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
