from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oldphoto.engine.context import NodeContext, RunOptions
from oldphoto.engine.graph import NodeSpec
from oldphoto.errors import InvalidWorkflow
from oldphoto.protocol import Source


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Node(ABC):
    """A workflow step. Images flow between nodes as RGB uint8 arrays of shape (H, W, 3)."""

    type_name: ClassVar[str]
    source: ClassVar[Source] = "system"
    # Relative cost, used to share the job's progress bar between nodes.
    weight: ClassVar[float] = 1.0
    input_names: ClassVar[tuple[str, ...]] = ("image",)
    output_names: ClassVar[tuple[str, ...]] = ("image",)
    Options: ClassVar[type[BaseModel]] = NoOptions
    # The seed form gives options positionally in `widgets_values`; these name the positions.
    widget_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: NodeSpec, options: BaseModel) -> None:
        self.spec = spec
        self.options = options

    @classmethod
    def options_from(cls, spec: NodeSpec) -> BaseModel:
        if len(spec.widgets) > len(cls.widget_fields):
            raise InvalidWorkflow(
                f"{cls.type_name} takes at most {len(cls.widget_fields)} widget values, got {len(spec.widgets)}", node=spec.id
            )
        values = dict(zip(cls.widget_fields, spec.widgets))
        values.update(spec.params)
        try:
            return cls.Options.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "options"
            raise InvalidWorkflow(f"{where}: {first['msg']}", node=spec.id) from None

    @classmethod
    def check_spec(cls, spec: NodeSpec, options: RunOptions) -> None:
        """Refuse a bad node before anything runs; `options` are those the workflow will run with."""
        cls.options_from(spec)

    @classmethod
    def warm(cls, options: RunOptions) -> bool:
        """Get ready in a fresh worker, before its first job, where that is cheap (nothing to download or export);
        returns whether it did anything. Runs on a thread of its own; must not fail."""
        return False

    @classmethod
    def build(cls, spec: NodeSpec) -> Node:
        return cls(spec, cls.options_from(spec))

    def cost(self) -> float:
        return self.weight

    # Each node names its own inputs as keyword arguments (`*, image: np.ndarray`); `*args: Any, **inputs: Any` is how
    # a type checker lets every subclass choose them. The runner passes them by name: `node.run(ctx, **inputs)`.
    @abstractmethod
    def run(self, ctx: NodeContext, *args: Any, **inputs: Any) -> tuple[Any, ...]: ...
