"""The workdir, the hand-off between stages: one typed artefact per stage output, each with one
`save` and one checked, cached `load`. No other module spells a workdir path or file key.

    DIR/                    the recommender (`Recommender`)
      stage.json config.json results.json metrics.jsonl tensorboard/ checkpoints/
    DIR/<sae.subdir>/       the SAE (`SAE`; `sae` unless `--config.sae.subdir`)
      stage.json config.json sae_config.json results.json model/ checkpoints/ activations/ ...
    DIR/interpret/          the interpretation (`Interpretation`)
      stage.json results.json statistics.npz dashboards.json report.html (+ its PNGs)
    DIR/steer/              the steering controls and sweeps (`Steering`)
      stage.json results.json

Every load goes through the stage records (`core.stage_record`): the stage must be finished and
each record up its chain must be the very run the one below it was computed from, else one line
names what is out of date (`StageMismatchError`) or which stage to run (`FileNotFoundError`).
Loads are cached by (directory, run id), so a pipeline restores each model once; a stage that
has just saved its artefact hands it to the cache, so the next stage restores nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqrec_jax.core import distributed, stage_record
from seqrec_jax.core.checkpoints import Checkpointer
from seqrec_jax.core.errors import DataError
from seqrec_jax.core.files import read_json, write_atomic, write_json
from seqrec_jax import data as data_lib
from seqrec_jax.data import splits
from seqrec_jax.recommender import activations as acts_lib
from seqrec_jax.recommender import train as rec_train
from seqrec_jax import sae as sae_lib
from seqrec_jax.steer.methods import Control
from seqrec_jax.steer.recommend import Steerer

RECORD = stage_record.RECORD
RESULTS = "results.json"
CONFIG = "config.json"
INTERPRET = "interpret"
STEER = "steer"

# What loads did, for tests and progress lines: checkpoint restores and activation captures.
counts: collections.Counter = collections.Counter()


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each stage's files live in a workdir (the SAE's folder is `sae_subdir`)."""

  root: pathlib.Path
  sae_subdir: str = "sae"

  def __post_init__(self):
    object.__setattr__(self, "root", pathlib.Path(self.root))  # a str is welcome too

  @classmethod
  def of(cls, workdir, config=None) -> Layout:
    subdir = config.sae.subdir if config is not None and "sae" in config else "sae"
    return cls(pathlib.Path(workdir), subdir)

  # stage directories
  @property
  def recommender(self) -> pathlib.Path:
    return self.root

  @property
  def sae(self) -> pathlib.Path:
    return self.root / self.sae_subdir

  @property
  def interpret(self) -> pathlib.Path:
    return self.root / INTERPRET

  @property
  def steer(self) -> pathlib.Path:
    return self.root / STEER

  # upstream record paths, relative to the root (as stage records store them)
  recommender_record = RECORD

  @property
  def sae_record(self) -> str:
    return f"{self.sae_subdir}/{RECORD}"

  interpret_record = f"{INTERPRET}/{RECORD}"

  # files
  @property
  def recommender_checkpoints(self) -> pathlib.Path:
    return self.root / "checkpoints"

  @property
  def sae_model(self) -> pathlib.Path:
    return self.sae / "model"

  @property
  def sae_meta(self) -> pathlib.Path:
    return self.sae / "sae_config.json"

  @property
  def sae_activations(self) -> pathlib.Path:
    return self.sae / "activations"

  @property
  def statistics(self) -> pathlib.Path:
    return self.interpret / "statistics.npz"

  @property
  def dashboards(self) -> pathlib.Path:
    return self.interpret / "dashboards.json"

  @property
  def report(self) -> pathlib.Path:
    return self.interpret / "report.html"


# ----------------------------------------------------------------------------- checked records


def _read_json_file(path: pathlib.Path):
  try:
    return read_json(path)
  except DataError as e:
    raise stage_record.StageMismatchError(str(e)) from None


def finished_record(layout: Layout, stage_dir: pathlib.Path, stage: str) -> dict:
  """The finished stage record in `stage_dir`, its chain checked; one-line errors otherwise."""
  path = stage_dir / RECORD
  if not path.is_file():
    raise FileNotFoundError(f"{stage_dir} holds no finished {stage} stage ({RECORD} missing): "
                            f"run --experiment={stage} first")
  record = stage_record.read(path)
  if not record.get("done") or not (stage_dir / RESULTS).is_file():
    raise FileNotFoundError(f"{stage_dir} holds an unfinished {stage} stage: run "
                            f"--experiment={stage} to finish it")
  stage_record.check_chain(layout.root, record, path)
  return record


class _Cache:
  """The last few loaded artefacts, keyed by (kind, directory, run id)."""

  def __init__(self, size: int = 8):
    self.size, self.entries = size, collections.OrderedDict()

  def get(self, key):
    if key in self.entries:
      self.entries.move_to_end(key)
    return self.entries.get(key)

  def put(self, key, value):
    self.entries[key] = value
    self.entries.move_to_end(key)
    while len(self.entries) > self.size:
      self.entries.popitem(last=False)
    return value

  def clear(self):
    self.entries.clear()


_cache = _Cache()


def clear_cache() -> None:
  """Forgets every loaded artefact and captured activation (the next load reads the files)."""
  _cache.clear()


def _key(kind: str, directory: pathlib.Path, run_id: str, *extra) -> tuple:
  return (kind, str(directory.absolute()), run_id, *extra)


# ----------------------------------------------------------------------------- the recommender


@dataclasses.dataclass(frozen=True)
class Recommender:
  """A trained recommender: its config, data, split, model config and best parameters."""

  config: ml_collections.ConfigDict
  dataset: Any  # data.Dataset
  split: Any  # data.splits.Split
  model_cfg: Any  # recommender.model.ModelConfig
  params: Any
  results: dict
  run_id: str


def save_recommender_config(layout: Layout, config) -> None:
  """`DIR/config.json`, written when training starts (the loader rebuilds data and model from it)."""
  if distributed.is_main_process():
    write_json(layout.root / CONFIG, config.to_dict())


def remember_recommender(layout: Layout, rec: Recommender) -> Recommender:
  """Hands a just-trained recommender to the cache (the next stage restores nothing)."""
  return _cache.put(_key("recommender", layout.root, rec.run_id), rec)


def load_recommender(layout: Layout) -> Recommender:
  """The finished recommender of `layout` (best checkpoint), restored once per run id."""
  record = finished_record(layout, layout.recommender, "train_recommender")
  cached = _cache.get(_key("recommender", layout.root, record["run_id"]))
  if cached is not None:
    return cached
  config = ml_collections.ConfigDict(_read_json_file(layout.root / CONFIG))
  dataset, split = rec_train.load_data(config)
  model_cfg = rec_train.model_config(config, dataset.interactions.num_items)
  ckpt = Checkpointer(layout.recommender_checkpoints, max_to_keep=2,
                      best_metric=rec_train.BEST_METRIC)
  try:
    state, _ = ckpt.restore(rec_train.abstract_train_state(config, model_cfg), ckpt.best_step())
  finally:
    ckpt.close()
  counts["restore recommender"] += 1
  results = _read_json_file(layout.recommender / RESULTS)
  rec = Recommender(config, dataset, split, model_cfg, state.params, results, record["run_id"])
  return remember_recommender(layout, rec)


# ----------------------------------------------------------------------------- activations


def selection_rows(num_sequences: int, max_users: int, seed: int) -> np.ndarray:
  """Indices of the SAE users' sequences that choose features and controls (at most
  `max_users`, drawn with `seed`)."""
  if max_users and num_sequences > max_users:
    return np.sort(np.random.default_rng(seed).choice(num_sequences, max_users, replace=False))
  return np.arange(num_sequences)


def selection_sequences(rec: Recommender, max_users: int, seed: int):
  """The SAE users' sequences that choose features and controls (`selection_rows`)."""
  keep = selection_rows(len(rec.split.sae), max_users, seed)
  if len(keep) == len(rec.split.sae):
    return rec.split.sae
  return splits.make_sequences([rec.split.sae[i] for i in keep], rec.split.sae.users[keep])


def captured(rec: Recommender, layer: str, group: str, *, batch_size: int = 256,
             memory_budget_mb: int = 2048, out_dir: pathlib.Path | None = None,
             max_users: int = 0, seed: int = 0) -> acts_lib.Activations:
  """`layer`'s activations at every real position of one user group, captured once per
  recommender run: `"sae"` (the SAE users, `split.sae`), `"test"` (`split.test_sequences`) or
  `"selection"` (at most `max_users` SAE users drawn with `seed`, a subset of `"sae"`)."""
  if group == "selection":
    acts = captured(rec, layer, "sae", batch_size=batch_size, memory_budget_mb=memory_budget_mb,
                    out_dir=out_dir)
    keep = selection_rows(len(rec.split.sae), max_users, seed)
    if len(keep) == len(rec.split.sae):
      return acts
    rows = np.flatnonzero(np.isin(acts.rows, keep))
    sub = acts.subset(rows)
    return dataclasses.replace(sub, rows=np.searchsorted(keep, sub.rows))
  key = ("activations", rec.run_id, layer, group)
  cached = _cache.get(key)
  if cached is not None:
    return cached
  seqs = {"sae": rec.split.sae, "test": rec.split.test_sequences}[group]
  acts = acts_lib.capture_activations(
      rec.params, rec.model_cfg, seqs, layer, batch_size=batch_size,
      memory_budget_bytes=int(memory_budget_mb) << 20,
      out_dir=None if out_dir is None else out_dir / group)
  counts[f"capture {group}"] += 1
  return _cache.put(key, acts)


# ----------------------------------------------------------------------------- the SAE


@dataclasses.dataclass(frozen=True)
class SAE:
  """A trained SAE in raw activation units, the layer it reads and the stage's results."""

  trained: sae_lib.TrainedSAE
  layer: str
  normalization: str
  results: dict
  run_id: str


def save_sae_config(layout: Layout, config) -> None:
  """`DIR/<subdir>/config.json`: the seed and the `sae` block the SAE was trained with."""
  if distributed.is_main_process():
    write_json(layout.sae / CONFIG, {"seed": config.seed, "sae": config.sae.to_dict()})


def save_sae_meta(layout: Layout, cfg, layer: str, normalization: str) -> None:
  """`DIR/<subdir>/sae_config.json`: what the loader needs to rebuild the SAE's shapes."""
  if distributed.is_main_process():
    write_json(layout.sae_meta, {"sae_config": cfg.to_dict(), "layer": layer,
                                 "normalization": normalization})


def save_sae(layout: Layout, step: int, trained, layer: str, normalization: str) -> None:
  """The trained SAE's weights and normaliser under `DIR/<subdir>/model` (a checkpoint)."""
  ckpt = Checkpointer(layout.sae_model, max_to_keep=1)
  state = {"variables": trained.variables,
           "norm": {"shift": trained.norm.shift, "scale": trained.norm.scale}}
  ckpt.save(step, jax.device_get(state),
            {"sae_config": trained.config.to_dict(), "layer": layer,
             "normalization": normalization})
  ckpt.close()


def remember_sae(layout: Layout, sae: SAE) -> SAE:
  return _cache.put(_key("sae", layout.sae, sae.run_id), sae)


def load_sae(layout: Layout) -> SAE:
  """The finished SAE of `layout.sae_subdir`, restored once per run id."""
  record = finished_record(layout, layout.sae, "train_sae")
  cached = _cache.get(_key("sae", layout.sae, record["run_id"]))
  if cached is not None:
    return cached
  meta = _read_json_file(layout.sae_meta)
  config = sae_lib.SAEConfig(**meta["sae_config"])
  target = {"variables": jax.eval_shape(
                lambda: sae_lib.init_variables(config, jax.random.PRNGKey(0))),
            "norm": {"shift": jax.ShapeDtypeStruct((config.input_dim,), jnp.float32),
                     "scale": jax.ShapeDtypeStruct((), jnp.float32)}}
  ckpt = Checkpointer(layout.sae_model, max_to_keep=1)
  try:
    state, _ = ckpt.restore(target)
  finally:
    ckpt.close()
  counts["restore sae"] += 1
  norm = sae_lib.Normalizer(jnp.asarray(state["norm"]["shift"]),
                                jnp.asarray(state["norm"]["scale"]))
  variables = jax.tree_util.tree_map(jnp.asarray,
                                     {k: dict(v) for k, v in state["variables"].items()})
  trained = sae_lib.TrainedSAE(config, variables, norm)
  sae = SAE(trained, meta["layer"], meta.get("normalization", "scalar"),
            _read_json_file(layout.sae / RESULTS), record["run_id"])
  return remember_sae(layout, sae)


# ----------------------------------------------------------------------------- interpretation


# statistics.npz: `{group}_{statistic}` for the per-feature tables of each group, plus the arrays
# named in `_SINGLE_ARRAYS`. Groups are matched longest first ("selection_latent_auc").
_STAT_GROUPS = ("selection_latent", "selection_neuron", "latent", "neuron")
_SINGLE_ARRAYS = ("typical_activation", "attribute_names", "latent_monosemanticity",
                  "neuron_monosemanticity", "logit_attribute_effect", "logit_effect",
                  "attribute_multi_hot")


@dataclasses.dataclass(frozen=True)
class Statistics:
  """The interpret stage's arrays. `tables[group][statistic]` are `[M, G]` (latents) or
  `[2d, G]` (signed dimensions) tables, or `[M]` / `[2d]` per-feature vectors, for the groups
  `latent` and `neuron` (test users) and `selection_latent`, `selection_neuron` (SAE users)."""

  tables: dict[str, dict[str, np.ndarray]]
  typical_activation: np.ndarray  # [M] mean of each latent where it fires (SAE users)
  attribute_names: list[str]  # [G]
  latent_monosemanticity: np.ndarray  # [M]
  neuron_monosemanticity: np.ndarray  # [2d]
  logit_attribute_effect: np.ndarray  # [M, G]
  logit_effect: np.ndarray | None = None  # [M, V] float16
  # [V, G] bool: the items' attributes the statistics were computed for (the dataset's own and
  # the derived families); None in workdirs from before derived families (the dataset's own).
  attribute_multi_hot: np.ndarray | None = None

  def arrays(self) -> dict[str, np.ndarray]:
    out = {f"{group}_{name}": np.asarray(v) for group, table in self.tables.items()
           for name, v in table.items()}
    for name in _SINGLE_ARRAYS:
      value = getattr(self, name)
      if value is not None:
        out[name] = np.asarray(value)
    return out

  @classmethod
  def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Statistics:
    tables = {group: {} for group in _STAT_GROUPS}
    single = {}
    for key, value in arrays.items():
      if key in _SINGLE_ARRAYS:
        single[key] = value
        continue
      group = next((g for g in _STAT_GROUPS if key.startswith(g + "_")), None)
      if group is None:
        raise ValueError(f"statistics.npz: unknown array {key!r}")
      tables[group][key[len(group) + 1:]] = value
    single["attribute_names"] = [str(n) for n in single["attribute_names"]]
    single.setdefault("logit_effect", None)
    single.setdefault("attribute_multi_hot", None)
    return cls(tables=tables, **single)


@dataclasses.dataclass(frozen=True)
class Interpretation:
  """The interpret stage's output: its results, statistics and per-latent dashboards."""

  results: dict
  statistics: Statistics
  dashboards: dict  # latent id (str) -> dashboard
  run_id: str = ""


def save_interpretation(layout: Layout, statistics: Statistics, dashboards: dict) -> None:
  """`statistics.npz` and `dashboards.json` (the results go through the stage record)."""
  if distributed.is_main_process():
    write_atomic(layout.statistics, lambda f: np.savez(f, **statistics.arrays()))
    write_json(layout.dashboards, {"num_latents": len(dashboards), "latents": dashboards})


def with_attributes(rec: Recommender, attributes) -> Recommender:
  """`rec` whose dataset carries `attributes` (a `data.ItemAttributes`) instead of its own."""
  return dataclasses.replace(rec, dataset=dataclasses.replace(rec.dataset, attributes=attributes))


def interpreted(rec: Recommender, interpretation: Interpretation) -> Recommender:
  """`rec` with the attributes its interpretation was computed for (genres and the derived
  families: `popularity:*`, `decade:*`), as the steer stage and the explorer use them."""
  stats = interpretation.statistics
  if stats.attribute_multi_hot is None:
    return rec
  attributes = rec.dataset.attributes
  return with_attributes(rec, data_lib.ItemAttributes(
      np.asarray(stats.attribute_multi_hot, bool), tuple(stats.attribute_names),
      attributes.titles if attributes is not None else rec.dataset.interactions.item_ids,
      getattr(attributes, "release_years", None)))


def remember_interpretation(layout: Layout, interpretation: Interpretation) -> Interpretation:
  return _cache.put(_key("interpretation", layout.interpret, interpretation.run_id), interpretation)


def load_interpretation(layout: Layout) -> Interpretation:
  record = finished_record(layout, layout.interpret, "interpret")
  key = _key("interpretation", layout.interpret, record["run_id"])
  cached = _cache.get(key)
  if cached is not None:
    return cached
  with np.load(layout.statistics) as f:
    statistics = Statistics.from_arrays({k: f[k] for k in f.files})
  dashboards = (_read_json_file(layout.dashboards).get("latents", {})
                if layout.dashboards.is_file() else {})
  interpretation = Interpretation(_read_json_file(layout.interpret / RESULTS), statistics,
                                  dashboards, record["run_id"])
  return _cache.put(key, interpretation)


# ----------------------------------------------------------------------------- steering


@dataclasses.dataclass(frozen=True)
class Steering:
  """The steer stage's controls and the settings they were chosen under."""

  results: dict
  controls: dict[str, dict[str, Control]]  # attribute -> {"promote": ..., "suppress": ...}
  mode: str
  positions: str
  error_preserving: bool
  run_id: str = ""


def load_steering(layout: Layout) -> Steering:
  record = finished_record(layout, layout.steer, "steer")
  results = _read_json_file(layout.steer / RESULTS)
  controls = {name: {d: Control.from_json(c[d]) for d in ("promote", "suppress")}
              for name, c in results.get("controls", {}).items()}
  return Steering(results, controls, results["mode"], results["positions"],
                  bool(results["error_preserving"]), record["run_id"])


def has_finished(stage_dir: pathlib.Path) -> bool:
  """Whether `stage_dir` records a finished stage (its chain is checked when it is loaded)."""
  record = stage_record.read(stage_dir / RECORD) if (stage_dir / RECORD).is_file() else None
  return bool(record and record.get("done"))


def best_auc_controls(interpretation: Interpretation) -> dict[str, dict[str, Control]]:
  """Each attribute's best latent by AUC on the test users, for both directions: the controls
  before the steer stage has run (the first version's choice)."""
  return {name: {"promote": Control.single(a["best_latent"]),
                 "suppress": Control.single(a["best_latent"])}
          for name, a in interpretation.results["attributes"].items()
          if a.get("best_latent") is not None}


def load_steerer(config, workdir) -> Steerer:
  """A `Steerer` over a workdir's recommender, SAE, interpretation and controls.

  The controls and the settings they were chosen under (`steer.mode`, `positions`,
  `error_preserving`) are the steer stage's record when it has run; a config asking for other
  settings is refused, naming both. Before the steer stage, each attribute's best latent by AUC
  serves both directions under the config's settings.
  """
  layout = Layout.of(workdir, config)
  rec, sae = load_recommender(layout), load_sae(layout)
  interpretation = load_interpretation(layout)
  rec = interpreted(rec, interpretation)
  s = config.steer
  settings = {"mode": s.mode, "positions": s.positions,
              "error_preserving": bool(s.error_preserving)}
  controls = best_auc_controls(interpretation)
  if has_finished(layout.steer):
    steering = load_steering(layout)
    recorded = {"mode": steering.mode, "positions": steering.positions,
                "error_preserving": steering.error_preserving}
    differ = [f"steer.{k}: {settings[k]!r} (config) vs {recorded[k]!r} (recorded)"
              for k in settings if settings[k] != recorded[k]]
    if differ:
      raise stage_record.StageMismatchError(
          f"{layout.steer} chose its controls under other steering settings ({'; '.join(differ)});"
          " drop those flags to use the recorded ones, or redo the steer stage with them and "
          "--config.overwrite=true")
    settings, controls = recorded, steering.controls
  return Steerer(rec.config, rec.dataset, rec.split, rec.model_cfg, rec.params,
                 interpretation.results, interpretation.statistics.typical_activation,
                 sae.trained, sae.layer, controls, settings["mode"], settings["positions"],
                 settings["error_preserving"], seen_width=Steerer.seen_width_for(rec.dataset))


STAGES = ("train_recommender", "train_sae", "interpret", "steer")


def stage_dirs(layout: Layout) -> dict[str, pathlib.Path]:
  return {"train_recommender": layout.recommender, "train_sae": layout.sae,
          "interpret": layout.interpret, "steer": layout.steer}


def finished_results(layout: Layout) -> dict[str, dict]:
  """`{stage: results}` of the stages finished in `layout` (each checked up its chain: a stale
  one is a `StageMismatchError`), in pipeline order."""
  out = {}
  for stage, directory in stage_dirs(layout).items():
    if has_finished(directory):
      finished_record(layout, directory, stage)
      out[stage] = _read_json_file(directory / RESULTS)
  return out


RECOMMENDER_FILES = (RECORD, CONFIG, RESULTS, "metrics.jsonl", "checkpoints")


def copy_recommender(source: Layout, target: Layout) -> None:
  """Copies a finished recommender into another workdir (SAE ablations share one recommender)."""
  finished_record(source, source.recommender, "train_recommender")
  target.root.mkdir(parents=True, exist_ok=True)
  for name in RECOMMENDER_FILES:
    src = source.root / name
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, target.root / name)


def snapshot(layout: Layout) -> dict[str, str]:
  """`{stage: run id}` of the stages finished in `layout` now (for `check_unchanged`)."""
  return {stage: stage_record.read(directory / RECORD)["run_id"]
          for stage, directory in stage_dirs(layout).items() if has_finished(directory)}


def check_unchanged(layout: Layout, taken: dict[str, str]) -> None:
  """Raises `StageMismatchError` naming the first stage redone, removed or added in `layout`
  since `taken` (a long-lived reader such as the explorer must not answer from old files)."""
  try:
    now = snapshot(layout)
  except stage_record.StageMismatchError as e:
    raise stage_record.StageMismatchError(f"the workdir changed while being served: {e}") from None
  for stage in STAGES:
    if taken.get(stage) != now.get(stage):
      raise stage_record.StageMismatchError(
          f"{stage_dirs(layout)[stage]} ({stage}) changed since it was loaded; restart the "
          "server to serve the new results")
