"""Command-line entry: `python -m experiments.main --experiment=NAME --config=FILE --workdir=DIR`.

Flags only; every stage is a library function taking `(config, workdir)` (see `stages.py`).
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "ml100k.py")

_EXPERIMENT = flags.DEFINE_enum("experiment", "pipeline", list(stages.STAGES), "What to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.", required=True)
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Experiment config file.",
                                          lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-host runs; settings from env).")


def _quiet_library_info(record) -> bool:
  """Keep orbax's per-save INFO chatter out of the progress log (warnings still pass)."""
  return record.levelno >= 30 or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value:
    import jax

    jax.distributed.initialize()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_quiet_library_info)
  stages.STAGES[_EXPERIMENT.value](_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
