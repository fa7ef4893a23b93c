"""The figures of a ``mutmut run`` over the contract (``make mutation``), and whether they meet the
targets: at least 90 % of all mutants killed (a timeout counts as killed), and at least 95 % once
the equivalent mutants listed in ``mutation/equivalent-mutants.txt`` are set aside.

Reads the result files mutmut 3.8.1 leaves beside each mutated module (``mutants/<path>.meta``,
JSON: ``exit_code_by_key`` maps each mutant to the exit code of its test run) and prints the score
per module and in total, then every surviving mutant not on the list. Exits 1 when a target is
missed, when a mutant was not run, or when the list names a mutant that no longer exists or that the
tests now kill (the list must stay true). Standard library only.

    python mutation/report.py [--show]   # --show: each unlisted survivor's diff (``mutmut show``)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = Path("src/otel_portkey/_contract")
EQUIVALENTS = Path(__file__).resolve().parent / "equivalent-mutants.txt"
TARGET_ALL = 90.0
TARGET_WITHOUT_EQUIVALENTS = 95.0

# mutmut 3.8.1's meaning of a mutant's exit code (mutmut/stats.py, ``status_by_exit_code``).
STATUS = {
    1: "killed",
    3: "killed",  # an internal error in pytest is a kill
    0: "survived",
    5: "no tests",
    33: "no tests",
    2: "interrupted",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    24: "timeout",  # SIGXCPU
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    -11: "segfault",
    -9: "segfault",
}
DETECTED = {"killed", "timeout"}


def status(code: int | None) -> str:
    return "not checked" if code is None else STATUS.get(code, "suspicious")


def load_results(root: Path) -> dict[str, dict[str, str]]:
    """Mutant name -> status, per module (``call.py``, ...)."""
    results: dict[str, dict[str, str]] = {}
    for meta in sorted((root / "mutants" / CONTRACT).glob("*.py.meta")):
        codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        if codes:
            results[meta.name.removesuffix(".meta")] = {name: status(code) for name, code in codes.items()}
    return results


def load_equivalents(path: Path) -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour (``name  # reason``, one a line)."""
    equivalents: dict[str, str] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, reason = line.partition("#")
        if not sep or not name.strip() or not reason.strip():
            raise SystemExit(f"{path.name}:{number}: expected `mutant_name  # why it is equivalent`")
        equivalents[name.strip()] = reason.strip()
    return equivalents


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", action="store_true", help="print each unlisted survivor's diff")
    args = parser.parse_args()
    results = load_results(ROOT)
    if not results:
        print("mutation/report.py: no results under mutants/; run `make mutation`", file=sys.stderr)
        return 1
    equivalents = load_equivalents(EQUIVALENTS)
    every = {name: state for module in results.values() for name, state in module.items()}

    print(f"\nMutation score of {CONTRACT}/ (killed or timed out / mutants)")
    print(f"  {'module':<18} {'killed':>7} {'total':>6} {'score':>7}   {'without equivalents':>21}")
    for module, statuses in [*results.items(), ("all", every)]:
        found = sum(state in DETECTED for state in statuses.values())
        rest = len(statuses) - sum(
            name in equivalents and state not in DETECTED for name, state in statuses.items()
        )
        if module == "all":
            print("  " + "-" * 66)
        score, score_rest = percent(found, len(statuses)), percent(found, rest)
        print(
            f"  {module:<18} {found:>7} {len(statuses):>6} {score:>6.1f}%"
            f"   {found:>5}/{rest:<5} {score_rest:>6.1f}%"
        )
    counts = Counter(every.values())
    print("  by status: " + ", ".join(f"{state} {count}" for state, count in sorted(counts.items())))

    detected = sum(state in DETECTED for state in every.values())
    listed_alive = {name for name in equivalents if name in every and every[name] not in DETECTED}
    score_all = percent(detected, len(every))
    rest = len(every) - len(listed_alive)
    score_rest = percent(detected, rest)
    print(
        f"\n  all mutants:             {detected}/{len(every)} = {score_all:.1f} %"
        f" (target {TARGET_ALL:.0f} %)"
    )
    print(
        f"  equivalents set aside:   {detected}/{rest} = {score_rest:.1f} % (target"
        f" {TARGET_WITHOUT_EQUIVALENTS:.0f} %; {len(listed_alive)} listed in {EQUIVALENTS.name})"
    )

    problems: list[str] = []
    survivors = sorted(
        name for name, state in every.items() if state not in DETECTED and name not in equivalents
    )
    print(f"\nSurviving mutants not listed as equivalent: {len(survivors)}")
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent))
    for name in survivors:
        print(f"  {name}: {every[name]}")
        if args.show and mutmut:
            subprocess.run([mutmut, "show", name], cwd=ROOT, check=False)
    unknown = sorted(set(equivalents) - set(every))
    killed = sorted(name for name in equivalents if name in every and every[name] in DETECTED)
    if unknown:
        problems.append(f"{len(unknown)} listed equivalents are no mutants any more: {', '.join(unknown)}")
    if killed:
        problems.append(f"{len(killed)} listed equivalents are killed by the tests: {', '.join(killed)}")
    not_run = sorted(name for name, state in every.items() if state in ("not checked", "interrupted"))
    if not_run:
        problems.append(f"{len(not_run)} mutants were not run to the end")
    if score_all < TARGET_ALL:
        problems.append(f"{score_all:.1f} % of all mutants killed, under {TARGET_ALL:.0f} %")
    if score_rest < TARGET_WITHOUT_EQUIVALENTS:
        problems.append(
            f"{score_rest:.1f} % killed with the equivalents set aside,"
            f" under {TARGET_WITHOUT_EQUIVALENTS:.0f} %"
        )
    for problem in problems:
        print(f"mutation/report.py: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
