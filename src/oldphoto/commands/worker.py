from __future__ import annotations

import argparse
import sys

from oldphoto.cli import EXIT_USAGE
from oldphoto.settings import get_settings


def worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.scale_out:
        print("oldphoto worker needs OLDPHOTO_BROKER_URL and OLDPHOTO_DATABASE_URL (see docs/deploy.md).", file=sys.stderr)
        return EXIT_USAGE
    print("The distributed engine is not part of this release yet; run `oldphoto serve` (embedded workers).", file=sys.stderr)
    return EXIT_USAGE
