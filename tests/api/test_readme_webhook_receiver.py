"""The README's webhook receiver, run as written (only its port changed), verifies real deliveries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import Server, free_port, ragline

README = Path(__file__).resolve().parents[2] / "README.md"


def _receiver_source() -> str:
    section = README.read_text().split("### Webhooks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_receiver_verifies_and_prints_events(tmp_path: Path) -> None:
    port = free_port()
    source = _receiver_source()
    assert '("127.0.0.1", 9000)' in source and len(source.strip().splitlines()) <= 6
    script = tmp_path / "receiver.py"
    script.write_text(source.replace("9000", str(port)))

    key = ragline("keys", "create", "--tenant", "readme", "--data-dir", str(tmp_path / "data")).strip()
    server = Server(tmp_path / "data", env={"RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"}).start()
    receiver = None
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as client:
            created = client.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/", "events": ["*"]})
            secret = created.json()["secret"]
            output = tmp_path / "receiver.out"
            receiver = subprocess.Popen(
                [sys.executable, str(script)],
                env={**os.environ, "SECRET": secret},
                stdout=output.open("w"),
                stderr=subprocess.STDOUT,
            )
            time.sleep(0.5)
            client.post("/v1/kb/documents", json={"text": "Returns are accepted for 30 days.", "title": "Returns"})
            deadline = time.monotonic() + 30
            while "document.indexed" not in output.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            printed = output.read_text()
            assert "document.uploaded" in printed and "document.indexed" in printed, printed
            assert "Traceback" not in printed
            webhook_id = created.json()["id"]
            deliveries = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
            assert deliveries and all(d["attempts"][-1]["status_code"] == 204 for d in deliveries if d["attempts"])
    finally:
        if receiver is not None:
            receiver.kill()
            receiver.wait(5)
        server.stop()
