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
UNITS = ("oldphoto-web@.service", "oldphoto-worker@.service")  # templates: the instance is a port
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
    instance = tmp_path / name.replace("@", "@8001")  # a template is verified as one of its instances
    instance.write_text(here.replace(INSTALLED_ENV, str(DEPLOY / "oldphoto.env")))
    done = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize(("name", "command"), [("oldphoto-web@.service", "serve"), ("oldphoto-worker@.service", "worker")])
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


@pytest.mark.parametrize(("name", "port_flag"), [("oldphoto-web@.service", "--port"), ("oldphoto-worker@.service", "--metrics-port")])
def test_two_instances_on_one_machine_take_their_own_port_and_data_dir(name: str, port_flag: str) -> None:
    """Two web nodes sharing a data dir would sweep each other's upload spool at a restart; two worker nodes would
    ask for one metrics port."""
    command = directives(DEPLOY / name)["ExecStart"].split()
    assert command[command.index(port_flag) + 1] == "%i"
    data_dir = command[command.index("--data-dir") + 1]
    assert data_dir.endswith("-%i") and data_dir.removeprefix("/var/lib/") in directives(DEPLOY / name)["StateDirectory"].split()


@pytest.mark.parametrize(("command", "flags"), [("serve", ["--data-dir", "x", "--port", "1"]), ("worker", ["--data-dir", "x", "--metrics-port", "1"])])
def test_the_flags_the_units_give_are_the_commands_own(command: str, flags: list[str]) -> None:
    from oldphoto.cli import build_parser

    parsed = build_parser().parse_args([command, *flags])
    assert parsed.data_dir == "x"
