"""The whole pipeline on synthetic data of MovieLens-20M's size, through the real ml-20m loader.

    python -m benchmarks.scale_rehearsal [--scale 1.0] [--train_steps 200] [--sae_steps 200]
        [--stages parse,train_recommender,train_sae,interpret,steer] [--workdir DIR]

Writes `ratings.csv` (userId,movieId,rating,timestamp) and `movies.csv` (movieId,title,genres)
in the ML-20M format (`write_ml20m`): at `--scale 1` 138,493 users, 26,744 rated movies of
27,278 listed, 20,000,263 ratings, every user with at least 20. The data has planted structure:
each movie has one to three of ML-20M's 19 genres (a few "(no genres listed)"), Zipf-like
popularity; each user prefers one to three genres and draws 70 % of their movies from them.
Titles look like ML's, some with a comma (quoted, as in the real file).

Then runs each stage of `experiments.main` (config `experiments/configs/ml20m.py`,
`data.dir` = the written folder, step caps `train.max_steps` and `sae.max_steps`) in its own
subprocess, so that each stage's peak resident memory is its own (`os.wait4`), and prints per
stage: wall time, peak RSS and its throughput:

* `parse`: the ml-20m loader over the CSVs (rows parsed/s; it also fills the prepared-array
  cache, here inside the work folder, that the later stages read);
* `train_recommender`: training sequences/s (`train_seconds` of its results) and users
  evaluated/s over the rest of its wall time (validation + test);
* `train_sae`: activations captured/s (the capture of the SAE users' layer, from its log line);
* `interpret`: positions scored/s (`num_positions` over the stage's wall time);
* `steer`: users steered/s (test users x (1 + attributes x strengths) rankings over wall time).

Wall times include each subprocess's start (importing JAX, loading the prepared arrays,
compiling). Writes benchmarks/results/scale_rehearsal.json (`figure` = total wall seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
ML20M = {"users": 138_493, "rated_items": 26_744, "listed_items": 27_278, "ratings": 20_000_263,
         "min_ratings": 20, "max_movie_id": 131_262}
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
          "Sci-Fi", "Thriller", "War", "Western")
STAGES = ("parse", "train_recommender", "train_sae", "interpret", "steer")
PREFERRED_SHARE = 0.7  # share of a user's ratings drawn from their preferred genres
START, END = 789_652_009, 1_427_784_002  # ML-20M's first and last timestamps


def _sizes(scale: float) -> dict:
  users = max(10, round(ML20M["users"] * scale))
  rated = max(len(GENRES) * 3, round(ML20M["rated_items"] * scale))
  listed = rated + round((ML20M["listed_items"] - ML20M["rated_items"]) * scale)
  ratings = max(users * ML20M["min_ratings"], round(ML20M["ratings"] * scale))
  return {"users": users, "rated_items": rated, "listed_items": listed, "ratings": ratings}


def _lengths(rng, users: int, total: int) -> np.ndarray:
  """Ratings per user: at least 20, heavy-tailed (log-normal), summing exactly to `total`."""
  low = ML20M["min_ratings"]
  raw = rng.lognormal(0.0, 1.2, users)
  extra = np.floor(raw / raw.sum() * (total - low * users)).astype(np.int64)
  extra[rng.choice(users, total - low * users - extra.sum(), replace=False)] += 1
  return low + extra


def write_ml20m(directory: pathlib.Path, scale: float = 1.0, seed: int = 0) -> dict:
  """Writes `ratings.csv` and `movies.csv` of ML-20M's size times `scale`; returns the sizes."""
  rng = np.random.default_rng(seed)
  sizes = _sizes(scale)
  directory.mkdir(parents=True, exist_ok=True)
  num_genres = len(GENRES)
  listed = sizes["listed_items"]
  movie_ids = np.sort(rng.choice(np.arange(1, max(ML20M["max_movie_id"], 2 * listed) + 1),
                                 listed, replace=False))
  primary = rng.integers(0, num_genres, listed)
  member = np.zeros((listed, num_genres), bool)
  member[np.arange(listed), primary] = True
  for _ in range(2):  # up to two more genres each
    extra = rng.integers(0, num_genres, listed)
    chosen = rng.random(listed) < 0.45
    member[np.flatnonzero(chosen), extra[chosen]] = True
  no_genre = rng.random(listed) < 0.005
  rated = np.sort(rng.choice(listed, sizes["rated_items"], replace=False))  # rows of movies
  popularity = np.zeros(listed)
  popularity[rated] = (rng.permutation(len(rated)) + 1.0) ** -0.9

  _write_movies(directory / "movies.csv", rng, movie_ids, member, no_genre)

  lengths = _lengths(rng, sizes["users"], sizes["ratings"])
  user_genres = np.zeros((sizes["users"], num_genres), bool)
  for _ in range(3):
    pick = rng.integers(0, num_genres, sizes["users"])
    keep = rng.random(sizes["users"]) < 0.6
    user_genres[np.arange(sizes["users"]), pick] |= keep | ~user_genres.any(1)
  user_of = np.repeat(np.arange(sizes["users"]), lengths)
  # A preferred genre per rating (uniform among the user's), then a movie of it by popularity.
  counts = user_genres.sum(1)
  choice = np.floor(rng.random(len(user_of)) * counts[user_of]).astype(np.int64)
  genre = np.argsort(~user_genres, axis=1, kind="stable")[user_of, choice]
  preferred = rng.random(len(user_of)) < PREFERRED_SHARE
  items = _draw(rng, len(user_of), popularity)
  for g in range(num_genres):
    rows = np.flatnonzero(preferred & (genre == g))
    weights = popularity * member[:, g]
    if weights.sum() > 0:  # (a tiny scale may leave a genre without rated movies)
      items[rows] = _draw(rng, len(rows), weights)
  gaps = rng.exponential(1.0, len(user_of))
  start = rng.uniform(START, END - 86_400 * 30, sizes["users"])
  first = np.r_[0, np.cumsum(lengths)[:-1]]
  within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], lengths)
  span = rng.uniform(86_400, 86_400 * 400, sizes["users"])
  times = start[user_of] + within / np.repeat(within[first + lengths - 1], lengths) * span[user_of]
  times = np.minimum(times, END).astype(np.int64)
  stars = rng.integers(1, 11, len(user_of)) / 2  # 0.5 .. 5.0
  _write_ratings(directory / "ratings.csv", user_of + 1, movie_ids[items], stars, times)
  return {**sizes, "directory": str(directory)}


def _draw(rng, count: int, weights) -> np.ndarray:
  """`count` indices drawn with probabilities proportional to `weights`."""
  cdf = np.cumsum(weights)
  return np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right").clip(0, len(cdf) - 1)


def _write_movies(path, rng, movie_ids, member, no_genre) -> None:
  years = rng.integers(1915, 2015, len(movie_ids))
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    for i, movie in enumerate(movie_ids):
      title = f"Synthetic Movie {movie}, The ({years[i]})" if i % 7 == 0 else (
          f"Synthetic Movie {movie} ({years[i]})")
      genres = "(no genres listed)" if no_genre[i] else "|".join(
          GENRES[g] for g in np.flatnonzero(member[i]))
      writer.writerow([int(movie), title, genres])


def _write_ratings(path, users, movies, stars, times, chunk: int = 1_000_000) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.write("userId,movieId,rating,timestamp\n")
    for lo in range(0, len(users), chunk):
      hi = lo + chunk
      f.write("".join(f"{u},{m},{r:.1f},{t}\n" for u, m, r, t in zip(
          users[lo:hi].tolist(), movies[lo:hi].tolist(), stars[lo:hi].tolist(),
          times[lo:hi].tolist())))


# ------------------------------------------------------------------------------- pipeline


def _run_child(cmd: list[str], env: dict) -> tuple[float, float, str]:
  """`(wall seconds, peak RSS MiB, stderr)` of one subprocess (its own `ru_maxrss`)."""
  start = time.perf_counter()
  with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    err.seek(0)
    out.seek(0)
    stderr, stdout = err.read(), out.read()
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd[2:5])} failed ({proc.returncode}):\n{stderr[-4000:]}")
  return seconds, usage.ru_maxrss / 1024, stdout + stderr


_PARSE = """
import json, os, pathlib, sys, time
from seqrec_jax import data
prepared = pathlib.Path(os.environ["SEQREC_DATA_DIR"]) / "prepared"
cached = prepared.is_dir() and any(prepared.iterdir())
start = time.perf_counter()
ds = data.load_dataset("ml-20m", data_dir=sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "from_cache": cached,
                  "interactions": int(ds.interactions.num_interactions),
                  "users": int(ds.interactions.num_users),
                  "items": int(ds.interactions.num_items - 1)}))
"""


def _read_json(path: pathlib.Path) -> dict:
  return json.loads(path.read_text())


def run_stage(stage: str, args, data_dir: pathlib.Path, workdir: pathlib.Path, env: dict) -> dict:
  if stage == "parse":
    seconds, rss, output = _run_child([sys.executable, "-c", _PARSE, str(data_dir)], env)
    parsed = json.loads([l for l in output.splitlines() if l.startswith("{")][-1])
    return {"wall_seconds": seconds, "peak_rss_mib": rss, **parsed,
            "throughput": parsed["interactions"] / parsed["seconds"], "unit": "rows parsed/s"}
  cmd = [sys.executable, "-m", "experiments.main", f"--experiment={stage}",
         "--config=experiments/configs/ml20m.py", f"--workdir={workdir}",
         f"--config.data.dir={data_dir}", f"--config.train.max_steps={args.train_steps}",
         f"--config.sae.max_steps={args.sae_steps}", *args.override]
  seconds, rss, output = _run_child(cmd, env)
  row = {"wall_seconds": seconds, "peak_rss_mib": rss}
  if stage == "train_recommender":
    r = _read_json(workdir / "results.json")
    # Roughly: validation at the last step's boundary and for the best checkpoint, then test.
    evaluated = r["num_val_users"] * 2 + r["num_test_users"]
    row.update(steps=r["steps"], train_seconds=r["train_seconds"],
               throughput=r["steps"] * 128 / r["train_seconds"], unit="training sequences/s",
               eval_users_per_s=evaluated / max(seconds - r["train_seconds"], 1e-9))
  elif stage == "train_sae":
    match = re.search(r"train_sae: \S+ activations of (\d+) SAE users in ([\d.]+)s: (\d+) train, "
                      r"(\d+) validation", output)
    if match:
      users, capture, count = int(match[1]), float(match[2]), int(match[3]) + int(match[4])
      row.update(activations=count, sae_users=users, capture_seconds=capture,
                 throughput=count / capture, unit="activations captured/s")
  elif stage == "interpret":
    r = _read_json(workdir / "interpret" / "results.json")
    row.update(positions=r["num_positions"], throughput=r["num_positions"] / seconds,
               unit="positions scored/s")
  elif stage == "steer":
    r = _read_json(workdir / "steer" / "results.json")
    rankings = r["num_users"] * (1 + sum(len(a["strengths"]) for a in r["attributes"].values()))
    row.update(users=r["num_users"], user_rankings=rankings, throughput=rankings / seconds,
               unit="users steered/s")
  return row


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--scale", type=float, default=1.0, help="fraction of ML-20M's size")
  parser.add_argument("--train_steps", type=int, default=200)
  parser.add_argument("--sae_steps", type=int, default=200)
  parser.add_argument("--stages", default=",".join(STAGES))
  parser.add_argument("--workdir", type=pathlib.Path, default=None,
                      help="data, cache and runs go here (default: a fresh temporary folder)")
  parser.add_argument("--override", action="append", default=[],
                      help="extra --config.X=Y flags for every stage, e.g. "
                           "--override=--config.steer.strengths='(0.0,8.0)'")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  stages = args.stages.split(",")
  unknown = set(stages) - set(STAGES)
  if unknown:
    parser.error(f"unknown stages {sorted(unknown)}; known: {list(STAGES)}")

  from benchmarks import common

  env_record = common.environment()
  root = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="scale_rehearsal_"))
  data_dir, workdir = root / "ml-20m", root / "run"
  start = time.perf_counter()
  sizes = write_ml20m(data_dir, args.scale, args.seed)
  write_seconds = time.perf_counter() - start
  print(f"wrote {sizes['ratings']:,} ratings of {sizes['users']:,} users over "
        f"{sizes['rated_items']:,} movies ({sizes['listed_items']:,} listed) to {data_dir} in "
        f"{write_seconds:.1f} s", flush=True)
  # The prepared-array cache goes into the work folder, never the user's.
  env = dict(os.environ, SEQREC_DATA_DIR=str(root / "cache"), JAX_PLATFORMS=os.environ.get(
      "JAX_PLATFORMS", "cpu"))
  rows = {}
  for stage in stages:
    load = os.getloadavg()[0]
    row = run_stage(stage, args, data_dir, workdir, env)
    row["load_average_before"] = load
    rows[stage] = row
    rate = f"{row['throughput']:,.0f} {row['unit']}" if "throughput" in row else "-"
    print(f"{stage:18s} wall {row['wall_seconds']:8.1f} s  peak RSS {row['peak_rss_mib']:8,.0f} MiB"
          f"  {rate}  (load before {load:.2f})", flush=True)
    _record(common, env_record, args, sizes, write_seconds, rows, done=len(rows) == len(stages))


def _record(common, env_record, args, sizes, write_seconds, rows, done: bool) -> None:
  """Writes the results so far (after every stage, so a long run interrupted keeps them)."""
  total = sum(r["wall_seconds"] for r in rows.values())
  slowest = max(rows, key=lambda s: rows[s]["wall_seconds"])
  peak = max(r["peak_rss_mib"] for r in rows.values())
  if done:
    print(f"total {total:.0f} s; slowest stage {slowest} ({rows[slowest]['wall_seconds']:.0f} s); "
          f"largest peak RSS {peak:,.0f} MiB", flush=True)
  common.record(
      "scale_rehearsal", env_record, figure=total, unit="s (all stages, wall)", reference=None,
      ratio=None, summary=f"scale {args.scale:g}: {total:.0f} s, slowest {slowest}, "
                          f"peak RSS {peak:,.0f} MiB" + ("" if done else " (unfinished)"),
      figure_definition="wall seconds of the stages run, each in its own process",
      reference_definition="none", scale=args.scale, sizes=sizes, write_seconds=write_seconds,
      train_steps=args.train_steps, sae_steps=args.sae_steps, overrides=args.override,
      stages=rows, finished=done, slowest_stage=slowest, largest_peak_rss_mib=peak)

if __name__ == "__main__":
  main()
