"""Diagnostics for docs/ml100k_interpretation.md: PYTHONPATH=. python docs/ml100k_interpretation_analyze.py WORKDIR [item|next_item] [sae_subdir] [bootstraps]; writes /tmp/inv/analysis_NAME.json"""
import json, sys, pathlib, time
import numpy as np
from sklearn.metrics import roc_auc_score
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax import interpret
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.sae import evaluation as sae_evaluation
from seqrec_jax.interpret.heldout import position_labels

wd = pathlib.Path(sys.argv[1]); lp = sys.argv[2] if len(sys.argv) > 2 else "item"
subdir = sys.argv[3] if len(sys.argv) > 3 else "sae"
layout = workdir_lib.Layout(wd, subdir)
rec = workdir_lib.load_recommender(layout); sae = workdir_lib.load_sae(layout)
dataset, split, model_cfg, params = rec.dataset, rec.split, rec.model_cfg, rec.params
trained, layer = sae.trained, sae.layer
names = list(dataset.attributes.names)

def prep(seqs):
  acts = acts_lib.capture_activations(params, model_cfg, seqs, layer, batch_size=256)
  labels, keep = position_labels(dataset.attributes.multi_hot, acts.items, acts.next_items, lp)
  acts = acts.subset(np.flatnonzero(keep)); labels = labels[keep]
  return acts, labels, sae_evaluation.latents(trained, acts), np.asarray(acts.values, np.float32)

def stats(lat, val, labels):
  ls = interpret.attribute_statistics(lat, labels); ns = interpret.neuron_statistics(val, labels)
  return ls, ns

out = {"workdir": str(wd), "label_position": lp, "layer": layer}
T = prep(split.test_sequences); S = prep(split.sae)
valid = [g for g in range(len(names)) if 0 < T[1][:, g].sum() < len(T[1])]
out["n_test"], out["n_sae"] = len(T[0]), len(S[0])
res = {}
for tag, (acts, labels, lat, val) in (("test", T), ("sae", S)):
  ls, ns = stats(lat, val, labels)
  res[tag] = (ls, ns)
  la = np.nanmax(ls["auc"][:, valid], 0); na = np.nanmax(ns["auc"][:, valid], 0)
  out[f"{tag}_latent_auc"] = la.mean(); out[f"{tag}_dim_auc"] = na.mean()
  out[f"{tag}_latent_corr"] = np.nanmax(ls["corr"][:, valid], 0).mean()
  out[f"{tag}_dim_corr"] = np.nanmax(ns["corr"][:, valid], 0).mean()
  out[f"{tag}_n_latent_auc_ge_0.8"] = int((la >= 0.8).sum())
  out[f"{tag}_l0"] = float((lat > 0).sum(1).mean())
# Held-out selection: pick best columns on SAE users, score them on the test users.
lsS, nsS = res["sae"]; lsT, nsT = res["test"]
bl = np.nanargmax(np.where(np.isnan(lsS["auc"]), -1, lsS["auc"]), 0)
bn = np.nanargmax(np.where(np.isnan(nsS["auc"]), -1, nsS["auc"]), 0)
out["heldout_latent_auc"] = np.mean([lsT["auc"][bl[g], g] for g in valid])
out["heldout_dim_auc"] = np.mean([nsT["auc"][bn[g], g] for g in valid])
# Mechanism: AUC of a sparse latent = TPR*(1-FPR) + TPR*FPR*A_fired + 0.5*(1-TPR)*(1-FPR);
# cap (A_fired = 1) = TPR + 0.5*(1-TPR)*(1-FPR).  Per genre: best latent (test), its TPR, FPR, cap,
# AUC within positions where it fires; fire rate of the genre.
acts, labels, lat, val = T
rows = []
for g in valid:
  j = int(np.nanargmax(np.where(np.isnan(lsT["auc"][:, g]), -1, lsT["auc"][:, g])))
  y = labels[:, g]; f = lat[:, j] > 0
  tpr, fpr = f[y].mean(), f[~y].mean()
  cap = tpr + 0.5 * (1 - tpr) * (1 - fpr)
  within = roc_auc_score(y[f], lat[f, j]) if 0 < y[f].sum() < f.sum() else float("nan")
  # best latent by AUC among latents restricted to where they fire (>= 50 firing positions)
  rows.append(dict(genre=names[g], base_rate=float(y.mean()), latent=j, auc=float(lsT["auc"][j, g]),
                   tpr=float(tpr), fpr=float(fpr), cap=float(cap), auc_within_fired=float(within),
                   precision=float(lsT["precision"][j, g]), fire_rate=float(f.mean()),
                   dim_auc=float(np.nanmax(nsT["auc"][:, g]))))
out["per_genre"] = rows
out["mean_tpr"] = np.mean([r["tpr"] for r in rows]); out["mean_cap"] = np.mean([r["cap"] for r in rows])
out["mean_auc_within_fired"] = np.nanmean([r["auc_within_fired"] for r in rows])
# Latent AUC capped: for every latent x genre, how many have TPR >= 0.6 (needed for AUC 0.8)?
P = labels[:, valid].sum(0)
fired = (lat > 0).astype(np.float32)
tprs = (fired.T @ labels[:, valid].astype(np.float32)) / P
out["max_tpr_per_genre_mean"] = float(tprs.max(0).mean())
# Sum of the latents with precision >= 2x base rate on SAE users (a genre "family"), AUC on test
fam = []
for g in valid:
  base = S[1][:, g].mean()
  sel = np.flatnonzero((lsS["precision"][:, g] >= 2 * base) & (lsS["fire_rate"] > 0))
  if len(sel) == 0: fam.append(np.nan); continue
  score = (lat[:, sel] / np.maximum(lat[:, sel].max(0), 1e-9)).sum(1)
  fam.append(roc_auc_score(labels[:, g], score))
out["family_sum_auc"] = float(np.nanmean(fam))
out["family_sum_auc_per_genre"] = dict(zip([names[g] for g in valid], map(float, fam)))
# Linear probe upper bound: logistic regression on the raw hidden state (fit on SAE users, AUC on
# test users) and on the latents; how much of each genre is linearly readable at this layer at all.
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
pr_h, pr_l = [], []
for g in valid:
  for X, Xs, acc in ((val, S[3], pr_h), (lat, S[2], pr_l)):
    sc = StandardScaler().fit(Xs)
    m = LogisticRegression(max_iter=300, C=1.0).fit(sc.transform(Xs), S[1][:, g])
    acc.append(roc_auc_score(labels[:, g], m.decision_function(sc.transform(X))))
out["probe_hidden_auc"] = float(np.mean(pr_h)); out["probe_latent_auc"] = float(np.mean(pr_l))
out["probe_hidden_auc_per_genre"] = dict(zip([names[g] for g in valid], map(float, pr_h)))
# Bootstrap over test users (columns re-selected each time): SD of the means and of the gap.
users = acts.users; uu, inv = np.unique(users, return_inverse=True)
rng = np.random.default_rng(0); boots = []
t0 = time.time()
for b in range(int(sys.argv[4]) if len(sys.argv) > 4 else 50):
  pick = rng.integers(0, len(uu), len(uu)); counts = np.bincount(pick, minlength=len(uu))
  idx = np.repeat(np.arange(len(users)), counts[inv])
  ls, ns = stats(lat[idx], val[idx], labels[idx])
  with np.errstate(all="ignore"):
    boots.append((np.nanmean(np.nanmax(ls["auc"][:, valid], 0)), np.nanmean(np.nanmax(ns["auc"][:, valid], 0))))
boots = np.array(boots)
out["boot_latent_auc_sd"], out["boot_dim_auc_sd"] = boots.std(0)
out["boot_gap_mean"], out["boot_gap_sd"] = (boots[:, 0] - boots[:, 1]).mean(), (boots[:, 0] - boots[:, 1]).std()
out["boot_frac_latent_wins"] = float((boots[:, 0] > boots[:, 1]).mean()); out["boot_s"] = time.time() - t0
conv = lambda x: float(x) if isinstance(x, (np.floating, np.integer)) else x
out = {k: conv(v) for k, v in out.items()}
print(json.dumps({k: v for k, v in out.items() if k not in ("per_genre", "family_sum_auc_per_genre", "probe_hidden_auc_per_genre")}, indent=1))
for r in rows: print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
name = wd.name + ("" if lp == "item" else "_" + lp)
pathlib.Path("/tmp/inv").mkdir(exist_ok=True)
json.dump(out, open(f"/tmp/inv/analysis_{name}.json", "w"), indent=1)
