from __future__ import annotations

import argparse
import sys

from oldphoto.cli import EXIT_FAILED, EXIT_OK
from oldphoto.jobs import migrate
from oldphoto.settings import get_settings


def db(args: argparse.Namespace) -> int:
    url = get_settings().store_url
    if args.db_command == "upgrade" and not store_ready(url, "db upgrade"):
        return EXIT_FAILED
    try:
        print(migrate.current(url) or "none")
    except migrate.StoreUnavailable as exc:
        print(f"oldphoto db {args.db_command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def store_ready(url: str, command: str, *, apart: bool = False) -> bool:
    """Migrates the store (`apart`: in a process of its own, `migrate.upgrade_apart`); False, after one line on stderr
    saying why, where it cannot be reached or migrated."""
    try:
        if apart:
            migrate.upgrade_apart(url)
        else:
            migrate.upgrade(url)
    except migrate.StoreUnavailable as exc:
        print(f"oldphoto {command}: {exc}", file=sys.stderr)
        return False
    return True
