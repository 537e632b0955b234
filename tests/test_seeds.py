"""`experiments.seeds`: the per-seed headline numbers and their aggregate."""

import pathlib

import pytest

from experiments import seeds
from seqrec_jax import workdir as workdir_lib

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "old_workdir"


def test_seed_summary_and_aggregate_of_a_finished_workdir():
  results = workdir_lib.finished_results(workdir_lib.Layout(FIXTURE))
  one = seeds.seed_summary(results)
  assert one["ndcg@10"] == results["train_recommender"]["test"]["ndcg@10"]
  assert 0 <= one["genre/doubled/sae_effect"] <= one["genre/steerable"]
  assert one["genre/doubled/rerank"] == results["steer"]["table"]["doubled"]["rerank"]
  heldout = results["interpret"]["heldout"]["mean"]
  assert one["genre/auc/latent"] == pytest.approx(heldout["latent"]["auc"]["value"])
  other = {**one, "ndcg@10": one["ndcg@10"] + 0.02}
  summary = seeds.aggregate({"0": one, "1": other})
  assert summary["ndcg@10"]["mean"] == pytest.approx(one["ndcg@10"] + 0.01)
  assert summary["ndcg@10"]["std"] == pytest.approx(0.02 / 2 ** 0.5)
  assert "| ndcg@10 |" in seeds.markdown(summary, ["0", "1"])
