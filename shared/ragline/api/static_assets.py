"""Files shipped inside a Python package (the web page, the /docs assets), answered by name.

Only the files present in the folder are served (a name is a key, never a path), each with its
content type, an ETag and the folder's caching policy; an unknown name is a 404 with the error body.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from fastapi import Request, Response

from ragline.errors import NotFound

# Python's mimetypes table reads the system's, which may lack or misname these.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str  # quoted, as the header carries it

    @property
    def version(self) -> str:
        """A short content hash, for URLs that may be cached for ever (``?v=``)."""
        return self.etag.strip('"')[:12]


def _media_type(name: str) -> str:
    suffix = name[name.rfind(".") :] if "." in name else ""
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class AssetFolder:
    """The files directly in ``folder``, read on first use and kept (they never change while serving)."""

    def __init__(
        self,
        folder: Traversable,
        *,
        cache_control: str = "no-cache",
        versioned_cache_control: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``cache_control`` for every answer, except ``versioned_cache_control`` (when given) for a URL
        whose ``?v=`` names the file's current version: such a URL may be kept for ever."""
        self.folder = folder
        self.cache_control = cache_control
        self.versioned_cache_control = versioned_cache_control
        self.headers = dict(headers or {})
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def url(self, prefix: str, name: str) -> str:
        """The file's URL under ``prefix``, with its version (see ``versioned_cache_control``)."""
        return f"{prefix}/{name}?v={self.get(name).version}"

    def get(self, name: str) -> Asset:
        with self._lock:
            if name not in self._assets:
                self._assets[name] = self._read(name)
            return self._assets[name]

    def _read(self, name: str) -> Asset:
        # Listing the folder, rather than joining the name to it, keeps "..", "/" and hidden files out.
        file = next((f for f in self.folder.iterdir() if f.name == name and f.is_file()), None)
        if file is None or name.startswith("."):
            raise NotFound(f"no asset named {name!r}", error="Asset not found")
        body = file.read_bytes()
        return Asset(body, _media_type(name), f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, name: str, request: Request) -> Response:
        """The file, or 304 when the client's copy is current (uvicorn leaves the body out of a HEAD answer)."""
        asset = self.get(name)
        cache_control = self.cache_control
        if self.versioned_cache_control and request.query_params.get("v") == asset.version:
            cache_control = self.versioned_cache_control
        headers = {**self.headers, "Cache-Control": cache_control, "ETag": asset.etag}
        if asset.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
