"""End to end: `train_recommender` on tiny synthetic data, results, checkpoints, resume."""

import json

import jax
import numpy as np
import pytest

from seqrec_jax.recommender import losses
from seqrec_jax.recommender import evaluation
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.stages import recommender as recommender_stage
from tests.helpers import tiny_config as tiny

RESULT_KEYS = {"dataset", "model", "protocol", "filter_seen", "num_users", "num_items", "steps",
               "train_seconds", "val", "test"}


def tiny_config(kind="sasrec", **train):
  c = tiny.get_config(kind)
  c.train.update(train)
  return c


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_train_recommender_writes_results(tmp_path, kind):
  results = recommender_stage.run(tiny_config(kind), tmp_path)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert RESULT_KEYS <= set(on_disk)
  for split in ("val", "test"):
    assert {"ndcg@10", "hr@10", "mrr@10"} <= set(on_disk[split])
    assert 0 <= on_disk[split]["ndcg@10"] <= on_disk[split]["hr@10"] <= 1
  assert "coverage@10" in on_disk["test"]
  assert on_disk["protocol"] == "temporal" and on_disk["model"] == kind
  assert on_disk["steps"] == results["steps"] > 0
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {l["split"] for l in lines} == {"train", "val"}
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard curves


def test_train_step_traces_once(tmp_path, monkeypatch):
  traces = []
  original = losses.full_softmax_ce

  def counting(*args):
    traces.append(1)
    return original(*args)

  monkeypatch.setattr(losses, "full_softmax_ce", counting)
  results = recommender_stage.run(tiny_config(num_epochs=3), tmp_path)
  assert results["steps"] >= 6
  assert len(traces) == 1


def _params(workdir):
  workdir_lib.clear_cache()
  return workdir_lib.load_recommender(workdir_lib.Layout(workdir)).params


def test_resume_continues_to_the_same_parameters(tmp_path):
  # Uninterrupted: 8 steps. Interrupted: 4 steps, then the same workdir asked for 8.
  recommender_stage.run(tiny_config(max_steps=8, eval_every_steps=2, num_epochs=50),
                                 tmp_path / "full")
  first = recommender_stage.run(
      tiny_config(max_steps=4, eval_every_steps=2, num_epochs=50), tmp_path / "split")
  assert first["steps"] == 4
  second = recommender_stage.run(
      tiny_config(max_steps=8, eval_every_steps=2, num_epochs=50), tmp_path / "split")
  assert second["steps"] == 8
  full_results = json.loads((tmp_path / "full" / "results.json").read_text())
  assert full_results["test"] == second["test"]
  a, b = _params(tmp_path / "full"), _params(tmp_path / "split")
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_best_checkpoint_round_trip(tmp_path):
  results = recommender_stage.run(tiny_config(), tmp_path)
  workdir_lib.clear_cache()  # restore from the files, not the artefact the stage handed over
  rec = workdir_lib.load_recommender(workdir_lib.Layout(tmp_path))
  config, split, model_cfg, params = rec.config, rec.split, rec.model_cfg, rec.params
  # The restored best parameters reproduce the recorded test metrics exactly.
  from seqrec_jax.recommender import input_pipeline
  arrays = input_pipeline.make_eval_arrays(split.test, kind=model_cfg.kind, max_len=model_cfg.max_len,
                                           batch_size=7, mask_token=model_cfg.mask_token)
  again = evaluation.evaluate(params, model_cfg, arrays, batch_size=7,
                               filter_seen=config.eval.filter_seen)
  for key in ("ndcg@10", "hr@10", "mrr@10", "coverage@10"):
    assert again[key] == pytest.approx(results["test"][key], abs=1e-6)
