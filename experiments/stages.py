"""The experiment stages; each reads what the previous one left in the workdir."""

from seqrec_jax import recommender


def train_recommender(config, workdir):
  return recommender.train_and_evaluate(config, workdir)


def pipeline(config, workdir):
  for name in PIPELINE:
    STAGES[name](config, workdir)


PIPELINE = ("train_recommender",)
STAGES = {"train_recommender": train_recommender, "pipeline": pipeline}
