"""Your own data: a CSV of interactions (user, item, timestamp) and optionally item attributes.

  python -m experiments.main --experiment=pipeline --config=experiments/configs/csv.py \
      --workdir=runs/mydata --config.data.dir=/path/to/folder \
      --config.data.options.interactions_file=interactions.csv \
      --config.data.options.attributes_file=items.csv

The attributes file has columns item, title, attributes (attributes `|`-separated). Every option
of the generic loader is declared below so that it can be overridden from the command line.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.data.name = "csv"
  o = c.data.options
  o.interactions_file = "interactions.csv"  # relative to data.dir, or absolute
  o.delimiter = ","
  o.header = True  # the first line names the columns
  o.user_column = "user"
  o.item_column = "item"
  o.timestamp_column = "timestamp"
  o.attributes_file = ""  # empty: no attributes (interpretation then has nothing to score)
  o.attribute_item_column = "item"
  o.title_column = "title"
  o.attributes_column = "attributes"
  o.attribute_separator = "|"
  o.unknown_attribute_items = "error"  # error | skip: attribute rows naming items never seen
  return c
