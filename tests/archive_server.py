"""Test helpers: BBBC020-layout zip archives built from a folder, and a real local HTTP server.

`ArchiveServer` is a `http.server.ThreadingHTTPServer` on 127.0.0.1 serving in-memory files. It
honours ``Range: bytes=N-`` requests (206 + Content-Range), records every request (path, Range
header, status, body bytes sent), can cut a response half-way (`drop_once`) and can answer 503 a
given number of times (`fail_times`), so downloads, resumes and retries are tested for real.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BBBC020_ARCHIVES = {
    "BBBC020_v1_images.zip": "BBBC020_v1_images",
    "BBBC020_v1_outlines_cells.zip": "BBC020_v1_outlines_cells",
    "BBBC020_v1_outlines_nuclei.zip": "BBC020_v1_outlines_nuclei",
}


def zip_folder(root: Path, folder: str, out: Path) -> Path:
    """Zip ``root/folder`` (entries start with ``folder/``) into `out`, deterministically."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / folder).rglob("*")):
            info = zipfile.ZipInfo(str(path.relative_to(root)) + ("/" if path.is_dir() else ""))
            info.date_time = (2012, 1, 1, 0, 0, 0)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, b"" if path.is_dir() else path.read_bytes())
    return out


def zip_bbbc020(demo_root: Path, out_dir: Path) -> dict[str, Path]:
    """The three official BBBC020 archives (same names and inner folders) built from a demo set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        name: zip_folder(demo_root, folder, out_dir / name)
        for name, folder in BBBC020_ARCHIVES.items()
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArchiveServer:
    """Serve ``files`` ({url path: bytes}) on 127.0.0.1; see the module docstring."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.drop_once: set[str] = set()
        self.fail_times: dict[str, int] = {}
        self.trickle: dict[str, float] = {}  # path -> seconds between single bytes
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
                with server.lock:
                    server.requests.append(record)
                    fail = server.fail_times.get(self.path, 0)
                    if fail:
                        server.fail_times[self.path] = fail - 1
                    drop = self.path in server.drop_once
                    server.drop_once.discard(self.path)
                data = server.files.get(self.path)
                if fail:
                    record["status"] = 503
                    self.send_error(503)
                    return
                if data is None:
                    record["status"] = 404
                    self.send_error(404)
                    return
                start = 0
                if record["range"]:
                    start = int(record["range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        record["status"] = 416
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                record["status"] = 206 if start else 200
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if drop:  # promise the whole body, send half, hang up
                    body = body[: len(body) // 2]
                # counted before writing: a client that has read the body sees the count even
                # when this thread is slow to go on (a loaded machine)
                record["sent"] = len(body)
                if self.path in server.trickle:  # one byte at a time, forever slow
                    for i in range(len(body)):
                        try:
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            record["sent"] = i
                            return
                        time.sleep(server.trickle[self.path])
                else:
                    self.wfile.write(body)
                    self.wfile.flush()
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def hits(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
