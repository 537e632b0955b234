"""Server time of the explorer per slider change, on a finished workdir (MovieLens-100k by default).

    python -m experiments.main --experiment=pipeline --workdir=runs/ml100k   # once, ~8 min
    python -m benchmarks.serve_latency --workdir=runs/ml100k

A slider change on the page sends two requests: `GET /api/recommend?user=U&edit=NAME:S` (the
person's top 10 before and after) and `GET /api/effect?edit=NAME:S` (the same setting over all
test users). Simulated: for each of `--users` users, one attribute's slider swept through every
integer strength from -limit to +limit (attributes with distinct control latents, so every setting
is new and nothing is served from the explorer's cache), both requests sent
one after the other to a server on this machine. The figure is the median over changes of the
server time of the two requests together (each read from the `Server-Timing` header: time in the
explorer, HTTP parsing excluded); also its 95th percentile, each request's own, and the client's
round trip. `reference` is the target, 100 ms on 2 CPU cores; `ratio` = reference / figure.
Results go to `benchmarks/results/serve_latency.json`.
"""

from __future__ import annotations

import argparse
import importlib
import time
import urllib.parse
import urllib.request

import numpy as np

from benchmarks import common
from seqrec_jax.serve import explorer as explorer_lib
from seqrec_jax.serve import server

TARGET_MS = 100.0


def _timed_get(url: str) -> tuple[float, float]:
  """`(server ms, round-trip ms)` of one GET (which must succeed)."""
  start = time.perf_counter()
  with urllib.request.urlopen(url, timeout=60) as response:
    response.read()
    timing = response.headers["Server-Timing"]
  round_trip = (time.perf_counter() - start) * 1e3
  return float(timing.split("dur=")[1]), round_trip


def _stats(values) -> dict:
  values = np.asarray(values)
  return {"median_ms": float(np.median(values)), "p95_ms": float(np.percentile(values, 95)),
          "mean_ms": float(values.mean()), "max_ms": float(values.max())}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/ml100k")
  parser.add_argument("--config", default="ml100k", help="module in experiments/configs")
  parser.add_argument("--users", type=int, default=3, help="users whose slider is swept")
  args = parser.parse_args(argv)
  env = common.environment()

  config = importlib.import_module(f"experiments.configs.{args.config}").get_config()
  start = time.perf_counter()
  explorer = explorer_lib.Explorer.load(config, args.workdir)
  server.warm_up(explorer)
  load_seconds = time.perf_counter() - start
  srv, url = server.start_in_thread(explorer)
  limit = int(explorer.strength_limit)
  steps = range(-limit, limit + 1, 8 if common.quick() else 1)
  s = explorer.steerer
  rows = s.split.test.histories.users[: args.users]  # test users: long, recent histories
  users = [str(s.dataset.interactions.user_ids[r]) for r in rows]
  # Attributes with distinct control latents: no setting repeats, so the effect cache never hits.
  names = list({latent: name for name, latent in reversed(s.controls.items())}.values())[::-1]
  recommend_ms, effect_ms, change_ms, round_trip_ms = [], [], [], []
  for i, user in enumerate(users):
    name = names[i % len(names)]
    for strength in steps:
      edit = urllib.parse.quote(f"{name}:{strength:+d}")
      rec_server, rec_trip = _timed_get(f"{url}/api/recommend?user={urllib.parse.quote(user)}"
                                        f"&edit={edit}")
      eff_server, eff_trip = _timed_get(f"{url}/api/effect?edit={edit}")
      recommend_ms.append(rec_server)
      effect_ms.append(eff_server)
      change_ms.append(rec_server + eff_server)
      round_trip_ms.append(rec_trip + eff_trip)
  srv.shutdown()
  srv.server_close()

  per_change = _stats(change_ms)
  common.record(
      "serve_latency", env, figure=per_change["median_ms"], unit="ms",
      reference=TARGET_MS, ratio=TARGET_MS / per_change["median_ms"],
      summary=(f"median {per_change['median_ms']:.1f} ms, p95 {per_change['p95_ms']:.1f} ms per "
               f"slider change (recommend + effect over {len(s.split.test)} test "
               f"users), target {TARGET_MS:.0f} ms"),
      figure_definition="median over slider changes of the server time (Server-Timing) of "
                        "/api/recommend plus /api/effect for one new strength",
      median_ms=per_change["median_ms"], p95_ms=per_change["p95_ms"],
      per_change=per_change, recommend=_stats(recommend_ms), effect=_stats(effect_ms),
      round_trip=_stats(round_trip_ms), changes=len(change_ms), users=users,
      workdir=str(args.workdir), dataset=s.dataset.name, num_items=s.model_cfg.num_items - 1,
      num_test_users=len(s.split.test), layer=s.layer,
      dict_size=explorer.dict_size, load_and_compile_seconds=load_seconds)


if __name__ == "__main__":
  main()
