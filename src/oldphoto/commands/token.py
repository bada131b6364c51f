from __future__ import annotations

import argparse

from oldphoto.cli import EXIT_OK
from oldphoto.server.auth import Authenticator
from oldphoto.settings import get_settings


def token(args: argparse.Namespace) -> int:
    print(Authenticator(get_settings()).issue(args.user, ttl_s=args.ttl))
    return EXIT_OK
