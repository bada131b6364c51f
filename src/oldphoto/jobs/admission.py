"""The limits a job must pass to be admitted, the same in both wirings (the counts come from where each keeps them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from oldphoto.jobs.errors import QueueFull, ShareLimit, UserLimit

T = TypeVar("T")
# What the rules refuse: that admission's answer; any other error fails its whole batch.
REFUSALS = (UserLimit, QueueFull)  # ShareLimit is a UserLimit


@dataclass(frozen=True)
class AdmissionRules:
    user_concurrency: int = 3
    queue_max: int = 1000
    retry_after_s: int = 60

    def check(self, active_of_owner: int, waiting: int, active_of_share: int | None = None) -> None:
        """`active_of_owner`: the owner's queued and running jobs; `waiting`: every queued job; `active_of_share`:
        those of the job's share (NewJob.share), which together get one user's room, when it has one."""
        if active_of_owner >= self.user_concurrency:
            raise UserLimit(
                f"You already have {active_of_owner} jobs queued or running; the limit is {self.user_concurrency}. "
                "Wait for one to finish or cancel one.",
                retry_after=self.retry_after_s,
            )
        if active_of_share is not None and active_of_share >= self.user_concurrency:
            raise ShareLimit(
                f"Sessions without an account from your network already have {active_of_share} jobs queued or running; "
                f"together they may have {self.user_concurrency}. Wait for one to finish, or sign in.",
                retry_after=self.retry_after_s,
            )
        if waiting >= self.queue_max:
            raise QueueFull("The queue is full right now. Please try again in a little while.", retry_after=self.retry_after_s)


def only(answers: Sequence[T | BaseException]) -> T:
    """The answer of a batch of one: its value, or its exception raised."""
    (answer,) = answers
    if isinstance(answer, BaseException):
        raise answer
    return answer
