"""Shared defaults: the paper's recommender (SASRec, 64-d, 2 blocks, 2 heads, length 64, Adam 1e-3,
batch 128, full cross-entropy, early stopping on validation NDCG@10) and its seed protocol.

Other config files start from `get_config()` here and change what differs.
"""

import ml_collections

from seqrec_jax.sae import variants as sae_variants


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
  c.model.scale_embeddings = False  # multiply input item embeddings by sqrt(d) (original SASRec)
  c.model.dtype = "float32"  # activations and matmuls; bfloat16 on accelerators

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 128  # global, in sequences (windows)
  c.train.learning_rate = 1e-3  # Adam
  c.train.loss = "full"  # full | chunked (over item chunks, big catalogues) | sampled softmax
  c.train.loss_chunk_size = 8192  # chunked: items per chunk
  c.train.num_negatives = 8192  # sampled: negatives shared across the batch
  c.train.negative_sampling = "uniform"  # sampled: uniform | popularity (with logQ correction)
  # dense (Adam on the whole item table) | lazy_adam (sampled only: Adam on the rows a step uses,
  # the others untouched; step time independent of the catalogue size, core.sparse_rows)
  c.train.item_optimizer = "dense"
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

  c.sae = ml_collections.ConfigDict()
  c.sae.subdir = "sae"  # output folder inside the workdir (several SAEs may share a recommender)
  c.sae.layer = "blocks_0"  # layer whose output is reconstructed (models.layer_names)
  # The paper's relu_l1 over 512 latents. TopK (k 32) over 1,024 latents reconstructs MovieLens-100k
  # better (explained variance 0.984 vs 0.959, spliced NDCG@10 105 % vs 88 %, 9 % vs 30 % dense
  # latents) but loses AUC on planted data (README "Ablations"), so it is not the default:
  # --config.sae.variant=topk --config.sae.dict_size=1024.
  c.sae.variant = "relu_l1"  # relu_l1 | topk | batchtopk | jumprelu | gated
  c.sae.dict_size = 512  # M, number of latents
  # Each variant's own settings, declared with defaults and docs in seqrec_jax/sae/<variant>.py, as
  # a block c.sae.<variant> (c.sae.topk.k, c.sae.jumprelu.l0_coeff, ...) and flat aliases holding
  # the same values (c.sae.k = c.sae.topk.k = c.sae.batchtopk.k). topk / batchtopk: k, k_aux,
  # aux_coeff; batchtopk also threshold_momentum; relu_l1 / gated: l1_coeff; jumprelu: l0_coeff,
  # bandwidth, init_threshold.
  sae_variants.add_settings(c.sae)
  c.sae.normalization = "scalar"  # scalar (the paper's mean/std) | sqrt_d (mean norm sqrt(d)) | none
  c.sae.decoder_bias_init = "geometric_median"  # mean | geometric_median of the training activations
  c.sae.batch_size = 1024  # global, in activations per step
  c.sae.learning_rate = 1e-3  # Adam peak learning rate
  c.sae.warmup_steps = 100  # linear learning-rate warm-up from 0
  c.sae.decay_fraction = 0.2  # linear decay to 0 over this final share of the steps
  c.sae.grad_clip_norm = 0.0  # 0 disables clipping
  c.sae.num_epochs = 300  # passes over the SAE training activations
  c.sae.max_steps = 0  # optional cap on steps (0: none)
  c.sae.dead_window_tokens = 0  # dead = not fired in this many activations (0: one epoch)
  c.sae.resample_every_steps = 500  # relu_l1 / jumprelu / gated: resample dead latents (0: never)
  c.sae.resample_stop_fraction = 0.6  # no resampling after this share of the steps
  c.sae.resample_sample_size = 8192  # activations scored to pick resampling directions
  c.sae.val_fraction = 0.1  # share of the SAE users held out for validation
  c.sae.eval_every_steps = 0  # validation interval in steps (0: ten times per run)
  c.sae.log_every_steps = 100  # progress line interval in steps
  c.sae.capture_batch_size = 256  # sequences per forward pass when capturing activations
  c.sae.memory_budget_mb = 2048  # above this, captured activations are memory-mapped on disk
  c.sae.dense_threshold = 0.1  # a latent is dense if it fires on more than this share
  
  c.interpret = ml_collections.ConfigDict()
  c.interpret.label_position = "item"  # item (the paper: the item at the position) | next_item
  # Attribute families derived from the data beside the dataset's own (genres), data.derived:
  # "popularity" (popularity:head / popularity:tail) and "decade" (decade:1990s, ... where the
  # data has release years); "" for none. Interpreted and steered like the genres.
  c.interpret.attribute_families = "popularity,decade"
  c.interpret.popularity_share = 0.2  # head / tail: the most / least interacted items holding
  # this share of the training interactions each
  c.interpret.min_label_corr = 0.1  # a latent is labelled with its best-correlated attribute if
  # that correlation is >= this (else it stays unlabelled)
  c.interpret.min_auc = 0.9  # a labelled latent is monosemantic if its label has AUC >= this ...
  c.interpret.min_precision = 0.5  # ... and P(attribute | latent fired) >= this
  c.interpret.selection_users = 2000  # at most this many SAE users choose the best features
  c.interpret.num_bootstrap = 1000  # user-bootstrap replicates for the 95 % intervals
  c.interpret.top_k = 10  # top items and sequences kept per latent

  c.steer = ml_collections.ConfigDict()
  c.steer.mode = "add"  # set | add | scale
  c.steer.positions = "last"  # last | all: positions whose hidden state is edited (last steers
  # more per unit of NDCG@10 lost on MovieLens-100k and planted data; see README)
  c.steer.error_preserving = True  # h + decode(f') - decode(f); False: the paper's decode(f')
  # Typical activations; fine where the useful range starts. The nonzero ones also choose controls.
  c.steer.strengths = (-32.0, -16.0, -8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0)
  c.steer.selection_users = 256  # at most this many SAE users choose each attribute's control
  c.steer.num_candidates = 3  # latents per attribute swept, ranked by logit effect (+ AUC, corr)
  c.steer.min_ndcg_ratio = 0.8  # a control's gain counts where NDCG@10 keeps this share
  c.steer.direction_strengths = (-8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0)  # std units
  c.steer.rerank_strengths = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0)  # score stds
  c.steer.composites = ("kids mode=Children's:+1,Animation:+1,Horror:-1,Thriller:-1;"
                        "no Horror=Horror:-1")  # NAME=ATTR:±w,...; attributes absent are dropped
  c.steer.composite_strengths = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)  # x each part's weight
  return c
