"""The explorer's HTTP server: the standard library's `HTTPServer` on a bounded pool of workers.

Routes: `GET /` (the page), `GET /static/NAME` (its script and style, shipped in the package),
`GET /api/ROUTE?...` for the `Explorer` methods in `ROUTES`; `HEAD` answers the same without a
body. API answers are JSON; a request the explorer cannot answer gets its 4xx status and
`{"error": "one line"}`, an unexpected failure a 500 with the same shape, and the server keeps
serving. Each answer carries the time spent in the explorer as `Server-Timing: app;dur=MS`.

Bounded work: a request takes at most `steer.recommend.MAX_EDITS` latent edits and a typed
history at most `explorer.MAX_HISTORY` items (beyond: 400), and both are padded to a few fixed
shapes, so no request compiles more than a handful of passes. Connections: `workers` threads
answer requests (more connections wait, accepted, in a queue; a kept-alive connection is closed
after its answer while others wait), the kernel queues `LISTEN_BACKLOG` connections before
accept, and a client must send each request in full within `timeout` seconds (a silent or
trickling client is dropped, its worker freed).

Local only by default: requests whose `Host` header names neither the bound address nor
`localhost` (with the port) are refused (403), which stops DNS-rebinding pages from reading the
API; answers forbid framing, MIME sniffing and any script or style not served from here (CSP).
"""

from __future__ import annotations

import io
import ipaddress
import json
import pathlib
import queue
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

from absl import logging

from seqrec_jax.serve.explorer import ApiError, Explorer

STATIC_DIR = pathlib.Path(__file__).parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png"}
ROUTES = ("info", "latents", "latent", "users", "items", "history", "recommend", "effect",
          "explain")
WORKERS = 32  # requests answered at once (a slow compile must not stall every other visitor)
REQUEST_TIMEOUT = 10.0  # seconds a connection has to send each request in full
LISTEN_BACKLOG = 128  # connections the kernel queues before accept (a browser opens 6 at once)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # The page loads its script and style from /static and fetches /api; nothing inline.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


class _DeadlineReader(io.RawIOBase):
  """Socket reads sharing one deadline, restarted per request (`restart`): a client that sends
  nothing, half a request, or one byte every few seconds is timed out all the same."""

  def __init__(self, sock: socket.socket, seconds: float):
    self.sock, self.seconds = sock, seconds
    self.restart()

  def restart(self) -> None:
    self.deadline = time.monotonic() + self.seconds

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    left = self.deadline - time.monotonic()
    if left <= 0:
      raise TimeoutError(f"request not received in full within {self.seconds:g} s")
    self.sock.settimeout(left)
    try:
      return self.sock.recv_into(buffer)
    finally:
      self.sock.settimeout(self.seconds)  # writes: `seconds` per send


class ExplorerHandler(BaseHTTPRequestHandler):
  """Answers the routes of one `Explorer` (`explorer`, set by `make_handler`)."""

  explorer: Explorer
  server_version = "seqrec_jax-explorer"
  protocol_version = "HTTP/1.1"

  def setup(self):
    self.timeout = self.server.request_timeout
    super().setup()
    self.rfile.close()
    self._reader = _DeadlineReader(self.connection, self.timeout)
    self.rfile = io.BufferedReader(self._reader)

  def handle_one_request(self):
    self._reader.restart()
    super().handle_one_request()

  def log_message(self, format, *args):
    logging.debug("%s %s", self.address_string(), format % args)

  def _send(self, status: int, body: bytes, content_type: str, seconds: float | None = None):
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    for name, value in SECURITY_HEADERS.items():
      self.send_header(name, value)
    if seconds is not None:
      self.send_header("Server-Timing", f"app;dur={seconds * 1e3:.2f}")
    if self.server.waiting():  # others wait for a worker: this one moves on
      self.send_header("Connection", "close")
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _json(self, status: int, payload: dict, seconds: float | None = None):
    self._send(status, json.dumps(payload, allow_nan=False).encode(), "application/json",
               seconds)

  def do_GET(self):
    url = urllib.parse.urlsplit(self.path)
    try:
      if not self.server.host_allowed(self.headers.get("Host")):
        self._json(403, {"error": f"host {self.headers.get('Host')!r} is not served here; "
                                  f"open {self.server.url}/"})
      elif url.path.startswith("/api/"):
        self._api(url.path[len("/api/"):], urllib.parse.parse_qs(url.query))
      elif url.path in ("/", "/index.html"):
        self._static("index.html")
      elif url.path.startswith("/static/"):
        self._static(url.path[len("/static/"):])
      else:
        self._json(404, {"error": f"no page {url.path}"})
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
      self.close_connection = True  # the browser went away (e.g. a slider moved on)

  do_HEAD = do_GET  # `_send` leaves the body out

  def _api(self, route: str, query: dict):
    if route not in ROUTES:
      self._json(404, {"error": f"unknown API route {route!r}; routes: {', '.join(ROUTES)}"})
      return
    start = time.perf_counter()
    try:
      self.explorer.check_current()  # 409 once a stage was redone since load
      payload, status = getattr(self.explorer, route)(query), 200
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


def make_handler(explorer: Explorer) -> type[BaseHTTPRequestHandler]:
  """A request handler class bound to `explorer`."""
  return type("Handler", (ExplorerHandler,), {"explorer": explorer})


def allowed_hosts(host: str) -> tuple[set[str], bool]:
  """`(names, any_address)`: the host names a `Host` header may carry for a server bound to
  `host`, and whether any IP address may stand there too (a wildcard bind: visitors type this
  machine's address; an IP address cannot be rebound, only a DNS name can)."""
  names = {host.lower(), "localhost"}
  try:
    address = ipaddress.ip_address(host)
  except ValueError:
    return names, False
  if address.is_loopback:
    names |= {"127.0.0.1", "::1"}
  if address.is_unspecified:
    names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
  return names, address.is_unspecified


def host_allowed(header: str | None, port: int, names: set[str], any_address: bool) -> bool:
  """Whether a `Host` header (`name:port`, `[v6]:port`; the port may be left out only for 80)
  names this server."""
  if not header:
    return False
  name, _, given_port = header.strip().lower().rpartition(":")
  if not name or given_port.endswith("]"):  # no port: `name` or `[v6]`
    name, given_port = header.strip().lower(), "80"
  if given_port != str(port):
    return False
  name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
  if name in names:
    return True
  try:
    ipaddress.ip_address(name)
  except ValueError:
    return False
  return any_address


class PooledHTTPServer(HTTPServer):
  """An `HTTPServer` answering on `workers` daemon threads; accepted connections wait in a
  queue for a free worker (none is ever refused for want of a thread)."""

  request_queue_size = LISTEN_BACKLOG

  def __init__(self, address, handler, *, workers: int = WORKERS,
               timeout: float = REQUEST_TIMEOUT):
    self.request_timeout, self.workers = timeout, workers
    super().__init__(address, handler)
    self.url = "http://{}:{}".format(*self.server_address[:2])
    self._names, self._any_address = allowed_hosts(address[0] or "0.0.0.0")
    self._queue: queue.Queue = queue.Queue()
    self._workers = [threading.Thread(target=self._work, daemon=True, name=f"explorer-{i}")
                     for i in range(workers)]
    for worker in self._workers:
      worker.start()

  def host_allowed(self, header: str | None) -> bool:
    return host_allowed(header, self.server_address[1], self._names, self._any_address)

  def waiting(self) -> int:
    """Connections accepted and not yet picked up by a worker."""
    return self._queue.qsize()

  def process_request(self, request, client_address):
    self._queue.put((request, client_address))

  def _work(self):
    while (job := self._queue.get()) is not None:
      request, client_address = job
      try:
        self.finish_request(request, client_address)
      except Exception:  # noqa: BLE001 (logged; the worker serves on)
        self.handle_error(request, client_address)
      finally:
        self.shutdown_request(request)

  def handle_error(self, request, client_address):
    if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
      logging.debug("explorer: %s went away", client_address)  # a closed tab, a timed-out client
    else:
      logging.error("explorer: request from %s failed:\n%s", client_address,
                    traceback.format_exc())

  def server_close(self):
    super().server_close()
    while True:  # connections never picked up
      try:
        job = self._queue.get_nowait()
      except queue.Empty:
        break
      if job is not None:
        self.shutdown_request(job[0])
    for _ in self._workers:
      self._queue.put(None)


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000, *,
                workers: int = WORKERS, timeout: float = REQUEST_TIMEOUT) -> PooledHTTPServer:
  """A bound (not yet serving) server; port 0 picks a free port (`server.server_address`)."""
  return PooledHTTPServer((host, port), make_handler(explorer), workers=workers, timeout=timeout)


def start_in_thread(explorer: Explorer, host: str = "127.0.0.1", port: int = 0, **options):
  """`(server, url)` with the server serving in a daemon thread (tests, benchmarks); `options`
  go to `make_server`."""
  server = make_server(explorer, host, port, **options)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server, server.url


def serve(config, workdir, *, host: str = "127.0.0.1", port: int = 8000) -> None:
  """The `serve` experiment: load `workdir`, print the address, serve until interrupted."""
  explorer = Explorer.load(config, workdir)
  warm_up(explorer)
  try:
    server = make_server(explorer, host, port)
  except OSError as e:
    raise SystemExit(f"error: cannot listen on {host}:{port}: {e}") from None
  print(f"explorer of {workdir} at {server.url}/  (Ctrl-C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


def warm_up(explorer: Explorer) -> None:
  """Compile the steered passes before the first visitor (the smallest edit bucket)."""
  s = explorer.steerer
  history = s.user_history(str(s.dataset.interactions.user_ids[0]))
  s.top_items(history)
  if s.controls:
    edits = s.resolve([f"{next(iter(s.controls))}:+1"])
    s.top_items(history, edits)
    s.test_effect(edits)
  explorer.explain({"user": [str(s.dataset.interactions.user_ids[0])], "item": ["1"]})
