"""MovieLens-20M (ratings.csv, movies.csv in --config.data.dir): the paper's main setting.

  python -m experiments.main --experiment=pipeline --config=experiments/configs/ml20m.py \
      --workdir=runs/ml20m --config.data.dir=/path/to/ml-20m

Expected time: hours on a CPU; meant for an accelerator (not measured yet).
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "ml-20m"
  c.train.num_epochs = 50
  c.train.patience = 5
  c.train.eval_every_steps = 2000
  c.eval.batch_size = 1024
  return c
