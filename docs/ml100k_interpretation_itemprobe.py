# Usage: PYTHONPATH=. python docs/ml100k_interpretation_itemprobe.py (reads /tmp/runs/ml100k)
# Is genre linearly readable from the recommender's item embeddings at all? (per item, 5-fold CV)
import numpy as np, jax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.metrics import roc_auc_score
from seqrec_jax import workdir as workdir_lib
rec = workdir_lib.load_recommender(workdir_lib.Layout.of("/tmp/runs/ml100k"))
dataset, split, model_cfg, params = rec.dataset, rec.split, rec.model_cfg, rec.params
flat = {"/".join(str(getattr(k, "key", k)) for k in p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
emb = [v for k, v in flat.items() if np.ndim(v) == 2 and v.shape[0] == dataset.interactions.num_items]
print([k for k, v in flat.items() if np.ndim(v) == 2 and v.shape[0] == dataset.interactions.num_items])
E = np.asarray(emb[0])[1:]; Y = dataset.attributes.multi_hot[1:]
counts = np.bincount(split.train.items, minlength=dataset.interactions.num_items)[1:]
for min_count in (0, 20):
  keep = counts >= min_count; res = {}
  for g, n in enumerate(dataset.attributes.names):
    y = Y[keep, g]
    if y.sum() < 10: continue
    s = cross_val_predict(LogisticRegression(max_iter=500), E[keep], y, cv=5, method="decision_function")
    res[n] = roc_auc_score(y, s)
  print(f"items with >= {min_count} training interactions: {keep.sum()}; mean CV probe AUC {np.mean(list(res.values())):.3f}")
  print({k: round(v, 2) for k, v in res.items()})
