"""The real service in a process of its own (``python -m fhir_bridge serve``), for tests that kill it or load it.

It inherits the test environment (conftest puts the pseudonym key and FHIR_BRIDGE_AUTH=none there).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import free_port

START_TIMEOUT_S = 60.0


def first_answer(url: str, process: subprocess.Popen, output: Callable[[], str], timeout: float = START_TIMEOUT_S):  # type: ignore[type-arg]
    """The first HTTP answer of ``url`` from a server starting in ``process``; AssertionError with the
    server's ``output`` when it exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{output()[-3000:]}")
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not answer {url} within {timeout} s:\n{output()[-3000:]}")
        time.sleep(0.05)


class ServerProcess:
    def __init__(self, database_url: str, log_path: Path) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicomweb"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "fhir_bridge", "serve", "--database-url", self.database_url]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*command, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            answer = first_answer(f"{self.fhir}/metadata", self.process, self.log)
        except AssertionError:
            self.kill()
            raise
        assert answer.status_code == 200, answer.text
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no rollback, no flush; the process is gone when this returns."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """A clean stop (SIGTERM), or SIGKILL when that takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""
