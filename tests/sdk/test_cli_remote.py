"""`ragline ingest | search | ask --url URL --api-key KEY` (or RAGLINE_URL / RAGLINE_API_KEY) against a real
`ragline serve`, through the SDK; one-line errors; and the SDK imported only by the remote mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.abc import MetaPathFinder
from pathlib import Path

import pytest

from ragline.cli import main
from tests.support import Server, free_port


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("RAGLINE_URL", "RAGLINE_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "ragline.cli", *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "300", **(env or {})},  # wide enough that rich wraps no path
        timeout=300,
    )


@pytest.fixture(scope="module")
def ingested(sdk_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two files ingested into the CLI tests' own tenant with `ragline ingest --url`, and what it printed."""
    folder = tmp_path_factory.mktemp("remote-ingest")
    # Fixed texts (the tenant is the CLI tests' own, so no marker is needed to tell them apart): a random
    # hex marker in a one-sentence document moved the answer's confidence across the floor from run to run.
    (folder / "espresso.md").write_text("# Espresso\n\nDescale the espresso machine every month.\n")
    (folder / "tea.txt").write_text("Green tea is brewed at eighty degrees for two minutes.\n")
    done = run(
        "ingest",
        str(folder),
        "--url",
        sdk_server.url,
        "--api-key",
        sdk_server.keys["cli"],  # type: ignore[attr-defined]
        "--metadata",
        '{"source": "cli"}',
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"stdout": done.stdout, "stderr": done.stderr}


def test_ingest_uploads_and_waits(ingested: dict[str, str]) -> None:
    shown = ingested["stdout"] + ingested["stderr"]
    assert "espresso.md" in shown and "tea.txt" in shown
    assert "indexed 2, failed 0, duplicates 0, of 2 files" in shown


def test_search_and_ask_through_flags_or_the_environment(ingested: dict[str, str], sdk_server: Server) -> None:
    key = sdk_server.keys["cli"]  # type: ignore[attr-defined]
    found = run("search", "how often to descale", "--url", sdk_server.url, "--api-key", key, "--json")
    assert found.returncode == 0, found.stderr
    items = json.loads(found.stdout)["items"]
    assert items[0]["payload"]["filename"] == "espresso.md" and items[0]["payload"]["metadata"] == {"source": "cli"}

    env = {"RAGLINE_URL": sdk_server.url, "RAGLINE_API_KEY": key}
    table = run("search", "green tea temperature", "--limit", "1", env=env)
    assert table.returncode == 0, table.stderr
    assert "tea.txt" in table.stdout and "espresso.md" not in table.stdout and " found in " in table.stdout

    asked = run("ask", "How often should the espresso machine be descaled?", env=env)
    assert asked.returncode == 0, asked.stderr
    answer, _, rest = asked.stdout.partition("\n\n")
    assert "every month" in answer and "[1]" in answer, asked.stdout
    assert "[1] Espresso" in rest and "(extractive" in rest and " ms)" in rest

    whole = run("ask", "How is green tea brewed?", "--json", env=env)
    assert whole.returncode == 0, whole.stderr
    body = json.loads(whole.stdout)
    assert "eighty degrees" in body["answer"] and body["sources"][0]["filename"] == "tea.txt"


def test_a_rejected_file_is_reported_and_fails_the_run(sdk_server: Server, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text(f"Fine text {uuid.uuid4().hex}.")
    (tmp_path / "tool.exe").write_bytes(b"MZ\x90\x00")
    done = run("ingest", str(tmp_path), "--url", sdk_server.url, "--api-key", sdk_server.keys["cli"])  # type: ignore[attr-defined]
    assert done.returncode == 1, done.stdout + done.stderr
    shown = done.stdout + done.stderr
    assert "rejected" in shown and "cannot ingest .exe files" in shown and "indexed 1, failed 1" in shown


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["search", "q", "--api-key", "rl_not-a-key"], {}, "refused the API key (401): the API key is not valid"),
        (["ask", "q", "--api-key", "rl_not-a-key"], {}, "refused the API key (401)"),
        (["ingest", "README.md", "--api-key", "rl_not-a-key"], {}, "refused the API key (401)"),
        (["search", "q"], {}, "--url needs --api-key (or RAGLINE_API_KEY)"),
        (["search", "q", "--api-key", "k", "--tenant", "t"], {}, "with --url the API key's tenant is used"),
    ],
)
def test_remote_errors_are_one_line(sdk_server: Server, args: list[str], env: dict[str, str], message: str) -> None:
    done = run(*args, "--url", sdk_server.url, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and message in done.stderr and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_a_key_without_the_scope_and_an_unreachable_server(sdk_server: Server) -> None:
    search_only = sdk_server.keys["s1_search"]  # type: ignore[attr-defined]
    denied = run("ask", "q", "--url", sdk_server.url, "--api-key", search_only)
    assert denied.returncode == 2 and "refused the API key (403): it needs the chat scope" in denied.stderr

    url = f"http://127.0.0.1:{free_port()}"
    unreachable = run("search", "q", "--url", url, "--api-key", "rl_x")
    assert unreachable.returncode == 2 and unreachable.stderr.startswith(f"error: cannot reach {url}: ")
    assert unreachable.stderr.count("\n") == 1


def test_without_url_the_local_mode_still_needs_a_tenant() -> None:
    done = run("search", "q")
    assert (
        done.returncode == 2
        and done.stderr == "error: ragline search needs --tenant (or --url and --api-key to use a server)\n"
    )


class _NoSdk(MetaPathFinder):
    """ragline_client fails to import, as in a Lambda layer, which ships ragline without it."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "ragline_client":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def without_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [name for name in sys.modules if name.partition(".")[0] == "ragline_client"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoSdk(), *sys.meta_path])
    monkeypatch.delenv("RAGLINE_URL", raising=False)
    yield


@pytest.mark.usefixtures("without_sdk")
def test_without_the_sdk_local_mode_works_and_remote_mode_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "anything", "--tenant", "t", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []

    assert main(["search", "anything", "--url", "http://127.0.0.1:9", "--api-key", "k"]) == 2
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err
        == "error: --url needs the Python SDK: pip install ragline-client (or ./clients/python from a checkout)\n"
    )
