"""How `oldphoto serve` and `oldphoto worker` write their logs: one JSON object per line by default (ts, level,
logger, message, and `job_id` when the record concerns a job: `extra={"job_id": ...}`), or the older human-readable
text (OLDPHOTO_LOG_FORMAT=text).

JSON because a log collector then needs no parser per message, and a job's lines are found by a field, not by a
pattern. A traceback stays inside its record (`exc_info`), so one record is one line whatever it holds.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def config(fmt: LogFormat, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process: uvicorn's loggers (uvicorn applies it as its
    `log_config`) and ours, through one handler on stderr."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    own = {"handlers": ["main"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "loggers": {"uvicorn": own, "uvicorn.access": own, "oldphoto": own},
        "root": {"handlers": ["main"], "level": "WARNING"},
    }
