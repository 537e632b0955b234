"""The one atomic writer: all or nothing, with the usual file mode."""

import os

import pytest

from seqrec_jax.core import files


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def test_written_file_has_the_usual_mode_and_content(tmp_path):
  path = tmp_path / "sub" / "results.json"
  files.write_json(path, {"a": 1})
  assert files.read_json(path) == {"a": 1}
  assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / "results.json"
  files.write_json(path, {"old": True})

  def half_then_fail(f):
    f.write(b'{"new": ')
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    files.write_atomic(path, half_then_fail)
  assert files.read_json(path) == {"old": True}
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_failure_on_a_new_path_leaves_nothing(tmp_path):
  def fail(f):
    f.write(b"partial")
    raise KeyboardInterrupt  # also on interrupts, not only on errors

  with pytest.raises(KeyboardInterrupt):
    files.write_atomic(tmp_path / "statistics.npz", fail)
  assert list(tmp_path.iterdir()) == []
