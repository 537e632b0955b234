"""Music4All-style listening histories through the generic CSV loader (the paper's second dataset).

Put `listening_history.csv` (user, song, timestamp; tab-separated, with a header) and
`id_genres.csv` (id, genres; tab-separated, genres comma-separated) in --config.data.dir:

  python -m experiments.main --experiment=pipeline --config=experiments/configs/music4all.py \
      --workdir=runs/music4all --config.data.dir=/path/to/music4all

Expected time: hours on a CPU; meant for an accelerator (not measured yet).
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "csv"
  c.data.options.interactions_file = "listening_history.csv"
  c.data.options.attributes_file = "id_genres.csv"
  c.data.options.delimiter = "\t"
  c.data.options.attribute_separator = ","
  c.data.options.item_column = "song"
  c.data.options.attribute_item_column = "id"
  c.data.options.title_column = None
  c.data.options.attributes_column = "genres"
  c.data.options.unknown_attribute_items = "skip"
  c.train.num_epochs = 50
  c.train.patience = 5
  c.train.eval_every_steps = 2000
  c.eval.batch_size = 1024
  return c
