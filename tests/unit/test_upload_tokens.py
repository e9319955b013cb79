"""The local backend's presigned upload URLs: a token signed by the server, for one document, for a while."""

from __future__ import annotations

import pytest

from ragline.errors import Forbidden
from ragline.ingest.uploads import SignedUploadUrls, sign_upload, verify_upload

SECRET = b"s" * 32
CLAIMS = {"document_id": "doc_1", "tenant_id": "t1", "filename": "a.txt"}


def _tampered(token: str) -> str:
    body, signature = token.split(".")
    return f"{body[:-2]}xx.{signature}"


REFUSED = [
    ("another secret", lambda: sign_upload(b"o" * 32, CLAIMS, 60), "doc_1", "Invalid upload URL"),
    ("tampered claims", lambda: _tampered(sign_upload(SECRET, CLAIMS, 60)), "doc_1", "Invalid upload URL"),
    ("no signature", lambda: "garbage", "doc_1", "Invalid upload URL"),
    ("another document", lambda: sign_upload(SECRET, CLAIMS, 60), "doc_2", "Invalid upload URL"),
    ("expired", lambda: sign_upload(SECRET, CLAIMS, -1), "doc_1", "Upload URL expired"),
]


@pytest.mark.parametrize(("case", "token", "document_id", "error"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_tokens(case, token, document_id, error):
    with pytest.raises(Forbidden) as refused:
        verify_upload(SECRET, token(), document_id)
    assert refused.value.error == error


def test_an_issued_url_carries_its_claims_back():
    urls = SignedUploadUrls(SECRET)
    url = urls.issue(CLAIMS, lambda document_id, token: f"http://host/v1/kb/uploads/{document_id}?token={token}")
    assert url.startswith("http://host/v1/kb/uploads/doc_1?token=")
    claims = urls.redeem("doc_1", url.split("token=", 1)[1])
    assert {k: claims[k] for k in CLAIMS} == CLAIMS and claims["exp"] > 0
