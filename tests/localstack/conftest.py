"""The LocalStack tier: one LocalStack per test session, installed and started by the run itself.

LocalStack runs on the host without Docker as its runtime module, from its own Python 3.13 venv
(``infra/localstack/install.sh`` makes ``.localstack-venv``; its pins clash with ours). It listens
on 127.0.0.1 at a free port, keeps its state in a temporary folder and is stopped by PID (its
process group) at the end. The tier is skipped, visibly, only when Python 3.13 is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest

from ragline.adapters.aws.clients import reset_clients
from tests.support import REPO, free_port

INSTALL_SCRIPT = REPO / "infra" / "localstack" / "install.sh"
VENV = Path(os.environ.get("LOCALSTACK_VENV", REPO / ".localstack-venv"))
NO_PYTHON_313 = 3  # install.sh's exit code when the interpreter is missing
SERVICES = "s3,sqs,sns,apigateway,iam,sts,cloudformation"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0  # its graceful stop takes 5-15 s; its state is throwaway


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localstack: needs LocalStack (installed and started by the test run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test under this folder carries the marker, so `-m "not localstack"` leaves the tier out.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.localstack)


@dataclass
class LocalStack:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    timings: dict[str, float]

    def client(self, service: str) -> Any:
        """A plain boto3 client on this LocalStack (fake credentials; nothing real can leak in)."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def stop(self) -> None:
        _stop_group(self.process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to LocalStack's process group, SIGKILL after a timeout: its children die with it."""
    if process.poll() is not None:
        return
    pgid = process.pid  # started with start_new_session=True: its pid is its group's id
    os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        process.wait(10)
    # The leader may exit before its children: sweep what is left of the group.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _install(log_dir: Path) -> float:
    """Run install.sh (a no-op when the venv is current); skip visibly when Python 3.13 is missing."""
    started = time.monotonic()
    log_path = log_dir / "install.log"
    with log_path.open("wb") as log:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT), str(VENV)], stdout=log, stderr=subprocess.STDOUT, timeout=900
        )
    output = log_path.read_text(errors="replace")
    if result.returncode == NO_PYTHON_313:
        pytest.skip(f"LocalStack tier skipped: {output.strip().splitlines()[-1]}")
    if result.returncode != 0:
        pytest.fail(f"infra/localstack/install.sh failed ({result.returncode}):\n{output[-4000:]}", pytrace=False)
    return time.monotonic() - started


def _listening_addresses(pid: int) -> list[tuple[str, int]]:
    root = psutil.Process(pid)
    addresses = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        addresses += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return addresses


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("localstack")
    timings = {"install": _install(work)}
    port = free_port()
    temp = work / "tmp"
    temp.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "PYTHON"))},
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(work / "data"),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        # URLs it hands out (SNS SubscribeURL, queue URLs) default to localhost.localstack.cloud, a
        # public DNS name that does not resolve offline: make them point at the gateway itself.
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",  # the default server binds 0.0.0.0 whatever GATEWAY_LISTEN says
        "DNS_ADDRESS": "0",  # no DNS server (it would bind port 53 on every interface)
        "LOCALSTACK_TELEMETRY": "0",
        "DISABLE_EVENTS": "1",
        "SERVICES": SERVICES,
        "TMPDIR": str(temp),  # it keeps S3 objects under the temp dir: keep them in ours
    }
    log_path = work / "localstack.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-m", "localstack.runtime.main"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
            start_new_session=True,
        )
    stack = LocalStack(f"http://127.0.0.1:{port}", port, process, log_path, timings)
    try:
        _wait_healthy(stack)
        timings["start"] = time.monotonic() - started
        listening = _listening_addresses(process.pid)
        exposed = [a for a in listening if a[0] not in ("127.0.0.1", "::1")]
        assert not exposed, f"LocalStack listens beyond loopback: {exposed}"
        assert ("127.0.0.1", port) in listening, f"LocalStack is not on 127.0.0.1:{port}: {listening}"
        yield stack
    finally:
        stack.stop()
        print(f"\nLocalStack: install/check {timings['install']:.1f}s, start {timings.get('start', -1):.1f}s")


def _wait_healthy(stack: LocalStack) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            pytest.fail(
                f"LocalStack exited ({stack.process.returncode}) while starting:\n{stack.log_tail()}", pytrace=False
            )
        try:
            response = httpx.get(f"{stack.url}/_localstack/health", timeout=2.0)
            last = response.text
            if response.status_code == 200:
                services = response.json().get("services", {})
                wanted = SERVICES.split(",")
                if all(services.get(name) in ("available", "running") for name in wanted):
                    return
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    pytest.fail(
        f"LocalStack not healthy after {START_TIMEOUT_SECONDS}s (last: {last}):\n{stack.log_tail()}", pytrace=False
    )


@pytest.fixture(scope="session", autouse=True)
def fake_aws_credentials() -> Iterator[None]:
    """Fake credentials for Ragline's own clients (and subprocesses): no real account can leak in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        reset_clients()  # clients cached earlier in the session may hold other credentials or endpoints
        yield
    reset_clients()


@pytest.fixture(scope="session")
def aws(localstack: LocalStack) -> Callable[[str], Any]:
    """``aws("s3")``: a boto3 client on the session's LocalStack."""
    return localstack.client
