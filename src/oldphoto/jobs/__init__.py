"""The job system: lifecycle, durable store with the event log, fair scheduler, worker processes, event bus.

Knows no HTTP: the server (or any other front) talks to `JobService`.
"""
