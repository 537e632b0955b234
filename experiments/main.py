"""Command-line entry: `python -m experiments.main --experiment=NAME --config=FILE --workdir=DIR`.

Flags only; every stage is a library function taking `(config, workdir)` (see `stages.py`).
Any failure ends with one line `error: WHAT (FILE): WHAT TO DO` on stderr and a nonzero exit code
(2: the command line, 130: interrupted, 1: anything else); `SEQREC_TRACEBACK=1` or `--verbosity=1`
shows the traceback instead.
"""

import os
import re
import sys

if __name__ == "__main__":  # before JAX starts: glibc reads its tunables at process start only
  from seqrec_jax.core import host_memory
  host_memory.restart_with_huge_pages()

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import stages
from seqrec_jax.core import errors
from seqrec_jax.core.checkpoints import CheckpointMismatchError
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


# Errors whose message already says what is wrong, where, and the way out.
_SELF_EXPLAINED = (StageMismatchError, CheckpointMismatchError, FloatingPointError)


def _show_traceback(argv=()) -> bool:
  """SEQREC_TRACEBACK=1 or --verbosity >= 1 (read from `argv` too while flags are parsed)."""
  if os.environ.get("SEQREC_TRACEBACK", "") not in ("", "0"):
    return True
  if (flags.FLAGS["verbosity"].value or 0) >= 1:
    return True
  given = re.findall(r"^--?(?:verbosity|v)=(-?\d+)$", "\n".join(argv), re.MULTILINE)
  return bool(given) and int(given[-1]) >= 1


def _fail(line: str, code: int):
  """Prints `line` last and exits at once: after a failure, background threads (orbax saves,
  writers) and exit handlers would only add tracebacks of their own after it. Everything the
  package writes is atomic (temp file + rename) and orbax ignores unfinished checkpoints, so
  this loses nothing that a kill would not."""
  sys.stdout.flush()
  print(line, file=sys.stderr, flush=True)
  os._exit(code)  # pylint: disable=protected-access


def _config_file(argv) -> str:
  """The `--config` file named on the command line (the last one wins, as in absl)."""
  path = os.path.relpath(_DEFAULT_CONFIG)
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
  return path.split(":", 1)[0]  # FILE:ARGUMENT passes an argument to get_config


def _parse_flags(argv):
  """absl's flag parsing, with its failures as one line (exit code 2)."""
  try:
    args = flags.FLAGS(argv)
    _CONFIG.value.to_dict  # pylint: disable=pointless-statement  (raises a deferred load error)
    return args
  except Exception as e:  # pylint: disable=broad-except
    if _show_traceback(argv):
      raise
    one_line = lambda text: " ".join(str(text).split())
    if isinstance(e, flags.Error):
      _fail(f"error: {one_line(e)} (command line): see --helpshort for the flags", 2)
    # A --config.FIELD override that names no field of the config: ml_collections raises
    # KeyError/AttributeError while parsing it, with a "did you mean" where it finds one.
    field = next((tb.tb_frame.f_locals["field_path"] for tb in errors.frames(e)
                  if "field_path" in tb.tb_frame.f_locals), None)
    if field is not None:
      texts = [c.args[0] for c in errors.chain(e) if c.args and isinstance(c.args[0], str)]
      guess = next((t[t.index("Did you mean"):] for t in texts if "Did you mean" in t), "")
      _fail(f"error: --config.{field} is not a config field ({_config_file(argv)}): "
            f"{one_line(guess) or 'check its spelling'}", 2)
    what = one_line(e).split("earlier failure to load: ")[-1]
    _fail(f"error: cannot load the config, {type(e).__name__}: {what} ({_config_file(argv)}): "
          f"check the --config path and the file", 2)


def _without_traceback(record) -> bool:
  """Libraries log their own errors with tracebacks (orbax: one per failed save thread); the run
  ends with the cause in one line instead."""
  record.exc_info = record.exc_text = record.stack_info = None
  return True


def main(argv):
  show_traceback = _show_traceback()  # before set_verbosity below resets the flag
  if not show_traceback:
    logging.get_absl_handler().addFilter(_without_traceback)
  try:
    _run(argv)
  except (KeyboardInterrupt, Exception) as e:  # pylint: disable=broad-except
    if show_traceback:
      raise
    if isinstance(e, app.UsageError):
      _fail(f"error: {e} (command line): see --helpshort for the flags", 2)
    if isinstance(e, _SELF_EXPLAINED) or (isinstance(e, FileNotFoundError) and e.errno is None):
      _fail(f"error: {' '.join(str(e).split())}", 1)
    _fail(errors.describe(e), 130 if isinstance(e, KeyboardInterrupt) else 1)


def _run(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value:
    from seqrec_jax.core import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # Process 0 logs progress; the others only warnings and errors (every process does the work).
  logging.set_verbosity(logging.INFO if jax.process_index() == 0 else logging.WARNING)
  logging.get_absl_handler().addFilter(_quiet_library_info)
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


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
