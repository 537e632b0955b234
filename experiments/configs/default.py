"""Shared defaults: the paper's recommender (SASRec, 64-d, 2 blocks, 2 heads, length 64, Adam 1e-3,
batch 128, full cross-entropy, early stopping on validation NDCG@10) and its seed protocol.

Other config files start from `get_config()` here and change what differs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # seeds the split, initialisation, shuffling, masking and dropout
  c.parallel = "jit"  # train step compilation: "jit" (one device), "pmap" or "mesh" (all devices)
  c.overwrite = False  # redo a stage whose results already exist in the workdir

  c.data = ml_collections.ConfigDict()
  c.data.name = "ml-100k"  # ml-100k | ml-1m | ml-20m | csv | synthetic
  c.data.dir = ""  # folder with the raw files (default: $SEQREC_DATA_DIR or ~/.cache/seqrec_jax)
  c.data.protocol = "temporal"  # temporal (the paper's) | leave_one_out (the literature's)
  c.data.test_fraction = 0.1  # temporal: share of users, latest last interaction first, for test
  c.data.sae_fraction = 0.4  # temporal: share of the other users held out for SAE and validation
  c.data.options = ml_collections.ConfigDict()  # loader-specific options (csv paths, synthetic sizes)

  c.model = ml_collections.ConfigDict()
  c.model.kind = "sasrec"  # sasrec | bert4rec
  c.model.max_len = 64  # positions per sequence
  c.model.hidden_dim = 64  # d
  c.model.num_blocks = 2
  c.model.num_heads = 2
  c.model.mlp_dim = 256  # MLP width (4 d, as GPT-2)
  c.model.dropout_rate = 0.2  # on embeddings, attention weights, attention and MLP outputs
  c.model.dtype = "float32"  # activations and matmuls; bfloat16 on accelerators

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 128  # global, in sequences (windows)
  c.train.learning_rate = 1e-3  # Adam
  c.train.grad_clip_norm = 0.0  # 0 disables clipping
  c.train.num_epochs = 200  # upper bound; early stopping usually ends sooner
  c.train.max_steps = 0  # optional cap on optimisation steps (0: none)
  c.train.eval_every_steps = 0  # validation interval in steps (0: once per epoch)
  c.train.patience = 20  # validations without a better NDCG@10 before stopping
  c.train.log_every_steps = 50
  c.train.mask_prob = 0.2  # BERT4Rec: probability of masking each item
  c.train.last_item_mask_prob = 0.1  # BERT4Rec: share of rows with only the last item masked

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256  # users per evaluation batch (results do not depend on it)
  c.eval.k = 10  # cut-off of NDCG@k, HR@k, MRR@k, Coverage@k
  c.eval.filter_seen = True  # remove items of the user's history from the ranking (the paper)
  return c
