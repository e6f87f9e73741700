"""The ``slotkeeper`` command line: a thin shell over load, plan, execute and the ledger.

Exit codes: 0 success (``--detailed-exitcode``: nothing to do); 1 any error, invalid manifests,
a stale plan, a locked ledger, a failed action or a refused confirmation; 2 only with
``plan --detailed-exitcode``, when the plan has changes, and ``apply --detailed-exitcode``, when
it applied changes; 3 only with ``apply --detailed-exitcode``, when some action was held (a
guard, a freeze, a suspend): CI sees a held production change. Usage errors exit 1 too, so that
2 and 3 keep their one meaning.

Each command lives in a module of this package and is imported only when it runs (see
``LazyGroup``): ``slotkeeper --version`` imports click and nothing of slotkeeper's own.
"""

from __future__ import annotations

import gc
import sys

import click

from slotkeeper import __version__
from slotkeeper.cli.codes import EXIT_ERROR, EXIT_OK
from slotkeeper.cli.lazy import LazyGroup

#: every command: its name, and where it is defined (imported when it is run or listed)
COMMANDS = {
    "validate": "slotkeeper.cli.planning:validate",
    "plan": "slotkeeper.cli.planning:plan_command",
    "apply": "slotkeeper.cli.apply:apply",
    "status": "slotkeeper.cli.reads:status",
    "history": "slotkeeper.cli.reads:history",
    "events": "slotkeeper.cli.reads:events",
    "diff": "slotkeeper.cli.reads:diff_command",
    "keys": "slotkeeper.cli.keys:keys",
    "approve": "slotkeeper.cli.approvals:approve",
    "reject": "slotkeeper.cli.approvals:reject",
    "dora": "slotkeeper.cli.dora:dora",
    "promote": "slotkeeper.cli.promotion:promote",
    "rollback": "slotkeeper.cli.promotion:rollback",
    "release-hold": "slotkeeper.cli.promotion:release_hold",
    "run": "slotkeeper.cli.serve:run",
    "ui": "slotkeeper.cli.serve:ui",
    "schema": "slotkeeper.cli.schema:schema",
}


@click.group(
    cls=LazyGroup,
    commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(version=__version__, prog_name="slotkeeper")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="Log format on stderr (auto: console on a terminal, json otherwise).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option("--no-color", is_flag=True, help="No colours or styles (also: NO_COLOR=1).")
def cli(log_format: str, log_level: str, no_color: bool) -> None:
    """slotkeeper keeps deployment records and deploy keys in line with committed manifests."""
    del no_color  # read by _color_system() from the root context
    from slotkeeper.observability import configure_logging

    configure_logging(fmt=log_format, level=log_level)  # type: ignore[arg-type]


def _error(message: str) -> None:
    from slotkeeper.cli.common import _stderr

    console = _stderr()
    console.print(f"[bold red]Error:[/] {message}", markup=True, highlight=False)


#: allocations between two young-generation collections (CPython's default: 700). Loading
#: 10,000 slots creates a few hundred thousand objects that all stay alive; at the default the
#: cyclic collector walks the growing older generations again and again and costs a third of
#: the load. None of these objects form cycles that must be freed early.
GC_YOUNG_THRESHOLD = 100_000
#: the longest a thread whose answer has arrived waits for the interpreter lock (CPython's
#: default is 5 ms: a quarter of a typical API round trip, spent idle, per target request)
SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """The process-wide settings slotkeeper runs with, made by the entry point and nowhere
    else (library code shares its process with its caller): fewer garbage collections while
    large object graphs are built, and quicker hand-overs between threads that wait on the
    network. Setting them again changes nothing."""
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    sys.setswitchinterval(SWITCH_INTERVAL)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every known failure into a message and exit code 1.
    ``argv`` None: the process's command line (``python -m slotkeeper``, the ``slotkeeper``
    script), where main is the whole process; a list: a caller's (tests), whose process goes
    on."""
    tune_interpreter()
    try:
        code = cli.main(args=argv, prog_name="slotkeeper", standalone_mode=False)
    except click.exceptions.Abort:
        from slotkeeper.cli.common import _stderr

        _stderr().print("Aborted.")
        code = EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        from slotkeeper.errors import SlotkeeperError  # not imported for --version

        if not isinstance(exc, SlotkeeperError):
            raise
        _error(str(exc).replace("[", "\\["))
        code = EXIT_ERROR
    if argv is None:  # the process's own command line: the process ends here
        # Nothing it made needs collecting any more; the collection the interpreter runs at
        # exit would walk every object (a tenth of a plan with nothing to do at 10,000 slots).
        gc.freeze()
    sys.exit(code if isinstance(code, int) else EXIT_OK)


__all__ = ["cli", "main"]
