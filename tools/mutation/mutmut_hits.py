"""A pytest plugin for `make mutate`: credit the trampoline hits of child processes to the running test.

See sitecustomize.py beside this file. Loaded with `-p mutmut_hits` (pyproject.toml, [tool.mutmut]); it acts only
in mutmut's stats run (MUTANT_UNDER_TEST=stats).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_hits: Path | None = None
_read_to = 0  # the file only grows (children hold it open for appending): each test reads on from here


def pytest_configure(config: pytest.Config) -> None:
    global _hits
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    handle, name = tempfile.mkstemp(prefix="mutmut-hits-", suffix=".txt")
    os.close(handle)
    _hits = Path(name)
    os.environ["OLDPHOTO_MUTMUT_HITS"] = name  # inherited by every server and worker started from now on


@pytest.hookimpl(tryfirst=True)  # before mutmut's own teardown hook, which files the hits under this test
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _hits is None:
        return
    global _read_to
    from mutmut.state import state

    with _hits.open("rb") as f:
        f.seek(_read_to)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
    _read_to += len(complete)
    state()._stats.update(line for line in complete.decode().split("\n") if line)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _hits
    if _hits is not None:
        os.environ.pop("OLDPHOTO_MUTMUT_HITS", None)
        _hits.unlink(missing_ok=True)
        _hits = None
