from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oldphoto.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from oldphoto.errors import OldphotoError
from oldphoto.settings import get_settings


def models(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.models_command == "list":
        return _list(settings.models_dir)
    return _pull(args.name, settings.models_dir)


def _list(models_dir: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    from oldphoto.models.catalog import catalog

    table = Table(title=f"Models (cache: {models_dir})")
    for column in ("name", "kind", "size", "where", "about"):
        table.add_column(column)
    for entry in catalog(models_dir):
        where = entry["path"] if entry["cached"] else f"not downloaded: oldphoto models pull {entry['name']}"
        table.add_row(entry["name"], entry["kind"], f"~{entry['approx_mb']} MB", where, entry["description"])
    Console().print(table)
    return EXIT_OK


def _pull(name: str, models_dir: Path) -> int:
    from oldphoto.models import realesrgan
    from oldphoto.models.registry import DDCOLOR_MODELS
    from oldphoto.models.store import ModelStore

    if name in realesrgan.known_models(models_dir):
        print(f"{name} ships with the package; nothing to download.")
        return EXIT_OK
    if name not in DDCOLOR_MODELS:
        print(f"oldphoto: unknown model {name!r}; known: {', '.join(DDCOLOR_MODELS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        path = ModelStore(models_dir).pull(name)
    except OldphotoError as exc:
        print(f"oldphoto: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name}: {path}")
    return EXIT_OK
