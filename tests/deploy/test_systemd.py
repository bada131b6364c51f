"""The systemd units of deploy/: checked by `systemd-analyze verify` where it exists (any warning fails), and for
what a stop needs: SIGTERM to the node alone, a stop timeout above the drain's grace, an environment file of real
settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oldphoto.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("oldphoto-web.service", "oldphoto-worker.service")
INSTALLED_BIN = "/opt/oldphoto/.venv/bin/oldphoto"
INSTALLED_ENV = "/etc/oldphoto/oldphoto.env"


def directives(unit: Path) -> dict[str, str]:
    """`Key=value` of a unit file's [Service] section (the last one of a key, as systemd reads it)."""
    found, section = {}, ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found[key] = value
    return found


@pytest.mark.parametrize("name", UNITS)
def test_systemd_verifies_the_unit_without_a_warning(name: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not on this machine")
    # The unit as installed on this machine: its program and environment file where they are here.
    here = (DEPLOY / name).read_text().replace(INSTALLED_BIN, str(Path(sys.executable).parent / "oldphoto"))
    (tmp_path / name).write_text(here.replace(INSTALLED_ENV, str(DEPLOY / "oldphoto.env")))
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize(("name", "command"), [("oldphoto-web.service", "serve"), ("oldphoto-worker.service", "worker")])
def test_a_stop_reaches_the_node_alone_and_leaves_the_drain_its_grace(name: str, command: str) -> None:
    service = directives(DEPLOY / name)
    assert service["ExecStart"].split()[:2] == [INSTALLED_BIN, command]
    # With systemd's default (control-group) the job processes get the SIGTERM too and die mid-job.
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) >= Settings().drain_grace_s + 30
    assert service["EnvironmentFile"] == INSTALLED_ENV


def test_the_environment_file_names_only_real_settings() -> None:
    names = [line.split("=", 1)[0] for line in (DEPLOY / "oldphoto.env").read_text().splitlines() if line and not line.startswith("#")]
    fields = {f"OLDPHOTO_{name.upper()}" for name in Settings.model_fields}
    assert names and [n for n in names if n not in fields] == []
