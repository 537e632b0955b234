"""MovieLens-100k with the literature's leave-one-out protocol, full ranking, seen items NOT
filtered, max length 50: comparable with RecBole 1.2.1's SASRec (test NDCG@10 0.0560, HR@10 0.1241).

  python -m experiments.main --experiment=train_recommender \
      --config=experiments/configs/ml100k_loo.py --workdir=runs/ml100k_loo

Expected: see README "Results".
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.protocol = "leave_one_out"
  c.model.max_len = 50
  c.eval.filter_seen = False
  return c
