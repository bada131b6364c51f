"""`make mutate`: mutation testing of the modules that carry the promises (issue 17, docs/testing.md).

    python tools/mutate.py                 # every module of MODULES, then the report
    python tools/mutate.py jobs.scheduler  # some of them (the report still covers all that have results)
    python tools/mutate.py --report        # only the report, from the results in mutants/

mutmut (pinned in the dev extra) copies src/ into mutants/, rewrites each function of the modules listed under
[tool.mutmut] only_mutate in pyproject.toml into a trampoline, runs the test selection listed there once to learn
which tests reach which function, and then runs each mutant in a forked process against only those tests. MODULES
below narrows that, per module, to the module's own focused tests: a mutant runs against the tests that both reach
its function and are listed for its module.

Real servers and workers that the tests start (`python -m oldphoto serve`, spawned workers) import from mutants/src
(PYTHONPATH below) and inherit the active mutant through MUTANT_UNDER_TEST; tools/mutation/ credits their hits to
the test that started them, so code reached only across a socket counts as covered and is mutated too.

One module at a time, each a `mutmut run "oldphoto.<module>.*"`, so that its time can be told. Set
OLDPHOTO_MUTATE_PAUSE_FILE to a path to hold off between modules while that file exists (a shared machine's
"quiet, benchmarks running" flag).

The report: per module, killed (a test failed, or the mutant hung past its timeout), survived, no tests (no test of
the selection reached the function), and the score: caught / (all - equivalent). tools/mutation/equivalent.toml
names the survivors judged equivalent, each with its reason; they are left out of the score and listed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENT = ROOT / "tools" / "mutation" / "equivalent.toml"
REPORT = MUTANTS / "report.md"
TARGET = 0.90

# Each module and the tests it is run against: of the tests of the selection in pyproject.toml that reach a mutated
# function, only those under these paths run (a server-wide test that happens to pass through a module is not what
# guards its promises, and would cost a server start per mutant). An empty list: not run yet (docs/testing.md).
MODULES: dict[str, list[str]] = {
    "jobs.service": ["tests/jobs/test_embedded.py", "tests/distributed/test_web.py"],
    "jobs.scheduler": ["tests/jobs/test_scheduler.py"],
    "jobs.sharedqueue": ["tests/jobs/test_sharedqueue.py"],
    "jobs.store": [
        "tests/jobs/test_store.py",
        "tests/jobs/test_lifecycle.py",
        "tests/jobs/test_recorder.py",
        "tests/jobs/test_leases.py",
        "tests/jobs/test_sharedqueue.py",
        "tests/jobs/test_embedded.py",
        "tests/distributed/test_web.py",
    ],
    "jobs.recorder": ["tests/jobs/test_recorder.py"],
    "jobs.lifecycle": ["tests/jobs/test_lifecycle.py", "tests/jobs/test_store.py"],
    "server.follow": ["tests/server/test_follow.py", "tests/distributed/test_events.py"],
    "server.outbox": ["tests/server/test_outbox.py", "tests/server/test_follow.py"],
    "server.uploads": [],
    "server.auth": ["tests/server/test_auth.py"],
    "server.origins": ["tests/server/test_origins.py"],
    "server.ws": [],
    "server.sse": [],
    "engine.reporter": ["tests/engine/test_reporter.py"],
    "engine.graph": ["tests/engine/test_graph.py", "tests/engine/test_graph_hostile.py"],
    "engine.cancel": ["tests/engine/test_reporter.py"],
    "models.ddcolor.pipeline": ["tests/models/test_ddcolor_pipeline.py"],
}

# mutmut's exit codes, grouped the way the report counts them.
KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_of(mutant: str) -> str:
    """'oldphoto.jobs.store.xǁJobStoreǁcreate__mutmut_3' -> 'jobs.store'."""
    head = mutant.split("ǁ", 1)[0] if "ǁ" in mutant else mutant.rsplit("__mutmut_", 1)[0]
    parts = head.removeprefix("oldphoto.").split(".")
    return ".".join(parts[:-1])


def environment() -> dict[str, str]:
    paths = [str(MUTANTS / "src"), str(ROOT / "tools" / "mutation")]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


def wait_while_paused() -> None:
    flag = os.environ.get("OLDPHOTO_MUTATE_PAUSE_FILE")
    while flag and Path(flag).exists():
        print(f"    {flag} exists: waiting", flush=True)
        time.sleep(30)


def mutmut(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("mutmut")), *args], cwd=ROOT, env=environment(), check=False)


def keep_mapped_tests(module: str) -> None:
    """Narrow mutmut's measured tests of each of the module's functions to the module's own tests."""
    stats_path = MUTANTS / "mutmut-stats.json"
    stats = json.loads(stats_path.read_text())
    prefix = f"oldphoto.{module}."
    tests = stats["tests_by_mangled_function_name"]
    for function, names in tests.items():
        if function.startswith(prefix):
            tests[function] = [n for n in names if n.split("::", 1)[0] in MODULES[module]]
    stats_path.write_text(json.dumps(stats, indent=1))


def run_module(module: str) -> float:
    started = time.monotonic()
    # A failing example that Hypothesis saved during one mutant's run is replayed in every later one: a real failure
    # found there (engine/graph.py's long link messages, issue 17) once made every later mutant count as killed.
    shutil.rmtree(MUTANTS / ".hypothesis", ignore_errors=True)
    if not (MUTANTS / "mutmut-stats.json").exists():
        # The first run also measures which test reaches which function (the whole selection, once); cancel's four
        # mutants are the cheapest way there. It is run again, narrowed, in its turn.
        mutmut("run", "oldphoto.engine.cancel.*")
    keep_mapped_tests(module)
    mutmut("run", f"oldphoto.{module}.*")
    return time.monotonic() - started


def load_results() -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for meta in (MUTANTS / "src").rglob("*.py.meta"):
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    return results


def load_equivalent() -> dict[str, str]:
    if not EQUIVALENT.exists():
        return {}
    return {name: entry["why"] for name, entry in tomllib.loads(EQUIVALENT.read_text()).items()}


def report(times: dict[str, float]) -> str:
    results = load_results()
    equivalent = load_equivalent()
    rows = []
    totals: Counter[str] = Counter()
    for module in MODULES:
        mine = {name: code for name, code in results.items() if module_of(name) == module}
        if not mine or all(code is None for code in mine.values()):
            rows.append(f"| {module} | not run | | | | | | |")
            continue
        if any(code is None for code in mine.values()):
            unchecked = sum(code is None for code in mine.values())
            rows.append(f"| {module} | interrupted: {unchecked} of {len(mine)} not checked | | | | | | |")
            continue
        count: Counter[str] = Counter()
        for name, code in mine.items():
            if name in equivalent and code in SURVIVED | NO_TESTS:
                count["equivalent"] += 1
            elif code in KILLED:
                count["killed"] += 1
            elif code in TIMEOUT:
                count["timeout"] += 1
            elif code in SURVIVED:
                count["survived"] += 1
            elif code in NO_TESTS:
                count["no tests"] += 1
            else:
                count["other"] += 1
        count["all"] = len(mine)
        totals.update(count)
        rows.append(row(module, count, times.get(module)))
    rows.append(row("**all**", totals, sum(times.values()) if times else None))
    header = [
        "| module | mutants | killed | timeout | survived | no tests | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    finished = {m for m in MODULES if all(c is not None for n, c in results.items() if module_of(n) == m)}
    survivors = sorted(n for n, c in results.items() if c in SURVIVED | NO_TESTS and n not in equivalent and module_of(n) in finished)
    lines = [*header, *rows, ""]
    judged = sorted(n for n, c in results.items() if n in equivalent and c in SURVIVED | NO_TESTS)
    if judged:
        lines += ["Survivors judged equivalent (tools/mutation/equivalent.toml):", "", *(f"- `{n}`: {equivalent[n]}" for n in judged), ""]
    if survivors:
        lines += ["Survivors not judged equivalent (each needs a test):", "", *(f"- `{n}`" for n in survivors), ""]
    return "\n".join(lines)


def row(module: str, count: Counter[str], seconds: float | None) -> str:
    caught = count["killed"] + count["timeout"]
    relevant = count["all"] - count["equivalent"]
    score = f"{100 * caught / relevant:.1f} %" if relevant else "-"
    took = f" ({seconds / 60:.1f} min)" if seconds else ""
    return (
        f"| {module}{took} | {count['all']} | {count['killed']} | {count['timeout']} | {count['survived']} | "
        f"{count['no tests']} | {count['equivalent']} | {score} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"some of: {' '.join(MODULES)} (default: all that have tests)")
    parser.add_argument("--report", action="store_true", help="only print the report of the results in mutants/")
    parser.add_argument("--fresh", action="store_true", help="start from a new copy of src/ (drops earlier results)")
    args = parser.parse_args()
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"not a module of this run: {' '.join(sorted(unknown))}")
    times: dict[str, float] = {}
    times_file = MUTANTS / "times.json"
    if not args.report:
        if args.fresh:
            shutil.rmtree(MUTANTS, ignore_errors=True)
        # It must exist before Python starts: a missing PYTHONPATH entry is remembered as missing for good.
        (MUTANTS / "src").mkdir(parents=True, exist_ok=True)
        if times_file.exists():
            times = json.loads(times_file.read_text())
        for module in args.modules or [m for m, tests in MODULES.items() if tests]:
            wait_while_paused()
            print(f"== {module}", flush=True)
            times[module] = run_module(module)
            times_file.write_text(json.dumps(times, indent=1))
    elif times_file.exists():
        times = json.loads(times_file.read_text())
    text = report(times)
    REPORT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
