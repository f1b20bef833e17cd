"""The ``logrelay`` command line: the one place that puts the catcher (``relay``) and the consumers together.

Each command takes its options from the shared lists in :mod:`relay.cli.options`,
builds one settings object from them and runs it.  Every option can also come
from the environment: ``LOGRELAY_<COMMAND>_<OPTION>`` (``LOGRELAY_CATCH_REDIS_URL``,
``LOGRELAY_CONSUME_FILE_OUTPUT``, ``LOGRELAY_UP_LISTEN``, ``LOGRELAY_TAIL_STREAM``), through click's
``auto_envvar_prefix``.  Errors a user can fix are one line on stderr and exit
status 2 (usage) or 1 (runtime), never a traceback.
"""

from __future__ import annotations

import click

from relay import __version__
from relay.cli.catch import catch
from relay.cli.config_file import install_config_option
from relay.cli.config_show import config
from relay.cli.consume import consume
from relay.cli.dead_letters import dead_letters_group
from relay.cli.status import status
from relay.cli.tail import tail
from relay.cli.up import up
from relay.common import speedups

__all__ = ["ENVVAR_PREFIX", "main"]

ENVVAR_PREFIX = "LOGRELAY"


@click.group(context_settings={"auto_envvar_prefix": ENVVAR_PREFIX, "show_default": True})
# Which code paths run is part of the version: the same release runs several times slower on its Python paths.
@click.version_option(
    __version__,
    prog_name="logrelay",
    message=f"%(prog)s, version %(version)s, {speedups.summary()}\n{speedups.describe()}",
)
def main() -> None:
    """logrelay: one central, exactly-once log for a fleet of Python services."""


main.add_command(catch)
main.add_command(consume)
main.add_command(dead_letters_group)
main.add_command(up)
main.add_command(status)
main.add_command(tail)
main.add_command(config)
# Last: every command above gets --config FILE.
install_config_option(main)
