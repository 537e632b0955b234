"""The explorer server under hostile or careless clients: bounded compilations per request,
bad numbers as 400s, slow clients timed out on a bounded pool, DNS-rebinding and framing
defences, and a page that runs under its content security policy."""

import html.parser
import http.client
import re
import socket
import threading
import time

import jax
import numpy as np
import pytest

from seqrec_jax.recommender import evaluation
from seqrec_jax.serve import server
from seqrec_jax.steer import recommend
from tests.serve.test_server import _user, get


def _raw(address, request: bytes, timeout: float = 30.0) -> bytes:
  """The server's whole answer to raw `request` bytes (the connection closed after it)."""
  with socket.create_connection(address, timeout=timeout) as sock:
    sock.sendall(request)
    chunks = []
    while chunk := sock.recv(65536):
      chunks.append(chunk)
  return b"".join(chunks)


def _status_and_headers(answer: bytes) -> tuple[int, dict]:
  head = answer.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
  headers = dict(line.split(": ", 1) for line in head[1:])
  return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


# ----------------------------------------------------------------------------- bounded work


def test_edit_counts_and_history_lengths_compile_a_few_shapes(served, monkeypatch):
  """Every argument shape of the compiled forward over 64 edit counts and 200 history lengths
  (jit compiles once per distinct shape); the forward itself is replaced by a spy."""
  explorer, url = served
  batch_shapes, edit_shapes = set(), set()

  def spy(params, batch, *, model_cfg, k, filter_seen, edit=None, score_bias=None):
    batch_shapes.add(tuple(np.shape(x) for x in jax.tree.leaves(batch)))
    edit_shapes.add(tuple(np.shape(x) for x in jax.tree.leaves(edit)))
    return None, np.arange(1, k + 1)[None].repeat(len(batch["input_ids"]), 0)

  monkeypatch.setattr(evaluation, "_eval_batch", spy)
  user = _user(explorer)
  for count in range(1, 65):  # up to the documented cap
    edits = [f"#{j % explorer.dict_size}:+1" for j in range(count)]
    assert get(url, "api/recommend", user=user, edit=edits)[0] == 200
  num_items = explorer.steerer.model_cfg.num_items - 1
  for length in range(1, 201):
    items = ",".join(str(1 + i % num_items) for i in range(length))
    assert get(url, "api/recommend", items=items, edit="#1:+1")[0] == 200
  assert len(edit_shapes) <= 4 + 1, edit_shapes  # four edit buckets and no edit
  assert len(batch_shapes) <= 3, batch_shapes  # seen widths 64, 128, 256


def test_distinct_history_lengths_and_edit_counts_share_compilations(served):
  """Real compilations: histories of 65, 80 and 100 items share one seen width; 17 and 25 edits
  share one edit bucket (they compiled once each before)."""
  explorer, url = served
  compiled = evaluation._compiled_eval_batch(jax.default_backend())
  user = _user(explorer)
  get(url, "api/recommend", user=user)  # the plain pass at the user's width, compiled already
  before = compiled._cache_size()
  for length in (65, 80, 100):
    assert get(url, "api/recommend", items=",".join(["1"] * length))[0] == 200
  for count in (17, 25):
    assert get(url, "api/recommend", user=user, edit=["#1:+1"] * count)[0] == 200
  assert compiled._cache_size() - before <= 2


@pytest.mark.parametrize("route", ["api/recommend", "api/effect"])
def test_more_edits_than_the_cap_is_a_400(served, route):
  explorer, url = served
  edits = ["#1:+1"] * (recommend.MAX_EDITS + 1)
  status, body = get(url, route, user=_user(explorer), edit=edits)
  assert status == 400 and re.fullmatch(rf"at most {recommend.MAX_EDITS} .*", body["error"])
  assert get(url, "api/info")[1]["max_edits"] == recommend.MAX_EDITS  # the page can know it
  # An attribute counts its control's latents.
  name, control = max(explorer.steerer.controls.items(), key=lambda c: len(c[1]["promote"].latents))
  width = len(control["promote"].latents)
  if width > 1:
    edits = [f"{name}:+1"] * (recommend.MAX_EDITS // width + 1)
    status, body = get(url, route, user=_user(explorer), edit=edits)
    assert status == 400 and "latent edits" in body["error"], body


# ----------------------------------------------------------------------------- bad numbers


@pytest.mark.parametrize("route,params,pattern", [
    ("api/history", {"recent": "²"}, "recent must be a whole number"),
    ("api/history", {"recent": "-3"}, "recent must be a whole number"),
    ("api/explain", {"item": "1", "top": "²"}, "top must be a whole number"),
    ("api/explain", {"item": "1" * 30}, "item ids must be integers"),
    ("api/recommend", {"edit": "#²:+1"}, "a latent is #N"),
    ("api/recommend", {"edit": "#١:+1"}, "a latent is #N"),  # Arabic-Indic one
    ("api/effect", {"edit": "#²:+1"}, "a latent is #N"),
    ("api/recommend", {"items": "1" * 30}, "item ids must be integers"),
    ("api/recommend", {"items": "3,²"}, "item ids must be integers"),
    ("api/latent", {"id": "²"}, "give id=LATENT"),
])
def test_bad_numbers_are_400s_with_one_line(served, route, params, pattern):
  explorer, url = served
  if route != "api/effect" and "items" not in params:
    params = {"user": _user(explorer), **params}
  status, body = get(url, route, **params)
  assert status == 400, body
  assert set(body) == {"error"} and "\n" not in body["error"] and re.search(pattern, body["error"])


def test_recent_zero_lists_nothing(served):
  explorer, url = served
  status, body = get(url, "api/history", user=_user(explorer), recent="0")
  assert status == 200 and body["recent"] == [] and body["length"] > 0


def test_a_very_long_user_id_is_a_400(served):
  _, url = served
  status, body = get(url, "api/recommend", user="u" * 100_00)
  assert status == 400 and "at most" in body["error"]


# ----------------------------------------------------------------------------- connections


@pytest.fixture
def strict(served):
  """`(server, url)`: a second server on the same explorer with two workers and a 0.5 s
  request timeout."""
  explorer, _ = served
  srv, url = server.start_in_thread(explorer, workers=2, timeout=0.5)
  yield srv, url
  srv.shutdown()
  srv.server_close()


def _closed_by_server_within(sock: socket.socket, seconds: float) -> bool:
  sock.settimeout(seconds)
  try:
    return sock.recv(1024) == b""
  except TimeoutError:
    return False
  except ConnectionResetError:
    return True


def test_slow_clients_are_dropped_and_do_not_hold_the_workers(strict):
  srv, url = strict
  silent = socket.create_connection(srv.server_address)
  half = socket.create_connection(srv.server_address)
  half.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never end
  trickle = socket.create_connection(srv.server_address)
  stop = threading.Event()

  def drip():  # one byte every 0.1 s: each read is quick, the request never completes
    for byte in b"GET /api/info HTTP/1.1\r\nX-Slow: " + b"a" * 10_000:
      if stop.is_set():
        return
      try:
        trickle.send(bytes([byte]))
      except OSError:
        return
      time.sleep(0.1)

  threading.Thread(target=drip, daemon=True).start()
  try:
    # Three slow clients, two workers: a real request is still answered, soon.
    start = time.perf_counter()
    assert get(url, "api/users", q="")[0] == 200
    assert time.perf_counter() - start < 10
    for sock in (silent, half, trickle):
      assert _closed_by_server_within(sock, 5.0)
  finally:
    stop.set()
    for sock in (silent, half, trickle):
      sock.close()


def test_idle_connections_do_not_add_threads(strict):
  srv, url = strict
  threads = threading.active_count()
  idle = [socket.create_connection(srv.server_address) for _ in range(40)]
  try:
    time.sleep(0.2)
    assert threading.active_count() <= threads
    assert srv.request_queue_size >= 128  # the listen backlog
  finally:
    for sock in idle:
      sock.close()
  assert get(url, "api/users", q="")[0] == 200


# ----------------------------------------------------------------------------- browsers


def test_host_header_must_name_this_server(served):
  explorer, url = served
  address = tuple(int(p) if p.isdigit() else p for p in url.split("//")[1].split(":"))
  port = address[1]

  def status_for(host_line: bytes) -> int:
    answer = _raw(address, b"GET /api/users?q= HTTP/1.1\r\n" + host_line
                  + b"Connection: close\r\n\r\n")
    return _status_and_headers(answer)[0]

  for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
    assert status_for(f"Host: {good}\r\n".encode()) == 200, good
  for bad in (f"attacker.example:{port}", f"localhost.attacker.example:{port}", "localhost",
              "localhost:1", f"127.0.0.1:{port}0"):
    assert status_for(f"Host: {bad}\r\n".encode()) == 403, bad
  assert status_for(b"") == 403  # no Host at all


def test_allowed_hosts_of_a_wildcard_bind():
  names, any_address = server.allowed_hosts("0.0.0.0")
  assert server.host_allowed("192.168.1.7:8000", 8000, names, any_address)
  assert server.host_allowed("[::1]:8000", 8000, names, any_address)
  assert not server.host_allowed("attacker.example:8000", 8000, names, any_address)
  names, any_address = server.allowed_hosts("127.0.0.1")
  assert not server.host_allowed("192.168.1.7:8000", 8000, names, any_address)
  assert server.host_allowed("[::1]:8000", 8000, names, any_address)
  assert server.host_allowed("localhost", 80, names, any_address)


def test_security_headers_head_and_no_absolute_paths(served):
  explorer, url = served
  host, port = url.split("//")[1].split(":")
  for path in ("/", "/static/app.js", "/api/info", "/api/nothing"):
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy and "script-src 'self'" in policy
    connection.request("HEAD", path)
    head = connection.getresponse()
    assert head.status == response.status and head.read() == b""
    assert head.getheader("Content-Length") == str(len(body))
    connection.close()
  status, info = get(url, "api/info")
  assert status == 200 and info["workdir"] and not re.search(r"[/\\]", info["workdir"])


class _PageChecker(html.parser.HTMLParser):
  """Collects what a `script-src 'self'; style-src 'self'` policy would block in a page."""

  def __init__(self):
    super().__init__()
    self.blocked, self._open = [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    for name, value in attrs.items():
      if name == "style" or name.startswith("on") or "javascript:" in (value or ""):
        self.blocked.append(f"<{tag} {name}=...>")
    if tag == "style" or (tag == "script" and not attrs.get("src")):
      self.blocked.append(f"inline <{tag}>")
    source = attrs.get("src") or attrs.get("href") or ""
    if tag in ("script", "link") and re.match(r"\w+:|//", source):
      self.blocked.append(f"<{tag}> from elsewhere")


def test_the_page_needs_nothing_its_policy_forbids():
  page = _PageChecker()
  page.feed((server.STATIC_DIR / "index.html").read_text())
  assert page.blocked == []
  script = (server.STATIC_DIR / "app.js").read_text()
  # Inline styles, string code and markup injection are what the policy (or good sense) forbids.
  for pattern in (r"\beval\(", r"new Function", r"innerHTML", r"insertAdjacentHTML", r"cssText",
                  r"setAttribute\(\s*[\"']style", r"\bstyle:", r"javascript:",
                  r"setTimeout\(\s*[\"']"):
    assert not re.search(pattern, script), pattern
