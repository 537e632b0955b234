"""The explorer's HTTP server: the standard library's `ThreadingHTTPServer`, one thread a request.

Routes: `GET /` (the page), `GET /static/NAME` (its script and style, shipped in the package),
`GET /api/ROUTE?...` for the `Explorer` methods in `ROUTES`. API answers are JSON; a request the
explorer cannot answer gets its 4xx status and `{"error": "one line"}`, an unexpected failure a
500 with the same shape, and the server keeps serving. Each answer carries the time spent in the
explorer as `Server-Timing: app;dur=MS`.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from absl import logging

from seqrec_jax.serve.explorer import ApiError, Explorer

STATIC_DIR = pathlib.Path(__file__).parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png"}
ROUTES = ("info", "latents", "latent", "users", "items", "history", "recommend", "effect",
          "explain")


def make_handler(explorer: Explorer) -> type[BaseHTTPRequestHandler]:
  """A request handler class bound to `explorer`."""

  class Handler(BaseHTTPRequestHandler):
    server_version = "seqrec_jax-explorer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
      logging.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, seconds: float | None = None):
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      if seconds is not None:
        self.send_header("Server-Timing", f"app;dur={seconds * 1e3:.2f}")
      self.end_headers()
      self.wfile.write(body)

    def _json(self, status: int, payload: dict, seconds: float | None = None):
      self._send(status, json.dumps(payload, allow_nan=False).encode(), "application/json",
                 seconds)

    def do_GET(self):
      url = urllib.parse.urlsplit(self.path)
      try:
        if url.path.startswith("/api/"):
          self._api(url.path[len("/api/"):], urllib.parse.parse_qs(url.query))
        elif url.path in ("/", "/index.html"):
          self._static("index.html")
        elif url.path.startswith("/static/"):
          self._static(url.path[len("/static/"):])
        else:
          self._json(404, {"error": f"no page {url.path}"})
      except (BrokenPipeError, ConnectionResetError):
        pass  # the browser went away (e.g. a slider moved on); nothing to answer

    def _api(self, route: str, query: dict):
      if route not in ROUTES:
        self._json(404, {"error": f"unknown API route {route!r}; routes: {', '.join(ROUTES)}"})
        return
      start = time.perf_counter()
      try:
        payload, status = getattr(explorer, route)(query), 200
      except ApiError as e:
        payload, status = {"error": str(e)}, e.status
      except Exception as e:  # noqa: BLE001 (one failing request must not stop the server)
        logging.error("explorer: %s failed:\n%s", self.path, traceback.format_exc())
        payload, status = {"error": " ".join(f"internal error: {type(e).__name__}: {e}".split())}, 500
      self._json(status, payload, time.perf_counter() - start)

    def _static(self, name: str):
      path = (STATIC_DIR / name).resolve()
      if path.parent != STATIC_DIR.resolve() or not path.is_file() or path.suffix not in STATIC_TYPES:
        self._json(404, {"error": f"no static file {name!r}"})
        return
      self._send(200, path.read_bytes(), STATIC_TYPES[path.suffix])

  return Handler


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
  """A bound (not yet serving) server; port 0 picks a free port (`server.server_address`)."""
  server = ThreadingHTTPServer((host, port), make_handler(explorer))
  server.daemon_threads = True
  return server


def start_in_thread(explorer: Explorer, host: str = "127.0.0.1", port: int = 0):
  """`(server, url)` with the server serving in a daemon thread (tests, benchmarks)."""
  server = make_server(explorer, host, port)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  address, bound_port = server.server_address[:2]
  return server, f"http://{address}:{bound_port}"


def serve(config, workdir, *, host: str = "127.0.0.1", port: int = 8000) -> None:
  """The `serve` experiment: load `workdir`, print the address, serve until interrupted."""
  explorer = Explorer.load(config, workdir)
  warm_up(explorer)
  try:
    server = make_server(explorer, host, port)
  except OSError as e:
    raise SystemExit(f"error: cannot listen on {host}:{port}: {e}") from None
  address, bound_port = server.server_address[:2]
  print(f"explorer of {workdir} at http://{address}:{bound_port}/  (Ctrl-C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


def warm_up(explorer: Explorer) -> None:
  """Compile the steered passes before the first visitor (one shape each)."""
  s = explorer.steerer
  history = s.user_history(str(s.dataset.interactions.user_ids[0]))
  s.top_items(history)
  if s.controls:
    edits = s.resolve([f"{next(iter(s.controls))}:+1"])
    s.top_items(history, edits)
    s.test_effect(edits)
  explorer.explain({"user": [str(s.dataset.interactions.user_ids[0])], "item": ["1"]})
