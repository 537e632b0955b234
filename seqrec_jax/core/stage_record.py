"""One stage-done policy for every stage: a record of what a stage's results were computed from.

Each stage directory holds `stage.json`:

    {"stage": "train_sae", "settings": {"seed": 0, "sae.variant": "relu_l1", ...},
     "upstream": {"stage.json": "<run id of the recommender run it used>"},
     "run_id": "<fresh for each run started from scratch>", "done": true}

`settings` are the config fields the stage depends on (flattened, dotted names); `upstream` maps
the record of each stage it reads (a path relative to the workdir) to that stage's `run_id`.
`begin` applies the policy before a stage runs:

* same settings and upstream, done: the stage is skipped (its saved results are returned);
* same settings and upstream, not done: the stage resumes (checkpoints of this very run);
* not done and none of its outputs written (a run that failed before producing anything, e.g.
  on a bad setting): the record is replaced, whatever its settings, as if there were none;
* anything else (other settings, an upstream redone since, outputs with no record): a
  `StageMismatchError` naming what differs and the two ways out, never the old numbers; with
  `overwrite` the stage's outputs are removed and it starts afresh under a new `run_id`, which in
  turn makes every downstream stage refuse until it is redone.

Settings are compared on the stage's current fields only: a field the saved record holds but the
stage no longer reads (removed from the config, or inactive) is ignored, and a field the saved
record lacks matches only its `ADDED_SETTINGS` value.

A record is current only if its upstream records are current too (checked down the chain), so a
stage never serves results computed from an older upstream. Only process 0 writes; the others
wait for it and read the same record.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import uuid
from collections.abc import Iterable, Mapping

import jax
from absl import logging

from seqrec_jax.core import distributed
from seqrec_jax.core.errors import DataError
from seqrec_jax.core.files import read_json, write_json

RECORD = "stage.json"


# Settings added after records were first written, each with the value that reproduces what ran
# before it existed: a record without the key matches that value (and only that value).
ADDED_SETTINGS = {"model.scale_embeddings": False, "train.item_optimizer": "dense",
                  "interpret.attribute_families": "", "interpret.popularity_share": 0.2}


class StageMismatchError(ValueError):
  """A stage's directory holds results computed from other settings or another upstream run."""


@dataclasses.dataclass
class StageRun:
  """What `begin` decided: `results` is set when the stage is already done (skip it)."""

  record: dict
  results: dict | None = None


def flatten(tree: Mapping, prefix: str = "") -> dict:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}` (values normalised through JSON: tuples become lists)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = json.loads(json.dumps(value))
  return out


def settings_of(config, fields: Iterable[str], exclude: Iterable[str] = ()) -> dict:
  """The flattened config fields a stage depends on: `fields` are top-level names or dotted
  prefixes (`"sae"`, `"seed"`); `exclude` drops fields that do not change results."""
  flat = flatten(config.to_dict())
  keep = lambda k: any(k == f or k.startswith(f + ".") for f in fields)
  drop = lambda k: any(k == f or k.startswith(f + ".") for f in exclude)
  return {k: v for k, v in sorted(flat.items()) if keep(k) and not drop(k)}


def read(path: pathlib.Path) -> dict | None:
  """The record at `path` (None if there is none); a damaged one is a one-line error."""
  if not path.is_file():
    return None
  try:
    return read_json(path)
  except DataError as e:
    raise StageMismatchError(str(e)) from None


def current_upstream(workdir: pathlib.Path, upstream: Iterable[str], needed_by: str) -> dict:
  """`{record path: run_id}` of finished upstream stages; raises if one is missing or stale."""
  out = {}
  for rel in upstream:
    record = read(workdir / rel)
    if record is None or not record.get("done"):
      raise FileNotFoundError(f"{workdir / rel} does not record a finished stage: run the stage "
                              f"that writes it before {needed_by}")
    check_chain(workdir, record, workdir / rel)
    out[rel] = record["run_id"]
  return out


def check_chain(workdir: pathlib.Path, record: dict, where: pathlib.Path) -> None:
  """Raises unless every upstream run `record` was computed from is still the current one."""
  for rel, run_id in record.get("upstream", {}).items():
    up = read(workdir / rel)
    if up is None or up.get("run_id") != run_id or not up.get("done"):
      raise StageMismatchError(
          f"{where.parent} ({record['stage']}) was computed from an earlier run of "
          f"{workdir / rel} that has since been redone; --config.overwrite=true redoes it")
    check_chain(workdir, up, workdir / rel)


def _differences(saved: dict, record: dict) -> dict[str, str]:
  """`{setting or "upstream PATH": description}` of what differs between two records.

  Only the current settings are compared: a key that the saved record holds but `record` lacks
  is one the stage no longer depends on (a removed or inactive field), so it is ignored; a key
  that the saved record lacks matches only its `ADDED_SETTINGS` value.
  """
  out = {}
  before, now = saved.get("settings", {}), record["settings"]
  for key in sorted(now):
    old = before.get(key, ADDED_SETTINGS.get(key, "<unset>"))
    if old != now[key]:
      out[key] = f"{key}: {old!r} -> {now[key]!r}"
  for rel in sorted(set(saved.get("upstream", {})) | set(record["upstream"])):
    if saved.get("upstream", {}).get(rel) != record["upstream"].get(rel):
      out[f"upstream {rel}"] = f"upstream {rel} was redone"
  return out


def begin(stage: str, stage_dir: pathlib.Path, workdir: pathlib.Path, settings: dict, *,
          upstream: Iterable[str] = (), outputs: Iterable[str], overwrite: bool,
          results_file: str = "results.json", other_ways: str = "another --workdir",
          extendable: Iterable[str] = ()) -> StageRun:
  """Applies the stage-done policy (module docstring) before `stage` runs in `stage_dir`.

  Args:
    stage: the stage's name (for messages).
    stage_dir: where its record and outputs live.
    workdir: the workdir (upstream record paths are relative to it).
    settings: the stage's flattened settings (`settings_of`).
    upstream: record paths (relative to `workdir`) of the stages it reads.
    outputs: names inside `stage_dir` that overwrite removes (files or folders).
    overwrite: `config.overwrite`.
    results_file: the stage's results inside `stage_dir`, returned when it is done.
    other_ways: the other way out named in the error besides overwrite.
    extendable: settings that only lengthen a run (e.g. `train.max_steps`): a run differing in
      nothing else resumes from its checkpoints under a new `run_id` (downstream stages redo).
  """
  record = {"stage": stage, "settings": settings,
            "upstream": current_upstream(workdir, upstream, stage)}
  try:
    saved = read(stage_dir / RECORD)
  except StageMismatchError:  # a damaged record: overwrite replaces it with the outputs
    if not overwrite:
      raise
    saved = None
  leftovers = [name for name in outputs if (stage_dir / name).exists()]
  if saved is not None and not saved.get("done") and not leftovers:
    saved = None  # a run that stopped before writing any output: nothing to protect or resume
  if not overwrite:
    if saved is None and leftovers:
      raise StageMismatchError(
          f"{stage_dir} holds {stage} outputs ({', '.join(leftovers)}) without a stage record, so "
          f"what they were computed from is unknown; rerun with --config.overwrite=true to "
          f"replace them, or use {other_ways}")
    if saved is not None:
      differ = _differences(saved, record)
      blocking = [text for key, text in differ.items() if key not in extendable]
      if blocking:
        raise StageMismatchError(
            f"{stage_dir} holds a {stage} run with other settings ({'; '.join(blocking)}); rerun "
            f"with --config.overwrite=true to replace it, or use {other_ways}")
      if not differ:
        if saved.get("done") and (stage_dir / results_file).is_file():
          logging.info("%s: %s already holds these results; --config.overwrite=true redoes them",
                       stage, stage_dir)
          return StageRun(saved, read_json(stage_dir / results_file))
        return StageRun(saved)  # same settings, unfinished: resume
      leftovers = [n for n in leftovers if n == results_file]  # lengthened: resume, new run id
  if distributed.is_main_process():
    for name in leftovers:
      path = stage_dir / name
      shutil.rmtree(path) if path.is_dir() else path.unlink()
    record.update(run_id=uuid.uuid4().hex, done=False)
    write_json(stage_dir / RECORD, record)
  _wait_for_main(f"begin {stage_dir}")
  return StageRun(read_json(stage_dir / RECORD))


def finish(stage_dir: pathlib.Path, run: StageRun, results: dict,
           results_file: str = "results.json") -> dict:
  """Writes the results, then marks the record done (process 0 only); returns the results."""
  if distributed.is_main_process():
    write_json(stage_dir / results_file, results)
    write_json(stage_dir / RECORD, {**run.record, "done": True})
  _wait_for_main(f"finish {stage_dir}")
  return results


def _wait_for_main(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)
