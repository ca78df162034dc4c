"""Running services inside a test, in-process or as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ferry_runtime import ServiceRuntime


@contextlib.asynccontextmanager
async def running(
    runtime: ServiceRuntime, *, timeout: float = 20.0
) -> AsyncIterator[ServiceRuntime]:
    """Run ``runtime`` in a task until the block ends; wait until it consumes."""
    task = asyncio.create_task(runtime.run(install_signals=False))
    started = asyncio.create_task(runtime.started.wait())
    done, _ = await asyncio.wait(
        {task, started}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        started.cancel()
        task.result()
        raise RuntimeError(f"{runtime.service} stopped before it was ready")
    if started not in done:
        runtime.stop()
        await task
        raise TimeoutError(f"{runtime.service} was not ready within {timeout}s")
    try:
        yield runtime
    finally:
        runtime.stop()
        await asyncio.wait_for(task, timeout)


class ServiceProcess:
    """A service started as its own OS process (``python -m <module> [args]``), for kill tests."""

    def __init__(
        self, module: str, env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()
    ) -> None:
        self.module = module
        self.args = tuple(args)
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        # The child keeps its own copy of the descriptor; the parent's is closed at once.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, nothing acked that was not already."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, and SIGKILL when it has not stopped within ``timeout`` seconds."""
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    async def logged(self, text: str, *, timeout: float = 120.0) -> None:
        """Wait until its log holds ``text``; an ``AssertionError`` with the log's end when
        the process exits first."""
        async with asyncio.timeout(timeout):
            while text not in self.logs():
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"{self.module} exited:\n{self.logs()[-3000:]}")
                await asyncio.sleep(0.1)


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 60.0, what: str = "", interval: float = 0.05
) -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy, and return that;
    an ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or check}")
        await asyncio.sleep(interval)
