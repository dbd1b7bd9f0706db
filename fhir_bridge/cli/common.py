"""What every command shares: settings from flags over environment over the config file, the services, exit codes.

Every command builds its ``Settings`` with ``settings_from``: the same config file (``--config`` or
``FHIR_BRIDGE_CONFIG``), the same environment, its own flags on top. ``clients add`` therefore writes
to the database ``serve`` runs on when both are given the same config file.
"""

from __future__ import annotations

import argparse
import getpass
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_bridge.audit.log import admin_entry
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.logs import configure as configure_logging
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings

EXIT_FAILURES = 1  # something was not ingested or checked
EXIT_CONFIGURATION = 2  # the command could not run at all
WAKE_S = 1.0  # a listener's main thread looks for a SIGINT or SIGTERM at least this often

DATABASE_HELP = "sqlite:///path.db (default ./fhir-bridge.db) or postgresql+psycopg://..."
CONFIG_HELP = "TOML config file of settings (else FHIR_BRIDGE_CONFIG); environment and flags override it"
KEY_FILE_HELP = "file holding the pseudonym key (else FHIR_BRIDGE_PSEUDONYM_KEY[_FILE])"
_FLAGS = (
    "database_url",
    "host",
    "port",
    "pseudonym_key_file",
    "auth",
    "mappings_dir",
    "dimse_port",
    "mllp_port",
    "token_key_file",
    "upgrade_schema",
)


def settings_from(arguments: argparse.Namespace) -> Settings:
    """``FHIR_BRIDGE_*`` settings with the command's flags over them."""
    overrides: dict[str, Any] = {
        name: getattr(arguments, name) for name in _FLAGS if getattr(arguments, name, None) is not None
    }
    if "pseudonym_key_file" in overrides:
        overrides["pseudonym_key"] = None  # the flag wins over FHIR_BRIDGE_PSEUDONYM_KEY
    return Settings(getattr(arguments, "config", None), **overrides)


def settings_environment(arguments: argparse.Namespace) -> dict[str, str | None]:
    """The command's flags as ``FHIR_BRIDGE_*`` variables (None: unset it), for processes it starts
    that read their settings from the environment (``serve --workers``)."""
    found: dict[str, str | None] = {
        f"FHIR_BRIDGE_{name.upper()}": str(getattr(arguments, name))
        for name in _FLAGS
        if getattr(arguments, name, None) is not None
    }
    if "FHIR_BRIDGE_PSEUDONYM_KEY_FILE" in found:
        found["FHIR_BRIDGE_PSEUDONYM_KEY"] = None  # the flag wins over FHIR_BRIDGE_PSEUDONYM_KEY
    if getattr(arguments, "config", None) is not None:
        found["FHIR_BRIDGE_CONFIG"] = str(Path(arguments.config).resolve())  # the same config file
    return found


def services_from(arguments: argparse.Namespace) -> Services:
    return Services.from_settings(settings_from(arguments))


def refuse(error: ConfigurationError) -> int:
    """Say what is wrong in a line or two (each problem on its own line), no traceback: exit status 2."""
    first, *more = str(error).splitlines() or [type(error).__name__]
    print(f"fhir-bridge: cannot start: {first}", file=sys.stderr)
    for line in more:
        print(f"fhir-bridge: {line}", file=sys.stderr)
    return EXIT_CONFIGURATION


def add_config(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument("--config", type=Path, default=default, help=CONFIG_HELP)


def run_listener(arguments: argparse.Namespace, build: Callable[[Services], Any]) -> int:
    """``fhir-bridge dimse`` and ``mllp``: the service's logging, the listener ``build`` makes of the
    services, started and run until SIGINT or SIGTERM; a configuration mistake is one line, exit 2."""
    settings = settings_from(arguments)
    configure_logging(settings.log_level, json_lines=settings.log_format == "json")
    with Services.from_settings(settings) as services:
        try:
            listener = build(services)
            listener.start()
        except ConfigurationError as error:
            return refuse(error)
        run_until_stopped(listener)
    return 0


def run_until_stopped(listener: Any) -> None:
    """Run a started listener (``stop()``) until SIGINT or SIGTERM.

    Python runs a signal's handler only when the main thread runs, and the kernel hands a process's
    signal to whichever of its threads does not block it, or to the main thread just before that
    thread blocks. A main thread blocked without end (it waited on an ``Event`` the handler set)
    then never ran the handler: the listener ignored that SIGTERM and ran on. So the signal also
    writes to a socket the main thread waits on (``signal.set_wakeup_fd``: written by whichever
    thread takes it), and the wait wakes every ``WAKE_S`` regardless. The handler takes no lock
    (``Event.set`` does: it would wait forever for the lock were the main thread inside
    ``Event.wait`` holding it when the handler runs there).
    """
    received: list[int] = []

    def note(number: int, _frame: object) -> None:
        received.append(number)

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, note)
        while not received:
            if select.select([reader], [], [], WAKE_S)[0]:
                reader.recv(256)
    finally:
        try:
            listener.stop()
        finally:
            signal.set_wakeup_fd(previous)
            reader.close()
            writer.close()


def add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help=DATABASE_HELP)


def add_key_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pseudonym-key-file", type=Path, help=KEY_FILE_HELP)


def operator() -> str:
    """Who runs this command, for the audit trail: the operating-system user at this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record_admin(services: Services, command: str, action: str, outcome: str, detail: str) -> bool:
    """Record an administrative command in the audit trail (durably, before the command reports);
    False, with a message, when the record could not be written: the command must then fail."""
    try:
        services.audit_log.record(admin_entry(command, action, operator(), outcome, detail))
    except Exception as error:  # the database refused: said, never hidden
        print(
            f"fhir-bridge: the audit record of `{command}` could not be written ({type(error).__name__})",
            file=sys.stderr,
        )
        return False
    return True
