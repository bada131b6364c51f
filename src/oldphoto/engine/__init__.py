"""The workflow engine: parse and validate workflows, run their nodes, report every stage. Knows no HTTP, no jobs."""

from oldphoto.engine.cancel import CancelToken
from oldphoto.engine.graph import NodeSpec, Workflow, parse_workflow, workflow_from_steps
from oldphoto.engine.reporter import NoteSink, Reporter
from oldphoto.engine.runner import RunOptions, run_workflow, warm_up

__all__ = [
    "CancelToken",
    "NodeSpec",
    "NoteSink",
    "Reporter",
    "RunOptions",
    "Workflow",
    "parse_workflow",
    "run_workflow",
    "warm_up",
    "workflow_from_steps",
]
