"""The workdir module: old workdirs load and skip, every reader goes through the checked chain,
damaged files are refused with one line, recorded steering settings are used.

Runs on `tests/fixtures/old_workdir/`, a tiny pipeline written by the code before this module
(no training here: every test copies it).
"""

import json
import pathlib
import shutil

import numpy as np
import pytest

from experiments import stages
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.core import checkpoints
from seqrec_jax.core.stage_record import StageMismatchError
from seqrec_jax.serve.explorer import Explorer
from tests.fixtures import old_workdir_config

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "old_workdir"


@pytest.fixture
def old(tmp_path):
  workdir_lib.clear_cache()
  copy = tmp_path / "old"
  shutil.copytree(FIXTURE, copy)
  yield copy
  workdir_lib.clear_cache()


def _results(workdir):
  return {p.relative_to(workdir): p.read_text() for p in sorted(workdir.rglob("results.json"))}


def test_old_workdir_skips_every_stage_unchanged(old):
  before = _results(old)
  stamps = {p: p.stat().st_mtime_ns for p in old.rglob("*") if p.is_file()}
  workdir_lib.counts.clear()
  stages.pipeline(old_workdir_config.get_config(), old)
  assert _results(old) == before
  assert {p: p.stat().st_mtime_ns for p in old.rglob("*") if p.is_file()} == stamps
  assert not workdir_lib.counts  # skipped: nothing restored, nothing captured


def test_old_workdir_loads_through_the_artefacts(old):
  config = old_workdir_config.get_config()
  layout = workdir_lib.Layout.of(old, config)
  rec = workdir_lib.load_recommender(layout)
  sae = workdir_lib.load_sae(layout)
  interpretation = workdir_lib.load_interpretation(layout)
  steering = workdir_lib.load_steering(layout)
  assert sae.trained.config.dict_size == config.sae.dict_size
  assert sae.layer == "blocks_0"
  stats = interpretation.statistics
  assert stats.tables["latent"]["auc"].shape == (config.sae.dict_size, len(stats.attribute_names))
  assert stats.tables["selection_neuron"]["dimension"].shape == (2 * config.model.hidden_dim,)
  assert stats.typical_activation.shape == (config.sae.dict_size,)
  assert set(steering.controls) <= set(stats.attribute_names) and steering.controls
  # Loads are cached by run id: a second load restores nothing.
  workdir_lib.counts.clear()
  assert workdir_lib.load_recommender(layout) is rec
  assert not workdir_lib.counts
  steerer = workdir_lib.load_steerer(config, old)
  top = steerer.top_items(steerer.user_history(str(rec.dataset.interactions.user_ids[0])))
  assert len(top) == 10 and 0 not in top


def test_statistics_round_trip_names_every_array(old, tmp_path):
  layout = workdir_lib.Layout(old)
  stats = workdir_lib.load_interpretation(layout).statistics
  with np.load(layout.statistics) as f:
    on_disk = {k: f[k] for k in f.files}
  arrays = stats.arrays()
  assert set(arrays) == set(on_disk)
  for key, value in on_disk.items():
    np.testing.assert_array_equal(arrays[key], value)


def _redo(workdir: pathlib.Path, record: str = "stage.json"):
  """What `--config.overwrite=true` leaves behind for a stage: a new run id in its record."""
  path = workdir / record
  saved = json.loads(path.read_text())
  path.write_text(json.dumps({**saved, "run_id": "redone"}))


@pytest.mark.parametrize("load", [
    lambda config, w: workdir_lib.load_sae(workdir_lib.Layout.of(w, config)),
    lambda config, w: workdir_lib.load_interpretation(workdir_lib.Layout.of(w, config)),
    lambda config, w: workdir_lib.load_steerer(config, w),
    lambda config, w: Explorer.load(config, w),
    lambda config, w: workdir_lib.finished_results(workdir_lib.Layout.of(w, config)),
], ids=["sae", "interpretation", "steerer", "explorer", "tables"])
def test_a_redone_recommender_makes_every_reader_refuse(old, load):
  config = old_workdir_config.get_config()
  _redo(old)
  with pytest.raises(StageMismatchError, match=r"sae \(train_sae\) was computed from an earlier "
                                               r"run of .*stage.json that has since been redone"):
    load(config, old)


def test_a_truncated_record_is_named_in_one_line(old):
  path = old / "sae" / "stage.json"
  path.write_text(path.read_text()[:40])
  with pytest.raises(StageMismatchError, match=r"sae/stage.json:\d+: not valid JSON") as e:
    workdir_lib.load_sae(workdir_lib.Layout(old))
  assert "\n" not in str(e.value)


def test_an_unfinished_stage_names_the_stage_to_run(old):
  shutil.rmtree(old / "steer")
  (old / "interpret" / "results.json").unlink()
  with pytest.raises(FileNotFoundError, match="unfinished interpret stage"):
    workdir_lib.load_interpretation(workdir_lib.Layout(old))


def _largest_data_file(step_dir: pathlib.Path) -> pathlib.Path:
  files = [p for p in step_dir.rglob("*") if p.is_file() and p.suffix != ".json"
           and "METADATA" not in p.name]
  return max(files, key=lambda p: p.stat().st_size)


def _flip(path: pathlib.Path, count: int = 64):
  data = bytearray(path.read_bytes())
  start = len(data) // 3
  for i in range(start, min(start + count, len(data))):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["recommender", "sae_model", "sae_training"])
def test_a_flipped_byte_in_any_checkpoint_is_detected(old, kind):
  directory = {"recommender": old / "checkpoints", "sae_model": old / "sae" / "model",
               "sae_training": old / "sae" / "checkpoints"}[kind]
  steps = sorted((p for p in directory.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
  for step_dir in steps:  # as the new code saves them
    checkpoints.write_checksums(step_dir)
  if kind == "recommender":  # the reader restores the best checkpoint
    ckpt = checkpoints.Checkpointer(directory, best_metric="ndcg@10")
    flipped = directory / str(ckpt.best_step())
    ckpt.close()
  else:
    flipped = steps[-1]
  _flip(_largest_data_file(flipped))
  with pytest.raises(checkpoints.CorruptCheckpointError, match="does not match the checksum"):
    checkpoints.verify_checksums(flipped)
  if kind == "sae_model":
    with pytest.raises(checkpoints.CorruptCheckpointError):
      workdir_lib.load_sae(workdir_lib.Layout(old))
  elif kind == "recommender":
    with pytest.raises(checkpoints.CorruptCheckpointError):
      workdir_lib.load_recommender(workdir_lib.Layout(old))
  else:  # a corrupt training checkpoint is moved aside and the previous one resumed
    import jax

    ckpt = checkpoints.Checkpointer(directory, max_to_keep=2)
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
        ckpt.manager.item_metadata(int(steps[0].name))["state"],
        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
    _, _, step = ckpt.restore_newest_valid(getattr(target, "tree", target))
    ckpt.close()
    assert step == int(steps[-2].name)
    assert (directory.with_name("checkpoints.unreadable") / steps[-1].name).is_dir()


def test_recorded_steering_settings_are_used_and_others_refused(old):
  config = old_workdir_config.get_config()
  recorded = json.loads((old / "steer" / "results.json").read_text())
  steerer = workdir_lib.load_steerer(config, old)
  assert (steerer.mode, steerer.positions) == (recorded["mode"], recorded["positions"])
  config.steer.positions = "all" if recorded["positions"] == "last" else "last"
  with pytest.raises(StageMismatchError, match=r"steer.positions: '\w+' \(config\) vs "
                                               rf"'{recorded['positions']}' \(recorded\)"):
    workdir_lib.load_steerer(config, old)


def test_the_explorer_answers_409_once_a_stage_is_redone(old):
  from seqrec_jax.serve.explorer import ApiError

  explorer = Explorer.load(old_workdir_config.get_config(), old)
  explorer.check_current()  # unchanged: answers
  _redo(old, "sae/stage.json")
  with pytest.raises(ApiError, match="sae \\(train_sae\\) changed since it was loaded") as e:
    explorer.check_current()
  assert e.value.status == 409


def test_each_slider_says_what_its_knob_did_on_the_test_users(old):
  explorer = Explorer.load(old_workdir_config.get_config(), old)
  steered = json.loads((old / "steer" / "results.json").read_text())
  floor = steered["table"]["min_ndcg_ratio"] * steered["baseline"]["ndcg@10"]
  for control in explorer.info({})["controls"]:
    name, measured = control["attribute"], control["measured"]
    curves = steered["methods"]["sae_effect"]["attributes"][name]
    ok = [(sh, st) for st, sh, nd in zip(curves["strengths"], curves["share@10"], curves["ndcg@10"])
          if st > 0 and nd >= floor]
    assert measured["baseline_share"] == steered["baseline"]["share@10"][name]
    if ok:
      assert (measured["share"], measured["strength"]) == max(ok)
    else:
      assert measured["strength"] is None
    assert control["shares_control_with"] == []  # the old steer stage recorded no sharing
