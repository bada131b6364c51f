"""oldphoto/logs.py: one JSON object per record, one line whatever it holds."""

from __future__ import annotations

import json
import logging
import sys

from oldphoto.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord("oldphoto.jobs.recorder", logging.ERROR, __file__, 1, "job %s %s", ("j1", "failed"), None)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_line_with_its_job_when_it_has_one() -> None:
    line = JsonFormatter().format(record(job_id="j1"))
    parsed = json.loads(line)
    assert parsed["message"] == "job j1 failed" and parsed["job_id"] == "j1"
    assert parsed["level"] == "ERROR" and parsed["logger"] == "oldphoto.jobs.recorder" and parsed["ts"].endswith("+00:00")
    assert "job_id" not in json.loads(JsonFormatter().format(record()))


def test_a_traceback_stays_inside_its_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = JsonFormatter().format(record(exc_info=sys.exc_info()))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]
