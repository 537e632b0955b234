"""The train_sae stage end to end on a tiny recommender; resume; pmap and mesh against jit."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqrec_jax import workdir as workdir_lib
from seqrec_jax.recommender import activations
from seqrec_jax.stages import recommender as recommender_stage
from seqrec_jax import sae
from seqrec_jax.sae import batches as sae_batches
from seqrec_jax.sae import evaluation as sae_evaluation
from seqrec_jax.stages import sae as sae_stage
from tests.helpers import tiny_config as tiny

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT_KEYS = {"variant", "layer", "dict_size", "explained_variance", "mse", "l0", "dead_fraction",
               "dense_fraction", "original", "spliced", "zero_ablated", "train_seconds"}


tiny_config = tiny.get_sae_config


@pytest.fixture(scope="module")
def rec_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("rec")
  recommender_stage.run(tiny_config(), workdir)
  return workdir


def fresh_workdir(rec_workdir, tmp_path, name):
  """A copy of the recommender workdir (the SAE stage only adds files)."""
  import shutil

  target = tmp_path / name
  shutil.copytree(rec_workdir, target)
  return target


# Resampling every 4 steps with a short dead window exercises the host-side resampling too.
SAE_SETTINGS = dict(resample_every_steps=4, dead_window_tokens=64, resample_stop_fraction=1.0,
                    l1_coeff=3.0, learning_rate=0.05)


@pytest.fixture(scope="module")
def sae_workdir(rec_workdir, tmp_path_factory):
  """One uninterrupted train_sae run (checked below, and the reference for resuming)."""
  workdir = fresh_workdir(rec_workdir, tmp_path_factory.mktemp("sae"), "straight")
  return workdir, sae_stage.run(tiny_config(**SAE_SETTINGS), workdir)


def test_train_sae_end_to_end(sae_workdir):
  workdir, results = sae_workdir
  config = tiny_config(**SAE_SETTINGS)
  on_disk = json.loads((workdir / "sae" / "results.json").read_text())
  assert RESULT_KEYS <= set(on_disk)
  assert on_disk["variant"] == "relu_l1" and on_disk["layer"] == "blocks_0"
  assert on_disk["dict_size"] == 32 and on_disk["steps"] == results["steps"] > 0
  assert on_disk["resampled_latents"] > 0  # the resampling path ran
  for name in ("original", "spliced", "zero_ablated"):
    assert {"ndcg@10", "hr@10"} <= set(on_disk[name])
    assert 0 <= on_disk[name]["ndcg@10"] <= on_disk[name]["hr@10"] <= 1
  assert on_disk["explained_variance"] <= 1 and 0 <= on_disk["dead_fraction"] <= 1
  # The unedited evaluation is the recommender's own test result.
  rec_results = json.loads((workdir / "results.json").read_text())
  assert on_disk["original"]["ndcg@10"] == pytest.approx(rec_results["test"]["ndcg@10"], abs=1e-6)
  lines = [json.loads(l) for l in (workdir / "sae" / "metrics.jsonl").read_text().splitlines()]
  assert {l["split"] for l in lines} == {"train", "val"}

  # Save -> load: the loaded SAE reproduces the test-set numbers from raw activations.
  loaded = workdir_lib.load_sae(workdir_lib.Layout(workdir))
  trained = loaded.trained
  config_, variables, norm = trained  # unpacks as (config, variables, normaliser)
  assert config_.variant == "relu_l1" and norm.shift.shape == (16,)
  rec = workdir_lib.load_recommender(workdir_lib.Layout(workdir))
  split, model_cfg, params = rec.split, rec.model_cfg, rec.params
  test_acts = activations.capture_activations(params, model_cfg, split.test_sequences,
                                              loaded.layer)
  quality = sae.evaluate_quality(trained, test_acts.values)
  assert quality.explained_variance == pytest.approx(on_disk["explained_variance"], abs=1e-6)
  assert quality.l0 == pytest.approx(on_disk["l0"])
  latents = sae_evaluation.latents(trained, test_acts)
  assert latents.shape == (len(test_acts), 32) and latents.min() >= 0
  np.testing.assert_allclose(trained.decode(latents), trained.reconstruct(test_acts.values), atol=1e-5)

  # A second run does not redo the work.
  def boom(*args, **kwargs):
    raise AssertionError("should not recapture")

  import unittest.mock as mock

  with mock.patch.object(activations, "capture_activations", boom):
    again = sae_stage.run(config, workdir)
  assert again["explained_variance"] == on_disk["explained_variance"]
  # Other settings in the same folder are refused unless overwriting.
  import shutil

  other = workdir.parent / "other_settings"
  shutil.copytree(workdir, other)
  (other / "sae" / "results.json").unlink()
  with pytest.raises(ValueError, match="other settings"):
    sae_stage.run(tiny_config(dict_size=16), other)


class Interrupt(Exception):
  pass


def test_resumed_training_equals_uninterrupted(rec_workdir, sae_workdir, tmp_path, monkeypatch):
  straight, _ = sae_workdir
  resumed = fresh_workdir(rec_workdir, tmp_path, "resumed")
  config = tiny_config(**SAE_SETTINGS)
  original_batch = sae_batches.ActivationBatches.batch

  def interrupted(self, step):
    if step == 7:
      raise Interrupt
    return original_batch(self, step)

  monkeypatch.setattr(sae_batches.ActivationBatches, "batch", interrupted)
  with pytest.raises(Interrupt):
    sae_stage.run(config, resumed)
  monkeypatch.setattr(sae_batches.ActivationBatches, "batch", original_batch)
  results = sae_stage.run(config, resumed)  # resumes from the step-6 checkpoint

  a, b = (workdir_lib.load_sae(workdir_lib.Layout(w)).trained for w in (straight, resumed))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
  first = json.loads((straight / "sae" / "results.json").read_text())
  assert results["explained_variance"] == pytest.approx(first["explained_variance"], abs=1e-6)
  assert results["steps"] == first["steps"] and results["resampled_latents"] == first["resampled_latents"]


def test_data_parallel_sae_matches_single_device():
  """jit on one device, pmap and mesh on 4 CPU devices: same losses, counters and weights."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "tests.helpers.sae_parallel_losses", "jit", "pmap", "mesh"],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True)
  runs = json.loads(out.stdout.strip().splitlines()[-1])
  assert runs.pop("devices") == 4
  reference = runs.pop("jit")
  for mode, by_variant in runs.items():
    for variant, run in by_variant.items():
      where = f"{mode} {variant}"
      np.testing.assert_allclose(run["losses"], reference[variant]["losses"], rtol=1e-5, err_msg=where)
      # A latent "fires" when its activation is > 0: a pre-activation within float error of 0 may
      # fire on one compilation and not on the other, so a few counters may differ.
      same = np.asarray(run["counters"]) == np.asarray(reference[variant]["counters"])
      assert same.mean() >= 0.97, (where, same.mean())
      np.testing.assert_allclose(run["w_dec"], reference[variant]["w_dec"], rtol=1e-4, atol=1e-6,
                                 err_msg=where)
      assert len(set(run["losses"])) == len(run["losses"])  # the steps do update the state
      assert max(run["counters"]) > 0 and min(run["counters"]) == 0  # some latents died, some fired
