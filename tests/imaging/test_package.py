"""The package's names: decoding and encoding are loaded when first asked for, and every listed name is there."""

from __future__ import annotations

import subprocess
import sys

import pytest

import oldphoto.imaging as imaging


def test_every_listed_name_is_there_and_no_other() -> None:
    assert all(getattr(imaging, name) is not None for name in imaging.__all__)
    assert imaging.probe.__module__ == "oldphoto.imaging.probe"  # the function, not the module of the same name
    with pytest.raises(AttributeError):
        imaging.no_such_name


def test_probing_loads_neither_numpy_nor_pillow() -> None:
    code = "import sys\nfrom oldphoto.imaging import check_declared, probe, write_atomic\nprint(sorted({'numpy', 'PIL', 'cv2'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"
