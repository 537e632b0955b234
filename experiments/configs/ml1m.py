"""MovieLens-1M (ratings.dat, movies.dat in --config.data.dir), the paper's recommender and protocol.

  python -m experiments.main --experiment=pipeline --config=experiments/configs/ml1m.py \
      --workdir=runs/ml1m --config.data.dir=/path/to/ml-1m

Expected time: tens of minutes on a 2-core CPU, a few minutes on one GPU (not measured yet).
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "ml-1m"
  c.model.max_len = 64
  c.train.num_epochs = 100
  c.train.patience = 10
  return c
