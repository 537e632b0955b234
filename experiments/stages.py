"""The experiment stages; each reads what the previous one left in the workdir."""

from seqrec_jax.interpret import stage as interpret_stage
from seqrec_jax.recommender import stage as recommender_stage
from seqrec_jax.sae import stage as sae_stage
from seqrec_jax.steer import stage as steer_stage


def train_recommender(config, workdir):
  return recommender_stage.train_and_evaluate(config, workdir)


def train_sae(config, workdir):
  return sae_stage.train_sae(config, workdir)


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
