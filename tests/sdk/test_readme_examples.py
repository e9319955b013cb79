"""The Python examples of clients/python/README.md, run as written against a real `ragline serve` (the key and
address filled in), so that the README cannot drift from the client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, Server, make_pdf

README = REPO / "clients" / "python" / "README.md"


def test_the_readme_examples_run(sdk_server: Server, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    # The webhook receiver's block is a fragment of a web handler (its `return 400`): tests/sdk/test_webhooks.py
    # verifies real deliveries instead.
    runnable = [block for block in blocks if "return 400" not in block]
    assert len(runnable) == len(blocks) - 1 >= 4
    key = sdk_server.keys["s2"]  # type: ignore[attr-defined]
    script = "\n".join(runnable).replace('"rl_…"', repr(key)).replace('"http://127.0.0.1:8000"', repr(sdk_server.url))
    (tmp_path / "handbook.pdf").write_bytes(make_pdf(["Refunds take five days.", "Returns are free."]))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**_env(), "RAGLINE_API_KEY": key, "RAGLINE_URL": sdk_server.url},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("indexed 2 None\n")  # status, page_count, error of the uploaded PDF
    assert "[1] handbook.pdf, page 1" in out and "sources" in out and "query qry_" in out


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RAGLINE_API_KEY", "RAGLINE_URL")}
