"""`oldphoto db upgrade | current` as an operator runs them, and every node that cannot open its store: a non-zero
exit with a one-line reason, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oldphoto.jobs import migrate

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/oldphoto"


def oldphoto(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith("OLDPHOTO_")}
    return subprocess.run([sys.executable, "-m", "oldphoto", *args], check=False, capture_output=True, text=True, env={**scrubbed, **env}, timeout=120)


def test_db_upgrade_migrates_the_data_dirs_sqlite_file_and_current_says_so(tmp_path: Path) -> None:
    env = {"OLDPHOTO_DATA_DIR": str(tmp_path / "data")}  # not there yet: a first start
    assert oldphoto("db", "current", env={"OLDPHOTO_DATA_DIR": str(tmp_path)}).stdout == "none\n"
    upgraded = oldphoto("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert migrate.current(f"sqlite:///{tmp_path / 'data' / 'jobs.sqlite3'}") == migrate.head()
    current = oldphoto("db", "current", env=env)
    assert (current.returncode, current.stdout) == (0, f"{migrate.head()}\n")


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["serve", "--port", "1"], ["worker"]])
@pytest.mark.parametrize("store", ["unreachable postgresql", "unwritable sqlite", "no such driver"])
def test_a_node_that_cannot_open_its_store_says_why_in_one_line(command: list[str], store: str, tmp_path: Path) -> None:
    if store == "unwritable sqlite":
        (tmp_path / "a-file").write_text("")
        url = f"sqlite:///{tmp_path / 'a-file' / 'jobs.sqlite3'}"  # a folder that cannot be made, even by root
    elif store == "no such driver":
        url = "postgres://postgres@127.0.0.1/oldphoto"  # SQLAlchemy 2 spells it postgresql
    else:
        url = UNREACHABLE_POSTGRES
    env = {"OLDPHOTO_DATABASE_URL": url, "OLDPHOTO_BROKER_URL": "redis://127.0.0.1:1/0", "OLDPHOTO_DATA_DIR": str(tmp_path / "data")}
    done = oldphoto(*command, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"oldphoto {command[0]}") and "job store" in lines[0], done.stderr
