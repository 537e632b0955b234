"""Orbax checkpoints of a train state plus JSON-serialisable extras (data iterator, progress).

Restores are strict: the saved tree must have exactly the structure, shapes and dtypes of the
target, or a `CheckpointMismatchError` names the first entry that differs. Every saved step also
holds `sha256sums.json`, the SHA-256 of each of its files, written after orbax has finished: a
restore first checks them, so flipped bytes are a `CorruptCheckpointError` rather than wrong
weights (orbax verifies no checksums of its own; steps saved before this file existed are
restored unchecked).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from seqrec_jax.core import distributed
from seqrec_jax.core.files import write_json

CHECKSUMS = "sha256sums.json"


class CheckpointMismatchError(ValueError):
  pass


class CorruptCheckpointError(ValueError):
  """A checkpoint file's bytes differ from those written at save."""


def _file_digests(step_dir: pathlib.Path) -> dict[str, str]:
  """`{path relative to step_dir: sha256 hex}` of every file under a step (the sums excluded)."""
  out = {}
  for path in sorted(step_dir.rglob("*")):
    if path.is_file() and path.name != CHECKSUMS:
      with open(path, "rb") as f:
        out[str(path.relative_to(step_dir))] = hashlib.file_digest(f, "sha256").hexdigest()
  return out


def write_checksums(step_dir: pathlib.Path) -> None:
  write_json(step_dir / CHECKSUMS, _file_digests(step_dir))


def verify_checksums(step_dir: pathlib.Path) -> None:
  """Raises `CorruptCheckpointError` naming the first file whose bytes changed since save."""
  sums_file = step_dir / CHECKSUMS
  if not sums_file.is_file():
    return  # saved before checksums were written
  try:
    saved = json.loads(sums_file.read_text())
  except json.JSONDecodeError:
    raise CorruptCheckpointError(f"{sums_file} is damaged; the checkpoint cannot be trusted") from None
  now = _file_digests(step_dir)
  for name in sorted(set(saved) | set(now)):
    if saved.get(name) != now.get(name):
      what = ("is missing" if name not in now else "was not written at save" if name not in saved
              else "does not match the checksum written at save")
      raise CorruptCheckpointError(f"checkpoint {step_dir}: {name} {what}")


def _entry_name(path) -> str:
  """`a.0.b` for a key path, whatever mix of dict keys, attributes and indices it holds."""
  parts = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]
  return ".".join(str(p) for p in parts)


def _describe(tree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {
      _entry_name(path): (tuple(np.shape(leaf)), str(np.dtype(getattr(leaf, "dtype", type(leaf)))))
      for path, leaf in flat
  }


def check_same_layout(saved, target, where: str) -> None:
  saved_d, target_d = _describe(saved), _describe(target)
  for key in sorted(set(saved_d) | set(target_d)):
    if saved_d.get(key) != target_d.get(key):
      raise CheckpointMismatchError(
          f"{where}: entry {key} is {saved_d.get(key, 'missing')} in the checkpoint but "
          f"{target_d.get(key, 'missing')} in the model being restored"
      )


class Checkpointer:
  """Keeps the newest `max_to_keep` checkpoints of one run under `directory`, and with
  `best_metric` also the one whose saved `metrics[best_metric]` is highest (orbax's `BestN`)."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 2,
               best_metric: str | None = None):
    self.directory = pathlib.Path(directory).absolute()
    policies = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
    if best_metric is not None:
      policies.append(ocp.checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric], n=1))
    self.best_metric = best_metric
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            create=True,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=(lambda m: m[best_metric]) if best_metric else None),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()},
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The step of the best checkpoint (`best_metric`), else the latest."""
    return self.manager.best_step()

  def save(self, step: int, state, extra: dict, metrics: dict | None = None) -> None:
    if step in self.manager.all_steps():  # a resumed run redoing a step replaces it
      self.manager.delete(step)
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)),
        metrics=metrics, force=True,
    )
    self.manager.wait_until_finished()
    if distributed.is_main_process():
      write_checksums(self.directory / str(step))

  def restore(self, target_state, step: int | None = None):
    """Restore `(state, extra)` at `step` (default latest) into the layout of `target_state`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {self.directory}")
    verify_checksums(self.directory / str(step))
    metadata = self.manager.item_metadata(step)["state"]
    saved_tree = getattr(metadata, "tree", metadata)
    check_same_layout(_metadata_as_arrays(saved_tree), target_state, f"checkpoint {self.directory}/{step}")
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target_state)
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()),
    )
    return restored["state"], restored["extra"]

  def restore_newest_valid(self, target_state):
    """`(state, extra, step)` from the newest checkpoint that restores; a truncated or corrupt
    one is reported and skipped. A layout mismatch is an error, never skipped."""
    steps = sorted(self.all_steps(), reverse=True)
    for step in steps:
      try:
        state, extra = self.restore(target_state, step)
        return state, extra, step
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means this one is unusable
        aside = self.directory.with_name(self.directory.name + ".unreadable") / str(step)
        logging.warning("checkpoint %s/%d is unreadable (%s: %s); moved to %s, trying the "
                        "previous one", self.directory, step, type(e).__name__, e, aside)
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        shutil.move(self.directory / str(step), aside)
        self.manager.reload()
    raise FileNotFoundError(f"no readable checkpoint under {self.directory} (tried {steps})")

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _metadata_as_arrays(tree):
  """Orbax array metadata -> ShapeDtypeStructs, comparable with a target tree."""
  return jax.tree_util.tree_map(
      lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree,
      is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
  )
