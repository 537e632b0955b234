"""Command-line entry: `python -m experiments.main --experiment=NAME --config=FILE --workdir=DIR`.

Flags only; every stage is a library function taking `(config, workdir)` (see `stages.py`).
"""

import os
import sys

if __name__ == "__main__":  # before JAX starts: glibc reads its tunables at process start only
  from seqrec_jax.core import host_memory
  host_memory.restart_with_huge_pages()

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages
from seqrec_jax.core.checkpoints import CheckpointMismatchError
from seqrec_jax.core.errors import DataError
from seqrec_jax.core.stage_record import StageMismatchError
from seqrec_jax import workdir
from seqrec_jax.steer import recommend

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "ml100k.py")

_EXPERIMENT = flags.DEFINE_enum("experiment", "pipeline", [*stages.STAGES, "recommend", "serve"],
                                "What to run.")
_USER = flags.DEFINE_string("user", None, "recommend: the user's original id.")
_EDIT = flags.DEFINE_multi_string("edit", [], "recommend: NAME:STRENGTH, e.g. Comedy:+3 or #17:-2 "
                                  "(an attribute through its best latent, or a latent id).")
_PORT = flags.DEFINE_integer("port", 8000, "serve: the port to listen on (0: any free port).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: the address to bind (0.0.0.0: every "
                            "interface, reachable from other machines).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.", required=True)
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Experiment config file.",
                                          lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process job (seqrec_jax.core.distributed.initialize); the "
    "settings below fall back to JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, then "
    "to JAX's cluster auto-detection. Run with --config.parallel=mesh.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "With --distributed: host:port of process 0's coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this process's index.")


def _quiet_library_info(record) -> bool:
  """Keep orbax's per-save INFO chatter out of the progress log (warnings still pass)."""
  return record.levelno >= 30 or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value:
    from seqrec_jax.core import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # Process 0 logs progress; the others only warnings and errors (every process does the work).
  logging.set_verbosity(logging.INFO if jax.process_index() == 0 else logging.WARNING)
  logging.get_absl_handler().addFilter(_quiet_library_info)
  try:
    if _EXPERIMENT.value == "recommend":
      if _USER.value is None:
        raise app.UsageError("--experiment=recommend needs --user=ID")
      steerer = workdir.load_steerer(_CONFIG.value, _WORKDIR.value)
      print(recommend.recommend(steerer, _USER.value, _EDIT.value))
    elif _EXPERIMENT.value == "serve":
      from seqrec_jax.serve import server

      server.serve(_CONFIG.value, _WORKDIR.value, host=_HOST.value, port=_PORT.value)
    else:
      stages.STAGES[_EXPERIMENT.value](_CONFIG.value, _WORKDIR.value)
  except (DataError, FileNotFoundError, CheckpointMismatchError, StageMismatchError,
          FloatingPointError) as e:
    # A user error: one line saying what is wrong, no traceback, non-zero exit.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
