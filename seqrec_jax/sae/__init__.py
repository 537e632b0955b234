"""Sparse autoencoders: five variants (one file each) behind one interface.

`config` (hyperparameters), `base` (the interface and the `Variant` declaration), `relu_l1` /
`topk` (TopK, BatchTopK) / `jumprelu` / `gated` (the variants, each declaring its settings),
`variants` (registry, config blocks, `SAEConfig` from the config, initialisation), `normalization`,
`objective` (loss and train-step pieces), `resampling` (dead latents), `trained` (the trained
SAE in raw units, saved and loaded), `batches` and `evaluation` (used by the stage), and
`stage` (the `train_sae` stage). The names below are the library's public interface.
"""

from seqrec_jax.sae.config import SAEConfig
from seqrec_jax.sae.normalization import (NORMALIZATIONS, Normalizer, fit_normalizer,
                                          geometric_median, identity_normalizer)
from seqrec_jax.sae.objective import (create_train_state, dead_mask, loss, make_step_fns,
                                      per_example_loss)
from seqrec_jax.sae.resampling import resample_dead
from seqrec_jax.sae.trained import (Quality, TrainedSAE, encode_activations, evaluate_quality,
                                    explained_variance,
                                    trained_sae_from_state)
from seqrec_jax.sae.variants import (REGISTRY, VARIANTS, add_settings, fingerprint_fields,
                                     init_variables, join_variables, make_sae, reported, resamples,
                                     sae_config_from, split_variables)
