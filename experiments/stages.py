"""The experiment stages by name; each reads what the previous one left in the workdir."""

from seqrec_jax.stages import interpret, recommender, sae, steer


def pipeline(config, workdir):
  """Every stage in order on one workdir (models restored and activations captured once)."""
  return {name: STAGES[name](config, workdir) for name in PIPELINE}


PIPELINE = ("train_recommender", "train_sae", "interpret", "steer")
STAGES = {"train_recommender": recommender.run, "train_sae": sae.run, "interpret": interpret.run,
          "steer": steer.run, "pipeline": pipeline}
