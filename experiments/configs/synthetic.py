"""Synthetic sequences with planted genres: the ground truth a correct pipeline must recover.

  python -m experiments.main --experiment=pipeline --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic

Expected: each planted genre has a latent with AUC >= 0.9 (see README); a few minutes on 2 cores.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "synthetic"
  c.data.options.seed = 0  # the generator's seed (the data), apart from the training seed
  c.model.max_len = 32
  c.train.num_epochs = 60
  c.train.patience = 10
  return c
