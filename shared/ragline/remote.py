"""The CLI's remote mode (``--url`` / ``--api-key``): a server, local or deployed, through the Python SDK.

``ragline_client`` (clients/python) is imported only when a remote command runs: the Lambda layers ship
this package without it, and local commands never need it. Its errors become one-line ``RaglineError``s,
which the CLI prints without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.errors import RaglineError

if TYPE_CHECKING:
    from ragline_client import Ragline


@dataclass(frozen=True)
class Remote:
    url: str
    api_key: str


def remote_target(url: str | None, api_key: str | None, data_dir: Path | None) -> Remote | None:
    """The server named by ``--url``/``--api-key`` (else ``RAGLINE_URL``/``RAGLINE_API_KEY``), or None for
    local mode. An explicit ``--data-dir`` means local even when ``RAGLINE_URL`` is set."""
    if url and data_dir is not None:
        raise RaglineError("give --url (a server) or --data-dir (a local data directory), not both")
    url = url or (None if data_dir is not None else os.environ.get("RAGLINE_URL"))
    if not url:
        if api_key:
            raise RaglineError("--api-key goes with --url (or RAGLINE_URL)")
        return None
    api_key = api_key or os.environ.get("RAGLINE_API_KEY")
    if not api_key:
        raise RaglineError("--url needs --api-key (or RAGLINE_API_KEY)")
    return Remote(url.rstrip("/"), api_key)


def sdk() -> Any:
    """The ``ragline_client`` module, or a one-line error saying how to get it."""
    try:
        import ragline_client
    except ModuleNotFoundError as exc:
        if exc.name != "ragline_client":
            raise
        raise RaglineError(
            "--url needs the Python SDK: pip install ragline-client (or ./clients/python from a checkout)",
            error="Configuration error",
        ) from None
    return ragline_client


def connect(remote: Remote, **options: Any) -> Ragline:
    return sdk().Ragline(api_key=remote.api_key, base_url=remote.url, **options)  # type: ignore[no-any-return]


@contextmanager
def one_line_errors(url: str, *, key_needs: str = "") -> Iterator[None]:
    """The SDK's errors as one line each: a refused key, an unreachable server, any other error answer."""
    client = sdk()
    needs = f": it needs {key_needs}" if key_needs else ""
    try:
        yield
    except client.AuthenticationError as exc:
        raise RaglineError(f"{url} refused the API key (401): {exc.message}") from None
    except client.PermissionDeniedError as exc:
        raise RaglineError(f"{url} refused the API key (403){needs}: {exc.message}") from None
    except client.APIConnectionError as exc:
        raise RaglineError(f"cannot reach {url}: {exc.message}") from None
    except client.APIStatusError as exc:
        raise RaglineError(f"{url} answered {exc.status_code}: {exc.message}") from None
    except client.RaglineError as exc:  # an answer of the wrong shape, a wait that ran out
        raise RaglineError(f"{url}: {exc}") from None
