"""The editors' JSON Schemas: schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from slotkeeper.cli.codes import EXIT_OK
from slotkeeper.cli.common import (
    _print_json,
)
from slotkeeper.manifests import (
    json_schema,
)

if TYPE_CHECKING:
    pass


@click.command()
@click.option(
    "--targets",
    "of_targets",
    is_flag=True,
    help="The schema of a Target document of the operator's targets file instead.",
)
@click.option(
    "--notifier",
    "of_notifiers",
    is_flag=True,
    help="The schema of a Notifier document of the operator's targets file instead.",
)
def schema(of_targets: bool, of_notifiers: bool) -> int:
    """Print the JSON Schema of a manifest document (or of a targets file document)."""
    if of_targets and of_notifiers:
        raise click.UsageError("give --targets or --notifier, not both")
    kind = "Target" if of_targets else "Notifier" if of_notifiers else "Environment"
    _print_json(json_schema(kind))
    return EXIT_OK
