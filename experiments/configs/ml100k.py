"""MovieLens-100k, the offline default: the paper's SASRec and seed protocol (temporal split,
seen items filtered).

  python -m experiments.main --experiment=pipeline --config=experiments/configs/ml100k.py \
      --workdir=runs/ml100k

Expected: see README "Results" (numbers measured on a 2-core CPU); train_recommender takes about
a minute there.
"""

from experiments.configs import default


def get_config():
  return default.get_config()
