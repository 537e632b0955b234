"""Times each stage of the default pipeline in one process (huge pages on, as the command line).

  python -m benchmarks.pipeline_stages --workdir=/tmp/pipeline_timing [--config=FILE]

Prints `{stage: seconds, "total": seconds}` and writes it to `benchmarks/results/pipeline_stages.json`.
The workdir should be fresh: finished stages are skipped (and then take a second).
"""

if __name__ == "__main__":
  from seqrec_jax.core import host_memory
  host_memory.restart_with_huge_pages()

import json
import pathlib
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages

_WORKDIR = flags.DEFINE_string("workdir", None, "A fresh workdir.", required=True)
_CONFIG = config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parents[1] / "experiments" / "configs" / "ml100k.py"),
    "Experiment config file.")
RESULTS = pathlib.Path(__file__).parent / "results" / "pipeline_stages.json"


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  times, start = {}, time.perf_counter()
  for name in stages.PIPELINE:
    t0 = time.perf_counter()
    stages.STAGES[name](_CONFIG.value, _WORKDIR.value)
    times[name] = time.perf_counter() - t0
  times["total"] = time.perf_counter() - start
  RESULTS.parent.mkdir(exist_ok=True)
  RESULTS.write_text(json.dumps(times, indent=1) + "\n")
  print(json.dumps(times))


if __name__ == "__main__":
  app.run(main)
