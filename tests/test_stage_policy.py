"""The stage-done policy across stages: never serve results computed from other settings or from
an older upstream run (seqrec_jax.core.stage_record)."""

import json
import shutil

import pytest

from experiments import stages
from seqrec_jax.core.stage_record import StageMismatchError
from tests.helpers import tiny_config as tiny

train_recommender, train_sae, interpret, steer = (stages.STAGES[n] for n in stages.PIPELINE)


def _config(**sae):
  c = tiny.get_sae_config(**sae)
  c.train.update(max_steps=4, eval_every_steps=2, num_epochs=50)
  c.steer.strengths = (0.0, 4.0)
  return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A workdir where every stage finished (relu_l1 SAE)."""
  workdir = tmp_path_factory.mktemp("finished")
  stages.pipeline(_config(), workdir)
  return workdir


def _copy(finished, tmp_path):
  target = tmp_path / "copy"
  shutil.copytree(finished, target)
  return target


def _mtimes(workdir):
  return {p.relative_to(workdir): p.stat().st_mtime_ns for p in workdir.rglob("results.json")}


def test_same_settings_skip_every_stage(finished):
  before = _mtimes(finished)
  stages.pipeline(_config(), finished)
  assert _mtimes(finished) == before


def test_topk_after_relu_l1_names_the_variant_not_its_numbers(finished):
  with pytest.raises(StageMismatchError) as error:
    train_sae(_config(variant="topk"), finished)
  message = str(error.value)
  assert "\n" not in message
  assert "sae.variant: 'relu_l1' -> 'topk'" in message
  assert "--config.overwrite=true" in message and "--config.sae.subdir" in message
  # Another subdir is the other way out: it trains a topk SAE there.
  results = train_sae(_config(variant="topk", subdir="sae_topk"), finished)
  assert results["variant"] == "topk"
  assert json.loads((finished / "sae" / "results.json").read_text())["variant"] == "relu_l1"


def test_interpret_with_another_label_position_refuses(finished):
  config = _config()
  config.interpret.label_position = "next_item"
  old = (finished / "interpret" / "results.json").read_text()
  with pytest.raises(StageMismatchError, match=r"interpret\.label_position: 'item' -> 'next_item'"):
    interpret(config, finished)
  assert (finished / "interpret" / "results.json").read_text() == old


def test_redone_sae_makes_interpret_and_steer_refuse_then_redo(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  redo = _config(l1_coeff=0.5)
  redo.overwrite = True
  train_sae(redo, workdir)
  same = _config(l1_coeff=0.5)
  with pytest.raises(StageMismatchError, match="redone"):
    interpret(same, workdir)
  with pytest.raises(StageMismatchError, match="redone"):
    steer(same, workdir)
  redo_rest = _config(l1_coeff=0.5)
  redo_rest.overwrite = True
  interpret(redo_rest, workdir)
  record = lambda rel: json.loads((workdir / rel / "stage.json").read_text())
  assert record("interpret")["upstream"] == {"sae/stage.json": record("sae")["run_id"]}
  steer(redo_rest, workdir)
  assert record("steer")["upstream"] == {"interpret/stage.json": record("interpret")["run_id"]}
  stages.pipeline(same, workdir)  # now every stage is current: all skipped, no error


def test_other_learning_rate_neither_resumes_nor_files_numbers(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  results, config_json = ((workdir / name).read_text() for name in ("results.json", "config.json"))
  checkpoints = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  other = _config()
  other.train.learning_rate = 0.01
  with pytest.raises(StageMismatchError, match=r"train\.learning_rate: 0\.001 -> 0\.01"):
    train_recommender(other, workdir)
  assert (workdir / "results.json").read_text() == results
  assert (workdir / "config.json").read_text() == config_json
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == checkpoints
  # Unfinished (killed) runs are refused the same way: no resume under other settings.
  (workdir / "results.json").unlink()
  with pytest.raises(StageMismatchError, match="train.learning_rate"):
    train_recommender(other, workdir)


def test_redone_recommender_makes_the_sae_refuse(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  redo = _config()
  redo.overwrite = True
  train_recommender(redo, workdir)
  with pytest.raises(StageMismatchError, match="redone"):
    train_sae(_config(), workdir)
  with pytest.raises(StageMismatchError, match="redone"):
    interpret(_config(), workdir)


def test_outputs_without_a_record_are_refused(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  (workdir / "steer" / "stage.json").unlink()
  with pytest.raises(StageMismatchError, match="without a stage record"):
    steer(_config(), workdir)


def test_a_setting_added_later_matches_only_the_behaviour_it_preserves(tmp_path):
  from seqrec_jax.core import stage_record

  stage_dir = tmp_path / "stage"
  run = stage_record.begin("x", stage_dir, tmp_path, {"a": 1}, outputs=("results.json",),
                           overwrite=False)
  stage_record.finish(stage_dir, run, {"v": 1})
  again = stage_record.begin("x", stage_dir, tmp_path, {"a": 1, "model.scale_embeddings": False},
                             outputs=("results.json",), overwrite=False)
  assert again.results == {"v": 1}  # a record from before the field existed ran without it
  with pytest.raises(StageMismatchError, match="model.scale_embeddings: False -> True"):
    stage_record.begin("x", stage_dir, tmp_path, {"a": 1, "model.scale_embeddings": True},
                       outputs=("results.json",), overwrite=False)
  with pytest.raises(StageMismatchError, match="b: '<unset>' -> 2"):
    stage_record.begin("x", stage_dir, tmp_path, {"a": 1, "b": 2}, outputs=("results.json",),
                       overwrite=False)


def _begin(tmp_path, settings):
  from seqrec_jax.core import stage_record

  return stage_record.begin("x", tmp_path / "stage", tmp_path, settings,
                            outputs=("checkpoints", "results.json"), overwrite=False)


def test_a_run_that_failed_before_any_output_is_replaced_without_overwrite(tmp_path):
  first = _begin(tmp_path, {"train.batch_size": 128})  # then failed: no checkpoints, no results
  again = _begin(tmp_path, {"train.batch_size": 8})
  assert again.record["settings"] == {"train.batch_size": 8}
  assert again.record["run_id"] != first.record["run_id"] and not again.record["done"]
  # Once an output exists the unfinished run is protected as before.
  (tmp_path / "stage" / "checkpoints").mkdir()
  with pytest.raises(StageMismatchError, match="train.batch_size: 8 -> 128"):
    _begin(tmp_path, {"train.batch_size": 128})


def test_a_finished_record_without_results_file_still_refuses_other_settings(tmp_path):
  from seqrec_jax.core import stage_record

  run = _begin(tmp_path, {"a": 1})
  stage_record.finish(tmp_path / "stage", run, {"v": 1})
  (tmp_path / "stage" / "results.json").unlink()
  with pytest.raises(StageMismatchError, match="a: 1 -> 2"):
    _begin(tmp_path, {"a": 2})


def test_recommender_failed_on_its_batch_size_reruns_with_a_smaller_one(tmp_path):
  too_big = _config()
  too_big.train.batch_size = 100_000
  with pytest.raises(ValueError, match="batch"):
    train_recommender(too_big, tmp_path)
  results = train_recommender(_config(), tmp_path)  # no --config.overwrite needed
  assert results["test"]["ndcg@10"] >= 0


def test_settings_a_stage_no_longer_reads_are_ignored(tmp_path):
  from seqrec_jax.core import stage_record

  old = {"a": 1, "steer.min_auc": 0.0, "steer.moderate": 8.0, "steer.strong": 32.0}
  stage_record.finish(tmp_path / "stage", _begin(tmp_path, old), {"v": 1})
  assert _begin(tmp_path, {"a": 1}).results == {"v": 1}  # skipped as finished
  with pytest.raises(StageMismatchError, match="a: 1 -> 2") as error:
    _begin(tmp_path, {"a": 2})
  assert "steer.min_auc" not in str(error.value)


def test_steer_records_with_the_removed_fields_are_skipped_as_finished(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  record_path = workdir / "steer" / "stage.json"
  record = json.loads(record_path.read_text())
  assert not {"steer.min_auc", "steer.moderate", "steer.strong"} & set(record["settings"])
  record["settings"].update({"steer.min_auc": 0.0, "steer.moderate": 8.0, "steer.strong": 32.0})
  record_path.write_text(json.dumps(record))
  before = _mtimes(workdir)
  steer(_config(), workdir)
  assert _mtimes(workdir) == before
  changed = _config()
  changed.steer.mode = "scale"
  with pytest.raises(StageMismatchError, match="steer.mode: 'add' -> 'scale'"):
    steer(changed, workdir)


def test_a_damaged_record_is_named_and_replaced_on_overwrite(tmp_path):
  from seqrec_jax.core import stage_record

  stage_record.finish(tmp_path / "stage", _begin(tmp_path, {"a": 1}), {"v": 1})
  (tmp_path / "stage" / "stage.json").write_text('{"stage": "x", "sett')  # cut short
  with pytest.raises(StageMismatchError, match=r"stage\.json:\d+: not valid JSON"):
    _begin(tmp_path, {"a": 1})
  run = stage_record.begin("x", tmp_path / "stage", tmp_path, {"a": 1},
                           outputs=("checkpoints", "results.json"), overwrite=True)
  assert run.results is None and not (tmp_path / "stage" / "results.json").exists()


def test_an_inactive_variant_field_does_not_refuse_a_finished_sae(tmp_path):
  from seqrec_jax.core import stage_record
  from seqrec_jax.stages import sae as sae_stage
  from tests.helpers import tiny_config

  def begin(config):
    return stage_record.begin("train_sae", tmp_path / "sae", tmp_path, sae_stage.settings(config),
                              outputs=("results.json",), overwrite=False)

  topk = tiny_config.get_sae_config(variant="topk")
  stage_record.finish(tmp_path / "sae", begin(topk), {"variant": "topk"})
  jumprelu_changed = tiny_config.get_sae_config(variant="topk")
  jumprelu_changed.sae.l0_coeff = 0.5  # jumprelu's, inactive here
  assert begin(jumprelu_changed).results == {"variant": "topk"}  # skipped as finished
  k_changed = tiny_config.get_sae_config(variant="topk")
  k_changed.sae.topk.k = 8  # the block name of the flat sae.k
  with pytest.raises(StageMismatchError, match="sae.k: 32 -> 8"):
    begin(k_changed)
