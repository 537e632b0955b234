"""Synthetic sequences with planted genres: the ground truth a correct pipeline must recover.

  python -m experiments.main --experiment=pipeline --config=experiments/configs/synthetic.py \
      --workdir=runs/synthetic

Expected (seed 0, measured on 2 CPU cores): test NDCG@10 about 0.28; SAE explained variance
about 0.99; every planted genre has a latent with AUC >= 0.98 (mean 0.99 vs 0.98 for the best raw
dimensions); boosting a genre's latent by 64 typical activations fills the top 10 with that genre
(share >= 0.94), subtracting 32 empties it. About 5 minutes.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "synthetic"
  o = c.data.options  # the generator's arguments (seqrec_jax.data.synthetic.make_synthetic)
  o.seed = 0  # the generator's seed (the data), apart from the training seed
  o.num_users = 1000
  o.num_items = 400
  o.num_genres = 8
  o.min_len = 20  # sequence lengths, inclusive range
  o.max_len = 50
  o.stay_prob = 0.8  # probability that the genre chain keeps its genre at each step
  o.min_user_genres = 1  # each user prefers this many genres (uniform in the range)
  o.max_user_genres = 3
  o.second_genre_prob = 0.1  # probability that an item also carries a second genre
  o.popularity_exponent = 1.0  # Zipf exponent of item popularity within a genre
  o.genre_size_exponent = 0.0  # genre g holds items in proportion to 1/(g+1)**this (0: balanced)
  c.model.max_len = 32
  c.train.num_epochs = 60
  c.train.patience = 10
  c.steer.strengths = (-32.0, -16.0, -8.0, 0.0, 8.0, 16.0, 32.0, 48.0, 64.0)
  return c
