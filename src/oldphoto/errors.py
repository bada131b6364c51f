"""Errors that cross layers. Each carries the machine `code` of SPEC and a sentence for people."""

from __future__ import annotations


class OldphotoError(Exception):
    code = "internal_error"
    http_status = 500
    # Fields an HTTP error body carries beside `error` and `code` (the numbers of an `over_budget`).
    extra: dict[str, object] = {}  # noqa: RUF012 - never mutated: instances replace it

    def __init__(self, message: str, *, code: str | None = None, node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.node = node


class BadInput(OldphotoError):
    code = "invalid_input"
    http_status = 400


class InvalidWorkflow(BadInput):
    code = "invalid_workflow"

    def __init__(self, message: str, *, node: str | None = None) -> None:
        prefix = f"node {node!r}: " if node is not None else ""
        super().__init__(prefix + message, node=node)


class InvalidImage(OldphotoError):
    code = "invalid_image"
    http_status = 422


class UnsupportedFormat(OldphotoError):
    code = "unsupported_format"
    http_status = 415


class TooLarge(OldphotoError):
    code = "too_large"
    http_status = 413


class TooManyPixels(OldphotoError):
    code = "too_many_pixels"
    http_status = 413


class ModelMissing(OldphotoError):
    code = "model_missing"
    http_status = 503


class ModelInvalid(OldphotoError):
    code = "model_invalid"
    http_status = 400


class OutOfMemory(OldphotoError):
    code = "out_of_memory"
    http_status = 503


class Cancelled(OldphotoError):
    """Raised inside a run when its cancel token is set; the run leaves no output behind."""

    code = "cancelled"
    http_status = 409

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
