"""The pure parts of Idempotency-Key: key validation, the routes that take it, the fingerprint (multipart
boundaries made constant, bodies fed in any pieces) and what is kept."""

from __future__ import annotations

import pytest

from ragline.errors import BadRequest
from ragline.idempotency import (
    IDEMPOTENT_ROUTES,
    NORMAL_BOUNDARY,
    BoundaryReplacer,
    Fingerprint,
    multipart_boundary,
    parse_key,
    record_scope,
    takes_idempotency_key,
    worth_storing,
)

VALID_KEYS = [
    (b"a", "a"),
    (b"x" * 255, "x" * 255),
    (b"5f1c2a4e-8b0d-4d7e-9c3b-2a6f0e1d4c5b", "5f1c2a4e-8b0d-4d7e-9c3b-2a6f0e1d4c5b"),
    (b"order 42 / retry ~!@#$%^&*()", "order 42 / retry ~!@#$%^&*()"),
]
INVALID_KEYS = [
    [b""],  # empty
    [b"x" * 256],  # one too long
    ["clé".encode()],  # non-ASCII (UTF-8)
    ["clé".encode("latin-1")],  # non-ASCII (Latin-1)
    [b"tab\there"],  # a control character
    [b"del\x7f"],
    [b"one", b"two"],  # the header twice
    [],
]


@pytest.mark.parametrize(("raw", "key"), VALID_KEYS)
def test_valid_keys_are_taken_as_sent(raw, key):
    assert parse_key([raw]) == key


@pytest.mark.parametrize("values", INVALID_KEYS)
def test_invalid_keys_are_a_400(values):
    with pytest.raises(BadRequest) as refused:
        parse_key(values)
    assert refused.value.status == 400


ROUTES = [
    ("POST", "/v1/kb/documents", True),
    ("post", "/v1/kb/documents", True),
    ("POST", "/v1/kb/uploads", True),
    ("POST", "/v1/kb/chat", True),
    ("POST", "/v1/webhooks", True),
    ("POST", "/v1/keys", True),
    ("POST", "/v1/knowledge-bases", True),
    ("POST", "/v1/kb/chat/stream", False),  # streams are not replayed
    ("POST", "/v1/kb/search", False),
    ("POST", "/v1/kb/delete", False),
    ("PUT", "/v1/kb/uploads/doc_1", False),
    ("GET", "/v1/kb/documents", False),
    ("POST", "/v1/webhooks/wh_1/test", False),
]


@pytest.mark.parametrize(("method", "path", "takes"), ROUTES)
def test_which_routes_take_the_header(method, path, takes):
    assert takes_idempotency_key(method, path) is takes


def test_every_listed_route_is_a_post():
    assert {method for method, _ in IDEMPOTENT_ROUTES} == {"POST"}


def test_scopes_differ_by_key_method_and_path():
    scopes = {
        record_scope("t1/key_a", "POST", "/v1/webhooks"),
        record_scope("t1/key_b", "POST", "/v1/webhooks"),
        record_scope("t2/key_a", "POST", "/v1/webhooks"),
        record_scope("t1/key_a", "POST", "/v1/kb/chat"),
    }
    assert len(scopes) == 4


BOUNDARIES = [
    ("multipart/form-data; boundary=abc123", b"abc123"),
    ('multipart/form-data; boundary="quoted boundary"', b"quoted boundary"),
    ("Multipart/Form-Data;charset=utf-8;  BOUNDARY=xyz", b"xyz"),
    ("multipart/form-data", None),
    ("multipart/form-data; boundary=", None),
    ("application/json", None),
    ("application/json; boundary=abc", None),  # only a multipart type has one
    ("", None),
]


@pytest.mark.parametrize(("content_type", "boundary"), BOUNDARIES)
def test_the_boundary_of_a_content_type(content_type, boundary):
    assert multipart_boundary(content_type) == boundary


REPLACEMENTS = [
    (b"--B\r\nx\r\n--B--", b"B", b"--#\r\nx\r\n--#--"),
    (b"no boundary here", b"XYZ", b"no boundary here"),
    (b"XYZXYZ", b"XYZ", b"##"),
    (b"XYXYZ", b"XYZ", b"XY#"),  # an occurrence that starts inside a partial one
    (b"aaaa", b"aa", b"##"),  # non-overlapping, leftmost first (like bytes.replace)
    (b"ab", b"abc", b"ab"),  # a partial occurrence at the very end stays as it is
]


@pytest.mark.parametrize(("data", "boundary", "expected"), REPLACEMENTS)
def test_boundaries_are_replaced_whatever_the_pieces(data, boundary, expected):
    assert data.replace(boundary, b"#") == expected  # the table itself agrees with bytes.replace
    for size in range(1, len(data) + 1):  # every piece size, so every split point inside an occurrence
        replacer = BoundaryReplacer(boundary, b"#")
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert b"".join(replacer.feed(p) for p in pieces) + replacer.flush() == expected, size


def _multipart(boundary: str, files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[str, bytes]:
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def _digest(content_type: str, body: bytes, query: bytes = b"", piece: int = 7) -> str:
    fingerprint = Fingerprint(content_type, query)
    for start in range(0, len(body), piece):
        fingerprint.update(body[start : start + piece])
    return fingerprint.finish()


FILES = [("a.txt", b"alpha " * 50), ("b.txt", b"beta " * 70)]
SAME_REQUEST = [
    # (what differs, first request, second request, same fingerprint?)
    ("boundary only", _multipart("----abc", FILES, {"kb_id": "x"}), _multipart("----zz9", FILES, {"kb_id": "x"}), True),
    (
        "boundary of another length",
        _multipart("b1", FILES, {}),
        _multipart("a-much-longer-boundary-0123456789", FILES, {}),
        True,
    ),
    ("a file's bytes", _multipart("b1", FILES, {}), _multipart("b2", [FILES[0], ("b.txt", b"other")], {}), False),
    ("a field", _multipart("b1", FILES, {"kb_id": "x"}), _multipart("b2", FILES, {"kb_id": "y"}), False),
    ("a file name", _multipart("b1", FILES, {}), _multipart("b2", [("c.txt", FILES[0][1]), FILES[1]], {}), False),
    ("JSON bytes", ("application/json", b'{"text":"a"}'), ("application/json", b'{"text":"b"}'), False),
    ("nothing", ("application/json", b'{"text":"a"}'), ("application/json", b'{"text":"a"}'), True),
    ("content type", ("application/json", b"{}"), ("text/plain", b"{}"), False),
]


@pytest.mark.parametrize(("what", "first", "second", "same"), SAME_REQUEST, ids=[row[0] for row in SAME_REQUEST])
def test_the_fingerprint_of_two_requests(what, first, second, same):
    assert (_digest(*first) == _digest(*second, piece=13)) is same


def test_the_query_string_is_part_of_the_fingerprint():
    assert _digest("application/json", b"{}", b"a=1") != _digest("application/json", b"{}", b"a=2")


def test_pieces_do_not_change_the_fingerprint():
    content_type, body = _multipart("boundary-xyz", FILES, {"on_error": "continue"})
    digests = {_digest(content_type, body, piece=size) for size in (1, 2, 5, 11, 64, len(body))}
    assert len(digests) == 1


def test_the_normal_boundary_replaces_the_random_one():
    content_type, body = _multipart("rnd-777", FILES, {})
    replacer = BoundaryReplacer(b"rnd-777", NORMAL_BOUNDARY)
    assert b"rnd-777" not in replacer.feed(body) + replacer.flush()


KEPT = [(200, True), (201, True), (202, True), (400, True), (404, True), (409, True), (422, True)]
KEPT += [(401, False), (403, False), (429, False), (500, False), (503, False)]


@pytest.mark.parametrize(("status", "kept"), KEPT)
def test_which_answers_are_kept(status, kept):
    assert worth_storing(status) is kept


def test_the_openapi_documents_the_header_and_the_409_on_the_listed_routes(tmp_path):
    from ragline.api.app import create_app
    from ragline.config import Settings
    from ragline.container import Container

    paths = create_app(Container(Settings(data_dir=tmp_path))).openapi()["paths"]
    documented = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation.get("parameters", []))
    }
    served = {(m, p) for m, p in IDEMPOTENT_ROUTES if p in paths and m.lower() in paths[p]}
    assert documented == served and ("POST", "/v1/kb/chat") in served
    assert all("409" in paths[path][method.lower()]["responses"] for method, path in served)
