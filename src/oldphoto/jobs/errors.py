from __future__ import annotations

from oldphoto.errors import OldphotoError


class UserLimit(OldphotoError):
    code = "user_limit"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShareLimit(UserLimit):
    """The jobs of everyone in one share (the anonymous sessions of one client address) are at the user limit."""

    code = "address_limit"


class QueueFull(OldphotoError):
    code = "queue_full"
    http_status = 503

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobNotFound(OldphotoError):
    code = "not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("There is no such job.")


class AlreadyFinished(OldphotoError):
    code = "already_finished"
    http_status = 409
