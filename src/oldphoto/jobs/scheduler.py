"""A fair queue: round robin across users, first come first served within one user.

One user's fifty jobs do not starve another user's single job: users take turns, each turn starting one job.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class FairQueue:
    def __init__(self) -> None:
        # Users in turn order; each with their waiting jobs in arrival order.
        self._users: OrderedDict[str, deque[str]] = OrderedDict()
        self._owner: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._owner

    def push(self, job_id: str, owner: str) -> None:
        if job_id in self._owner:
            return
        self._owner[job_id] = owner
        self._users.setdefault(owner, deque()).append(job_id)

    def push_many(self, entries: list[tuple[str, str]]) -> list[int]:
        """Jobs (id, owner) in order; their places once all are in. A job that opens its owner's lane is at the
        back of the line at depth 0: its place is known without a walk (place_of walks the lanes for the others)."""
        lanes_before, opened = len(self._users), dict[str, int]()
        for job_id, owner in entries:
            if owner not in self._users:
                opened[job_id] = lanes_before + len(opened) + 1
            self.push(job_id, owner)
        return [opened.get(job_id) or self.place_of(job_id) or 1 for job_id, _ in entries]

    def pop(self) -> str | None:
        if not self._users:
            return None
        owner, jobs = next(iter(self._users.items()))
        job_id = jobs.popleft()
        del self._owner[job_id]
        del self._users[owner]
        if jobs:
            self._users[owner] = jobs  # back of the line for this user's next job
        return job_id

    def remove(self, job_id: str) -> bool:
        owner = self._owner.pop(job_id, None)
        if owner is None:
            return False
        jobs = self._users[owner]
        jobs.remove(job_id)
        if not jobs:
            del self._users[owner]
        return True

    def place_of(self, job_id: str) -> int | None:
        """One job's 1-based place without working out everyone's: O(1) for a user's first job, else O(users)."""
        owner = self._owner.get(job_id)
        if owner is None:
            return None
        lane = self._users[owner]
        depth = lane.index(job_id)  # at most a user's concurrency limit
        if depth == 0 and next(reversed(self._users)) == owner:
            return len(self._users)  # a new user's lane is the last: one turn of every lane comes first
        # Ahead: every lane's jobs shallower than this one, and the lanes before its own that reach as deep.
        ahead, own_lane_passed = 0, False
        for other, jobs in self._users.items():
            if other == owner:
                own_lane_passed = True
                ahead += depth
                continue
            ahead += min(len(jobs), depth) + (1 if not own_lane_passed and len(jobs) > depth else 0)
        return ahead + 1

    def positions(self) -> dict[str, int]:
        """Each waiting job's 1-based place: the order in which `pop` would hand them out."""
        lanes = [list(jobs) for jobs in self._users.values()]
        order: dict[str, int] = {}
        depth = 0
        while len(order) < len(self._owner):
            for lane in lanes:
                if depth < len(lane):
                    order[lane[depth]] = len(order) + 1
            depth += 1
        return order
