"""Upload spool files left behind by a process that was killed (SIGKILL, the out-of-memory killer, a power cut).

An upload is spooled to `<data dir>/tmp/upload-XXXX` (server/uploads.py) and moved or removed within its request;
a process killed in between leaves it there for good, up to the upload limit each. A data dir belongs to one server
(docs/scaleout.md), and the sweep runs at start before any request is served, so every such file is stale.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "upload-"  # what server/uploads.py names its spool files


def sweep_stale_uploads(tmp_dir: Path) -> int:
    """Remove every leftover upload spool file in `tmp_dir`; how many. Blocking: run it in a thread."""
    removed = 0
    try:
        entries = list(tmp_dir.iterdir())
    except FileNotFoundError:
        return 0
    for path in entries:
        if not path.name.startswith(UPLOAD_PREFIX):
            continue
        try:
            if stat.S_ISDIR(path.lstat().st_mode):  # never ours; a link is removed, never followed
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove stale upload %s: %s", path.name, exc)
    if removed:
        log.warning("removed %d upload file(s) left in %s by a process that did not finish them", removed, tmp_dir)
    return removed
