"""The authors' DDColor network, as ModelScope ships it on PyPI (`modelscope`, a dev dependency).

ModelScope's `models/cv/image_colorization/ddcolor/` holds the authors' own network code (the model behind
`ddcolor_modelscope`). Importing it through `modelscope` would pull in ModelScope's whole framework, so its
folder is mounted as a package of its own and only the network module is imported (it needs torch and timm).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

PACKAGE = "_authors_ddcolor"


def authors_ddcolor_class() -> Any:
    """ModelScope's `DDColor` class, or a skip when the dev dependency is missing."""
    spec = importlib.util.find_spec("modelscope")  # finds the folder without running modelscope's __init__
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the `modelscope` package (dev dependency) is not installed")
    pytest.importorskip("timm", reason="ModelScope's ConvNeXt needs timm (dev dependency)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "cv" / "image_colorization" / "ddcolor"
    if not (folder / "ddcolor.py").is_file():
        pytest.skip(f"this modelscope version has no DDColor network at {folder}")
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.ddcolor").DDColor


def authors_network(state_dict: dict[str, Any], encoder_name: str = "convnext-t") -> Any:
    """The authors' network holding `state_dict`, in eval mode.

    The authors' constructor randomly initialises every weight (seconds on a small CPU) only for the state dict
    to replace them all; the init functions are skipped while it runs. What the state dict does not hold is
    returned by `load_state_dict` and checked by the caller.
    """
    import torch

    ddcolor_class = authors_ddcolor_class()
    convnext = sys.modules[f"{PACKAGE}.utils.convnext"]
    with _init_skipped(torch.nn.init, convnext):
        network = ddcolor_class(encoder_name=encoder_name, input_size=(64, 64), num_queries=100)
    result = network.load_state_dict(state_dict, strict=False)
    return network.eval(), result


@contextmanager
def _init_skipped(*modules: types.ModuleType) -> Iterator[None]:
    names = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_")
    with ExitStack() as stack:
        for module in modules:
            for name in names:
                if hasattr(module, name):
                    stack.enter_context(mock.patch.object(module, name, _unchanged))
        yield


def _unchanged(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    return tensor
