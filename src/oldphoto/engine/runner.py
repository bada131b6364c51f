from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from oldphoto.engine.context import NodeContext, QueryMapsSink, RunOptions
from oldphoto.engine.graph import Workflow
from oldphoto.engine.nodes import NODE_TYPES
from oldphoto.engine.previews import Previews
from oldphoto.engine.reporter import Reporter

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RunOptions", "run_workflow", "warm_up"]


def run_workflow(
    workflow: Workflow,
    image: np.ndarray,
    *,
    options: RunOptions,
    reporter: Reporter,
    previews: Previews | None = None,
    query_maps: QueryMapsSink | None = None,
) -> np.ndarray:
    """Run the nodes in dependency order and return SaveImage's image. Raises `Cancelled` when cancelled."""
    previews = previews or Previews()
    nodes = {node_id: NODE_TYPES[workflow.nodes[node_id].type].build(workflow.nodes[node_id]) for node_id in workflow.order}
    total = sum(node.cost() for node in nodes.values()) or 1.0
    reporter.plan_for(workflow, image.shape[0] * image.shape[1])
    done = 0.0
    values: dict[str, tuple] = {}
    last_reader = {link.source: node_id for node_id in workflow.order for link in workflow.nodes[node_id].inputs.values()}
    for node_id, node in nodes.items():
        reporter.cancel.check()
        share = node.cost() / total
        report = reporter.for_node(node_id, node.source, done, done + share)
        inputs = {name: values[link.source][link.output] for name, link in node.spec.inputs.items()}
        values[node_id] = node.run(NodeContext(report, options, image, previews, query_maps), **inputs)
        # An output nobody reads any more is let go: memory holds the images still to be read, not every step's
        # (engine/cost.py counts it so).
        for link in node.spec.inputs.values():
            if last_reader.get(link.source) == node_id:
                values.pop(link.source, None)
        del inputs
        done += share
    reporter.cancel.check()
    return values[workflow.output_node.id][0]


def warm_up(options: RunOptions, types: Iterable[str] | None = None) -> list[str]:
    """Let the node types (all, or these) get ready for jobs run with these options, where that is cheap; returns
    the types that did something."""
    wanted = NODE_TYPES.keys() if types is None else [name for name in NODE_TYPES if name in set(types)]
    return [name for name in wanted if NODE_TYPES[name].warm(options)]
