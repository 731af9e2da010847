"""The viewer server: loopback only, files inside its folder only."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from convscope.core.errors import InputError
from convscope.viewer.serve import HOST, ViewerServer, make_server


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[ViewerServer, Path]]:
    root = tmp_path / "view"
    (root / "data").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>v</title>")
    (root / "data" / "layer0.bin").write_bytes(bytes(range(16)))
    (tmp_path / "secret.txt").write_text("outside")
    server = make_server(root, 0)
    server.start_background()
    try:
        yield server, tmp_path
    finally:
        server.shutdown()
        server.server_close()


def _get(server: ViewerServer, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection(HOST, server.server_address[1], timeout=5)
    # putrequest sends the path as given: no client-side normalisation of "..".
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, body, headers


def test_binds_loopback_only(site: tuple[ViewerServer, Path]) -> None:
    server, _ = site
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_serves_files_of_its_folder(site: tuple[ViewerServer, Path]) -> None:
    server, _ = site
    status, body, headers = _get(server, "/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["content-type"].startswith("text/html")
    assert headers["x-content-type-options"] == "nosniff"
    assert "connect-src 'self'" in headers["content-security-policy"]
    status, body, _ = _get(server, "/data/layer0.bin")
    assert status == 200 and body == bytes(range(16))
    status, body, headers = _get(server, "/data/layer0.bin", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == "16"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/data/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/data/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/data/",
        "/data",
        "/missing.html",
        "//etc/passwd",
    ],
)
def test_nothing_outside_or_unlisted(site: tuple[ViewerServer, Path], path: str) -> None:
    server, _ = site
    status, body, _ = _get(server, path)
    assert status == 404
    assert b"outside" not in body


def test_symlink_leading_out_is_refused(site: tuple[ViewerServer, Path]) -> None:
    server, tmp = site
    os.symlink(tmp / "secret.txt", server.root / "link.txt")
    status, body, _ = _get(server, "/link.txt")
    assert status == 404 and b"outside" not in body


def test_only_get_and_head(site: tuple[ViewerServer, Path]) -> None:
    server, _ = site
    status, _, _ = _get(server, "/index.html", "POST")
    assert status == 501


def test_bad_folder_and_port(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        make_server(tmp_path / "nope", 0)
    with pytest.raises(InputError, match=r"no index\.html"):
        make_server(tmp_path, 0)
    (tmp_path / "index.html").write_text("x")
    with pytest.raises(InputError, match="port"):
        make_server(tmp_path, 70000)
    first = make_server(tmp_path, 0)
    try:
        with pytest.raises(InputError, match="Cannot listen"):
            make_server(tmp_path, first.server_address[1])
    finally:
        first.server_close()
