"""The experiment stages; each reads what the previous one left in the workdir."""

from seqrec_jax import interpret_stage, recommender, sae_training, steer_stage


def train_recommender(config, workdir):
  return recommender.train_and_evaluate(config, workdir)


def train_sae(config, workdir):
  return sae_training.train_sae(config, workdir)


def interpret(config, workdir):
  return interpret_stage.run(config, workdir)


def steer(config, workdir):
  return steer_stage.run(config, workdir)


def pipeline(config, workdir):
  for name in PIPELINE:
    STAGES[name](config, workdir)


PIPELINE = ("train_recommender", "train_sae", "interpret", "steer")
STAGES = {"train_recommender": train_recommender, "train_sae": train_sae, "interpret": interpret,
          "steer": steer, "pipeline": pipeline}
