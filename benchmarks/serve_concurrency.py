"""The explorer under many clients at once: latency seen by clients against time in the server.

    python -m benchmarks.serve_concurrency                    # builds a small synthetic workdir
    python -m benchmarks.serve_concurrency --workdir=runs/ml100k --config=ml100k

`--clients` clients (50) start together, each a thread in a separate process (so that they do not
share the server's interpreter lock) with one HTTP/1.1 connection kept alive as a browser keeps it
(reopened when the server closes it), and each sends `--changes` slider changes one after
another: `GET /api/recommend?user=U&edit=NAME:S` then `GET /api/effect?edit=NAME:S`, with a
random test user, attribute and integer strength. The server (this process, pinned to `--cores`
CPUs, 2 by default; the clients get the other CPUs where there are any, else share them)
answers on its bounded pool of workers.

Figures: the 95th percentile of the client-side latency (request sent to last byte read,
reconnections included) over the 95th percentile of the server-side time (`Server-Timing`: time in
the explorer), which must stay within `TARGET_RATIO` (3x): requests wait for a worker, not in
queues; the kernel's listen-queue overflows and drops during the run (`TcpExt ListenOverflows` and
`ListenDrops` of /proc/net/netstat, counted for this network namespace), which must be 0; failed
requests, which must be 0; and throughput. Without `--workdir`, a small synthetic workdir is built
once (about 1.5 min on 2 cores) under the temporary directory and reused by later runs.
Results go to `benchmarks/results/serve_concurrency.json`.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import multiprocessing
import os
import pathlib
import random
import tempfile
import time
import urllib.parse

import numpy as np

TARGET_RATIO = 3.0  # client p95 / server p95


def small_config():
  """A small synthetic pipeline (the serve tests' settings with more users)."""
  from experiments.configs import synthetic
  c = synthetic.get_config()
  c.data.options.update(num_users=300, num_items=60, num_genres=4, min_len=5, max_len=20)
  c.model.update(kind="sasrec", max_len=16, hidden_dim=16, mlp_dim=32, num_blocks=1)
  c.train.update(batch_size=16, num_epochs=50, max_steps=20, eval_every_steps=10,
                 log_every_steps=10)
  c.eval.batch_size = 32
  c.sae.update(dict_size=32, batch_size=64, num_epochs=4, warmup_steps=2, eval_every_steps=3,
               log_every_steps=2, capture_batch_size=16, l1_coeff=0.05)
  c.steer.strengths = (-32.0, 0.0, 32.0)
  return c


def listen_overflows() -> int:
  """`ListenOverflows + ListenDrops` of this network namespace (-1 where unreadable)."""
  try:
    lines = pathlib.Path("/proc/net/netstat").read_text().splitlines()
  except OSError:
    return -1
  for names, values in zip(lines[::2], lines[1::2]):
    if names.startswith("TcpExt:"):
      row = dict(zip(names.split()[1:], map(int, values.split()[1:])))
      return row.get("ListenOverflows", 0) + row.get("ListenDrops", 0)
  return -1


def _client(host: str, port: int, paths: list[str], start_at: float) -> list[tuple]:
  """`[(path, status, client ms, server ms or nan, error)]` of `paths` sent in order on one
  kept-alive connection."""
  time.sleep(max(0.0, start_at - time.time()))
  connection = http.client.HTTPConnection(host, port, timeout=120)
  rows = []
  for path in paths:
    start = time.perf_counter()
    try:
      connection.request("GET", path)
      response = connection.getresponse()
      response.read()
      timing = response.getheader("Server-Timing") or ""
      server_ms = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
      rows.append((path, response.status, (time.perf_counter() - start) * 1e3, server_ms, ""))
    except (OSError, http.client.HTTPException) as e:
      rows.append((path, 0, (time.perf_counter() - start) * 1e3, float("nan"), repr(e)))
      connection.close()
  connection.close()
  return rows


def _clients(host: str, port: int, plans: list[list[str]], start_at: float, cpus, out) -> None:
  """All clients as threads of one process on `cpus`; their rows go to `out` (a pipe end)."""
  from concurrent.futures import ThreadPoolExecutor
  os.sched_setaffinity(0, cpus)
  with ThreadPoolExecutor(len(plans)) as pool:
    rows = list(pool.map(lambda paths: _client(host, port, paths, start_at), plans))
  out.send(rows)
  out.close()


def _plans(explorer, clients: int, changes: int, seed: int) -> list[list[str]]:
  s = explorer.steerer
  users = [str(s.dataset.interactions.user_ids[r]) for r in s.split.test.histories.users]
  names = list(s.controls)
  limit = int(explorer.strength_limit)
  rng = random.Random(seed)
  plans = []
  for _ in range(clients):
    paths = []
    for _ in range(changes):
      edit = urllib.parse.quote(f"{rng.choice(names)}:{rng.randint(-limit, limit):+d}")
      user = urllib.parse.quote(rng.choice(users))
      paths += [f"/api/recommend?user={user}&edit={edit}", f"/api/effect?edit={edit}"]
    plans.append(paths)
  return plans


def _percentiles(values) -> dict:
  values = np.asarray(values, float)
  return {"median_ms": float(np.median(values)), "p95_ms": float(np.percentile(values, 95)),
          "max_ms": float(values.max())}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default=None, help="a finished workdir (default: build one)")
  parser.add_argument("--config", default=None,
                      help="module in experiments/configs for --workdir (default ml100k)")
  parser.add_argument("--clients", type=int, default=50)
  parser.add_argument("--changes", type=int, default=10, help="slider changes per client")
  parser.add_argument("--cores", type=int, default=2, help="CPUs the server is pinned to")
  parser.add_argument("--workers", type=int, default=None, help="server workers (default: its own)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  from benchmarks import common
  from experiments import stages
  from seqrec_jax.serve import explorer as explorer_lib
  from seqrec_jax.serve import server

  available = os.sched_getaffinity(0)
  cpus = sorted(available)[: args.cores]
  os.sched_setaffinity(0, cpus)  # the server and its XLA threads
  client_cpus = (available - set(cpus)) or available  # other CPUs where the machine has them
  env = common.environment()
  if args.workdir is None:
    config = small_config()
    workdir = pathlib.Path(tempfile.gettempdir()) / "seqrec_jax_serve_concurrency"
    start = time.perf_counter()
    stages.pipeline(config, workdir)  # finished stages with the same settings are skipped
    print(f"workdir {workdir} ready in {time.perf_counter() - start:.0f} s", flush=True)
  else:
    name = args.config or "ml100k"
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    workdir = pathlib.Path(args.workdir)
  explorer = explorer_lib.Explorer.load(config, workdir)
  server.warm_up(explorer)
  options = {} if args.workers is None else {"workers": args.workers}
  srv, url = server.start_in_thread(explorer, **options)
  host, port = srv.server_address[:2]
  changes = 2 if common.quick() else args.changes
  plans = _plans(explorer, args.clients, changes, args.seed)

  context = multiprocessing.get_context("spawn")
  receive, send = context.Pipe(duplex=False)
  overflows_before = listen_overflows()
  start_at = time.time() + 5.0  # the client process imports and opens its threads first
  process = context.Process(target=_clients, args=(host, port, plans, start_at, client_cpus, send))
  process.start()
  per_client = receive.recv()
  seconds = time.time() - start_at
  process.join()
  overflows = listen_overflows() - overflows_before if overflows_before >= 0 else None
  srv.shutdown()
  srv.server_close()

  rows = [row for client in per_client for row in client]
  ok = [r for r in rows if r[1] == 200]
  failed = [r for r in rows if r[1] != 200]
  client_ms = [r[2] for r in ok]
  server_ms = [r[3] for r in ok]
  client, served = _percentiles(client_ms), _percentiles(server_ms)
  ratio = client["p95_ms"] / served["p95_ms"]
  summary = (f"{args.clients} clients on {len(cpus)} cores: client p95 {client['p95_ms']:.0f} ms, "
             f"server p95 {served['p95_ms']:.0f} ms ({ratio:.2f}x, target <= {TARGET_RATIO:g}x), "
             f"listen-queue overflows {overflows}, failed requests {len(failed)}")
  print(summary, flush=True)
  print(f"  client-side: median {client['median_ms']:.1f} ms, p95 {client['p95_ms']:.1f} ms, "
        f"max {client['max_ms']:.1f} ms over {len(ok)} answered requests", flush=True)
  print(f"  server-side: median {served['median_ms']:.1f} ms, p95 {served['p95_ms']:.1f} ms, "
        f"max {served['max_ms']:.1f} ms; {len(rows) / seconds:.1f} requests/s", flush=True)
  for r in failed[:5]:
    print(f"  failed: {r[0]} -> {r[1]} {r[4]}", flush=True)
  common.record(
      "serve_concurrency", env, figure=ratio, unit="x", reference=TARGET_RATIO,
      ratio=TARGET_RATIO / ratio, summary=summary,
      figure_definition="95th percentile of client-side latency over the 95th percentile of "
                        "server-side time (Server-Timing), API requests of concurrent clients",
      clients=args.clients, changes_per_client=changes, requests=len(rows), failed=len(failed),
      listen_overflows=overflows, client=client, server=served,
      recommend_server=_percentiles([r[3] for r in ok if "/recommend" in r[0]] or [0.0]),
      effect_server=_percentiles([r[3] for r in ok if "/effect" in r[0]] or [0.0]),
      requests_per_second=len(rows) / seconds, workers=srv.workers, cores=cpus,
      client_cores=sorted(client_cpus), workdir=str(workdir),
      dataset=explorer.steerer.dataset.name, num_test_users=len(explorer.steerer.split.test))
  ok_all = not failed and overflows in (0, None) and ratio <= TARGET_RATIO
  print("target met" if ok_all else "TARGET MISSED", flush=True)


if __name__ == "__main__":
  main()
