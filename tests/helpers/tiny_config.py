"""A tiny synthetic-data config for end-to-end tests (seconds per run on a CPU).

Usable as a config file too: `--config=tests/helpers/tiny_config.py`.
"""

from experiments.configs import synthetic


def get_config(kind: str = "sasrec"):
  c = synthetic.get_config()
  c.data.options.num_users = 120
  c.data.options.num_items = 40
  c.data.options.num_genres = 4
  c.data.options.min_len = 5
  c.data.options.max_len = 20
  c.model.kind = kind
  c.model.max_len = 8
  c.model.hidden_dim = 16
  c.model.mlp_dim = 32
  c.model.num_blocks = 1
  c.train.batch_size = 16
  c.train.num_epochs = 2
  c.train.log_every_steps = 2
  c.eval.batch_size = 32
  return c


def get_sae_config(**sae_fields):
  """`get_config()` with a two-step recommender (the SAE stages need one, not a good one) and a
  tiny SAE; `sae_fields` override `config.sae`."""
  c = get_config()
  c.train.num_epochs = 1
  c.train.max_steps = 2  # the SAE stage needs a recommender, not a good one
  c.sae.dict_size = 32
  c.sae.batch_size = 64
  c.sae.num_epochs = 4
  c.sae.warmup_steps = 2
  c.sae.eval_every_steps = 3
  c.sae.log_every_steps = 2
  c.sae.capture_batch_size = 16
  c.sae.l1_coeff = 0.05
  c.sae.update(sae_fields)
  return c
