"""`make run` and `make demo` end to end: every service as its own process, the
local Kubernetes simulator, and the walkthrough of issue 4 run to its last step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry_testing import BrokerNamespace
from ferry_testing.net import free_base_port

pytestmark = [pytest.mark.amqp, pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parent.parent


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(
        f"{text!r} not seen; make run said:\n{log.read_text(errors='replace')[-6000:]}"
    )


def test_make_run_then_the_demo_walkthrough(broker_ns: BrokerNamespace, tmp_path: Path) -> None:
    base = free_base_port()
    env = {
        **os.environ,
        **broker_ns.env(),
        "FERRY_LOG_FORMAT": "json",
        "FERRY_RETRY_DELAYS": "[0.5, 1, 2]",
    }
    env.pop("KUBECONFIG", None)
    data_dir = tmp_path / "ferry"
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [
                sys.executable,
                "scripts/run_local.py",
                "--data-dir",
                str(data_dir),
                "--base-port",
                str(base),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_line(log, "Ferry is running", run, 120)
        demo = subprocess.run(
            [
                sys.executable, "scripts/demo.py",
                "--server", f"http://127.0.0.1:{base}",
                "--data-dir", str(data_dir),
                "--amqp-url", broker_ns.amqp_url,
                "--exchange", broker_ns.exchange,
                "--timeout", "60",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=300,
        )  # fmt: skip
        assert demo.returncode == 0, (
            f"demo failed:\n{demo.stdout}\n{demo.stderr}\n--- make run ---\n"
            f"{log.read_text(errors='replace')[-8000:]}"
        )
        assert "Demo complete" in demo.stdout
        assert "ferry.rollout.failed.v1" in demo.stdout
        assert "CrashLoopBackOff" in demo.stdout
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
        code = run.wait(60)
    text = log.read_text(errors="replace")
    assert "stopping every service" in text
    assert code == 0, text[-4000:]
