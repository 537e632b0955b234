"""Command-line failures end with one line `error: WHAT (FILE): WHAT TO DO`, a nonzero exit code
and no traceback (experiments.main); SEQREC_TRACEBACK=1 brings the traceback back.

The subprocess cases fail before or right after the data loads, so each costs about one Python
and JAX start; the message formats themselves are checked in-process on built errors."""

import errno
import os
import pathlib
import pickle
import signal
import subprocess
import sys

import pytest

from seqrec_jax.core import errors, files

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_TINY = "tests/helpers/tiny_config.py"


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k != "SEQREC_TRACEBACK"}
  return {**env, "SEQREC_HUGE_PAGES": "0", "JAX_PLATFORMS": "cpu", **extra}


def _cli(*args, prelude="", **env):
  """Runs the command line (after `prelude`, Python run in the same process) -> (rc, stderr)."""
  argv = ["experiments.main", "--experiment=train_recommender", f"--config={_TINY}", *args]
  code = (f"import runpy, sys\n{prelude}\nsys.argv = {argv!r}\n"
          "runpy.run_module('experiments.main', run_name='__main__', alter_sys=True)")
  done = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, env=_env(**env),
                        capture_output=True, text=True, timeout=300)
  return done.returncode, done.stderr


def _last_line(stderr):
  assert "Traceback" not in stderr, stderr
  return stderr.strip().splitlines()[-1]


def test_unknown_config_field_names_it_and_the_likely_one(tmp_path):
  rc, stderr = _cli(f"--workdir={tmp_path}", "--config.train.batch_sze=8")
  assert rc == 2
  assert _last_line(stderr) == (f"error: --config.train.batch_sze is not a config field ({_TINY}): "
                                'Did you mean "batch_size" instead of "batch_sze"?')


def test_workdir_that_is_a_file_and_the_traceback_switch(tmp_path):
  workdir = tmp_path / "a_file"
  workdir.write_text("")
  rc, stderr = _cli(f"--workdir={workdir}")
  assert rc == 1
  assert _last_line(stderr) == (f"error: File exists ({workdir}): a file is in the way of a folder: "
                                "give --workdir a folder (or remove the file)")
  rc, stderr = _cli(f"--workdir={workdir}", SEQREC_TRACEBACK="1")
  assert rc == 1 and "Traceback" in stderr and "FileExistsError" in stderr


def test_truncated_stage_record_is_named(tmp_path):
  (tmp_path / "stage.json").write_text('{"stage": "train_recommender", "settings": {"seed"')
  rc, stderr = _cli(f"--workdir={tmp_path}")
  line = _last_line(stderr)
  assert rc == 1 and line.startswith("error: ") and str(tmp_path / "stage.json") in line
  assert "--config.overwrite=true" in line


def test_full_disk_is_one_line_naming_the_file(tmp_path):
  # Every file the package writes is fsynced before its rename: a full disk fails there.
  prelude = ("import errno, os\n"
             "def full(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
             "os.fsync = full")
  rc, stderr = _cli(f"--workdir={tmp_path}", prelude=prelude)
  assert rc == 1
  line = _last_line(stderr)
  assert line.startswith(f"error: No space left on device ({tmp_path}{os.sep}"), line
  assert "free space" in line


def test_batch_larger_than_the_data_is_one_line(tmp_path):
  rc, stderr = _cli(f"--workdir={tmp_path}", "--config.train.batch_size=100000")
  assert rc == 1
  line = _last_line(stderr)
  assert line.startswith("error: ") and "batch size 100000 exceeds" in line


def test_interrupt_is_one_line_and_exit_code_130(tmp_path):
  argv = [sys.executable, "-m", "experiments.main", "--experiment=train_recommender",
          f"--config={_TINY}", f"--workdir={tmp_path}", "--config.train.num_epochs=100000"]
  process = subprocess.Popen(argv, cwd=_ROOT, env=_env(), stderr=subprocess.PIPE, text=True)
  lines = []
  try:
    for line in process.stderr:  # interrupt once the data has loaded
      lines.append(line)
      if "data synthetic" in line:
        process.send_signal(signal.SIGINT)
        break
    lines += process.stderr.readlines()
    rc = process.wait(timeout=120)
  finally:
    process.kill()
  assert rc == 130
  assert _last_line("".join(lines)).startswith("error: interrupted: rerun the same command")


# ----------------------------------------------------------------------------- in-process


def _raised(function, *args):
  try:
    function(*args)
  except BaseException as e:  # pylint: disable=broad-except
    return e
  raise AssertionError("nothing raised")


def test_truncated_json_names_its_file(tmp_path):
  path = tmp_path / "results.json"
  path.write_text('{"test": {"ndcg@10": 0.2')
  line = errors.describe(_raised(files.read_json, path))
  assert line.startswith(f"error: {path}:1: not valid JSON (")
  assert line.endswith("--config.overwrite=true to redo the stage that writes it")


@pytest.mark.parametrize("code, advice", [
    (errno.ENOSPC, "free space on that disk"), (errno.EACCES, "make it writable"),
    (errno.EROFS, "read-only"), (errno.ENOTDIR, "give --workdir a folder")])
def test_file_system_errors_name_the_file_and_the_way_out(code, advice):
  def write():
    try:
      raise OSError(code, os.strerror(code), "/runs/x/stage.json")
    except OSError as e:
      raise RuntimeError("save failed") from e  # found anywhere in the chain

  line = errors.describe(_raised(write))
  assert line.startswith(f"error: {os.strerror(code)} (/runs/x/stage.json): ") and advice in line


def test_full_disk_inside_orbax_names_the_file():
  error = ValueError('RESOURCE_EXHAUSTED: Failed writing: "/runs/x/checkpoints/4.tmp/d/ab": '
                     "Failed to write 701 bytes to file 9: No space left on device")
  assert errors.describe(error).startswith("error: No space left on device (/runs/x/checkpoints/")


def test_other_errors_say_what_and_where_on_one_line():
  def fail():
    raise ValueError("two\nlines")

  line = errors.describe(_raised(fail))
  assert "\n" not in line and line.startswith("error: ValueError: two lines (tests/")
  assert "SEQREC_TRACEBACK=1" in line


def test_config_error_prints_the_field():
  error = errors.ConfigError("batch size 128 exceeds the 97 training windows",
                             field="train.batch_size", hint="lower it")
  assert errors.describe(error) == ("error: batch size 128 exceeds the 97 training windows "
                                    "(--config.train.batch_size): lower it")
  again = pickle.loads(pickle.dumps(error))  # crosses process boundaries whole
  assert (again.field, again.hint, str(again)) == (error.field, error.hint, str(error))
