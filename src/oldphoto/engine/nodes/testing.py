"""Steps for testing the job system with real processes; registered only when OLDPHOTO_TEST_NODES=1.

`Pause` takes a known time and honours cancel like a model does; `Crash` kills its own worker process, as a
segfault or the out-of-memory killer would.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from oldphoto.engine.context import NodeContext
from oldphoto.engine.nodes.base import Node

if TYPE_CHECKING:
    import numpy as np

ENABLED = os.environ.get("OLDPHOTO_TEST_NODES") == "1"


class PauseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(1.0, ge=0.0, le=60.0)


class Pause(Node):
    type_name = "Pause"
    Options = PauseOptions
    widget_fields = ("seconds",)
    options: PauseOptions

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        ctx.report.stage("inference")
        steps = max(1, int(self.options.seconds / 0.05))
        for i in range(steps):
            time.sleep(self.options.seconds / steps)
            ctx.report.count(i + 1, steps, "step")
        return (image,)


class Crash(Node):
    type_name = "Crash"

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        ctx.report.stage("inference")
        os._exit(70)


class Fail(Node):
    """An error of the code, not of the photo: the worker logs it with its traceback and the job fails."""

    type_name = "Fail"

    def run(self, ctx: NodeContext, *, image: np.ndarray) -> tuple[np.ndarray]:
        ctx.report.stage("inference")
        raise RuntimeError("the Fail test node failed on purpose")


TEST_NODES: tuple[type[Node], ...] = (Pause, Crash, Fail) if ENABLED else ()
