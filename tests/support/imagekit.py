"""Small images and a local HTTP server for the bad-input tests (rows/ and patches/)."""

from __future__ import annotations

import http.server
import io
import threading

import pytest

Image = pytest.importorskip("PIL.Image")


def png_bytes(img, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def solid(mode="RGB", size=(28, 28), colour=(40, 80, 200)):
    return Image.new(mode, size, colour)


def exif_rotated(fmt="JPEG"):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    return png_bytes(solid(size=(40, 20)), fmt, exif=exif.tobytes())


def serve_png():
    """A local server answering /cat.png with a solid PNG (a generator: the fixture wraps it)."""
    data = png_bytes(solid())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/cat.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send_error(404)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
