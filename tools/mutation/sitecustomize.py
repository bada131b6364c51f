"""Loaded by every Python process of a `make mutate` run (tools/mutation is on its PYTHONPATH).

mutmut learns which tests cover which function by counting trampoline hits in its own process. The servers and
workers that the tests start (`python -m oldphoto serve`, spawned workers) hit the mutated code in other processes,
so their hits are lost and a function reached only through a real server would count as "no tests". Here each such
process appends its hits to the file named by OLDPHOTO_MUTMUT_HITS, and tools/mutation/mutmut_hits.py (a pytest
plugin in the mutmut process) credits them to the test that was running. Outside a stats run this does nothing.
"""

from __future__ import annotations

import os


def _install() -> None:
    path = os.environ.get("OLDPHOTO_MUTMUT_HITS")
    if not path or os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    try:
        from mutmut.mutation import trampoline
    except ImportError:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    original = trampoline.record_trampoline_hit

    def record(name: str, caller: str | None = None) -> None:
        os.write(fd, f"{name}\n".encode())  # one short O_APPEND write: whole lines, whatever the process count
        original(name, caller)

    trampoline.record_trampoline_hit = record


_install()
