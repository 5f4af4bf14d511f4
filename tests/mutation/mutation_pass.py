"""Scripted mutation pass: apply one-line mutations to funcnet's source, one at a time, run the
tests that guard that file, and report which mutants the suite kills.

Not collected by pytest (the name matches no ``test_*.py``); run from the repository root:

    PYTHONPATH=$PWD python tests/mutation/mutation_pass.py              # every mutant in MUTANTS
    PYTHONPATH=$PWD python tests/mutation/mutation_pass.py --only loss  # those whose id contains "loss"
    PYTHONPATH=$PWD python tests/mutation/mutation_pass.py --list

    # one ad-hoc mutant (used to show that a fixed test fails on a broken build):
    PYTHONPATH=$PWD python tests/mutation/mutation_pass.py --file funcnet/x.py \\
        --old 'a + b' --new 'a - b' -- tests/test_x.py -k name

Each mutant replaces exactly one occurrence of ``old`` (it must occur once in the file) by ``new``;
the file is restored in a ``finally`` (also on Ctrl-C or SIGTERM) and checked byte-identical afterwards.
A mutant is *killed* when pytest exits non-zero (``-x -q -p no:cacheprovider``), *survived* when
it passes, and *timeout* past ``--timeout`` seconds (counted as killed: the mutation broke something).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, -k expressions


def apply_and_test(m: Mutant, timeout: float, stop_first: bool = True) -> tuple[str, float]:
    path = os.path.join(ROOT, m.file)
    with open(path, encoding="utf-8") as f:
        original = f.read()
    count = original.count(m.old)
    if count != 1:
        return f"BAD ({count} matches)", 0.0
    # No .pyc from a mutant: a same-size mutant restored within the same second would otherwise
    # leave a cached mutant that a later run loads as the original.
    here = os.path.dirname(os.path.abspath(__file__))  # for -p no_shrink
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, here]), "JAX_PLATFORMS": "cpu",
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", *(["-x"] if stop_first else []), "-q", "-p", "no:cacheprovider",
           "--no-header", "-p", "no_shrink", *m.tests]
    start = time.perf_counter()
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m.old, m.new))
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            outcome = "survived" if proc.returncode == 0 else "killed"
            if not stop_first:  # the ad-hoc demonstration: say how many tests failed
                outcome += ": " + proc.stdout.strip().splitlines()[-1]
            if proc.returncode not in (0, 1):  # collection error, internal error: still a kill, say so
                outcome = f"killed (rc {proc.returncode})"
        except subprocess.TimeoutExpired:
            outcome = "timeout"
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    with open(path, encoding="utf-8") as f:
        assert f.read() == original, f"{m.file} was not restored"
    return outcome, time.perf_counter() - start


def _terminate(signum, frame):
    raise KeyboardInterrupt  # so that SIGTERM, too, runs the finally that restores the file


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutants whose id contains this")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--file")
    parser.add_argument("--old")
    parser.add_argument("--new")
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args()
    if args.file:
        mutants = [Mutant("adhoc", args.file, args.old, args.new, tuple(args.tests))]
    else:
        from mutants import MUTANTS

        mutants = [m for m in MUTANTS if args.only in m.id]
    if args.list:
        for m in mutants:
            print(f"{m.id:28} {m.file}: {m.old!r} -> {m.new!r}")
        return
    rows = []
    for m in mutants:
        outcome, seconds = apply_and_test(m, args.timeout, stop_first=not args.file)
        rows.append((m, outcome, seconds))
        print(f"{m.id:28} {outcome:18} {seconds:6.1f}s  {m.old.strip()!r} -> {m.new.strip()!r}", flush=True)
    killed = sum(o.startswith("killed") or o == "timeout" for _, o, _ in rows)
    valid = sum(not o.startswith("BAD") for _, o, _ in rows)
    print(f"\n{killed}/{valid} mutants killed ({100 * killed / max(valid, 1):.0f}%)")
    by_file: dict[str, list[int]] = {}
    for m, o, _ in rows:
        k = by_file.setdefault(m.file, [0, 0])
        k[0] += o.startswith("killed") or o == "timeout"
        k[1] += not o.startswith("BAD")
    print("\n| file | killed / mutants |\n|---|---|")
    for f, (k, n) in by_file.items():
        print(f"| `{f}` | {k} / {n} |")
    survivors = [m for m, o, _ in rows if o == "survived"]
    if survivors:
        print("\nsurvived:")
        for m in survivors:
            print(f"  {m.id}: {m.file}: {m.old.strip()!r} -> {m.new.strip()!r}")


if __name__ == "__main__":
    main()
