"""Runs die and inputs are messy: resume after SIGKILL, corrupt checkpoints, non-finite losses,
bad input files on the command line, determinism, workdir hygiene."""

import json
import re
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqrec_jax.recommender import train as recommender_train
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.stages import recommender as recommender_stage
from seqrec_jax.core.checkpoints import CheckpointMismatchError
from seqrec_jax.core.stage_record import StageMismatchError
from tests.helpers import tiny_config as tiny

ROOT = pathlib.Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad"


def _config(**train):
  c = tiny.get_config()
  c.train.update(train)
  return c


def _cli(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _without_times(results):
  return {k: v for k, v in results.items() if not k.endswith("seconds")}


def _params(workdir):
  return workdir_lib.load_recommender(workdir_lib.Layout(workdir)).params


# Every file of the corpus is checked in-process by tests/test_data.py; here a few go through
# the command line, which must turn the error into one line and a non-zero exit.
@pytest.mark.parametrize("name", ["wrong_separator.csv", "text_in_timestamp.csv", "empty.csv"])
def test_bad_interaction_file_exits_with_one_line(tmp_path, name):
  out = _cli("--experiment=train_recommender", f"--workdir={tmp_path}",
             "--config=experiments/configs/csv.py",
             f"--config.data.options.interactions_file={BAD / name}")
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and name in last, out.stderr[-2000:]
  assert ":" in last.split(name, 1)[1]  # file:LINE: message
  assert not (tmp_path / "results.json").exists()


def test_same_seed_same_results_other_seed_different(tmp_path):
  a = recommender_stage.run(_config(), tmp_path / "a")
  b = recommender_stage.run(_config(), tmp_path / "b")
  other = _config()
  other.seed = 1
  c = recommender_stage.run(other, tmp_path / "c")
  assert _without_times(a) == _without_times(b)
  assert _without_times(a)["test"] != _without_times(c)["test"]
  disk = json.loads((tmp_path / "a" / "results.json").read_text())
  assert _without_times(disk) == _without_times(json.loads(json.dumps(a)))


def test_finished_stage_is_not_redone_unless_overwrite(tmp_path):
  first = recommender_stage.run(_config(), tmp_path)
  stamp = (tmp_path / "results.json").stat().st_mtime_ns
  again = recommender_stage.run(_config(), tmp_path)
  assert again == json.loads(json.dumps(first))
  assert (tmp_path / "results.json").stat().st_mtime_ns == stamp
  redo = _config()
  redo.overwrite = True
  recommender_stage.run(redo, tmp_path)
  assert (tmp_path / "results.json").stat().st_mtime_ns != stamp


def test_later_stage_without_inputs_names_the_stage_to_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="train_recommender"):
    workdir_lib.load_recommender(workdir_lib.Layout(tmp_path))


def _first_non_finite_step(workdir, every: int) -> int:
  config = _config(learning_rate=1e12, eval_every_steps=every, log_every_steps=every,
                   max_steps=40, num_epochs=100)
  with pytest.raises(FloatingPointError, match=r"at step \d+") as failure:
    recommender_stage.run(config, workdir)
  assert not (workdir / "results.json").exists()
  return int(re.search(r"at step (\d+)", str(failure.value)).group(1))


def _checkpoint_steps(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_non_finite_loss_names_the_first_bad_step_and_keeps_checkpoint(tmp_path):
  # Checked every step, the error names the first bad step by construction; checked once per
  # 7 steps, the loop must find the same step inside its window.
  every_step = _first_non_finite_step(tmp_path / "every", 1)
  windowed = _first_non_finite_step(tmp_path / "windowed", 7)
  assert windowed == every_step
  assert windowed % 7 != 1, "the bad step should not open its window (the search would be moot)"
  steps = _checkpoint_steps(tmp_path / "every")
  assert steps and max(steps) < every_step, "the checkpoints before the failure are kept"
  params = _params_of_latest(tmp_path / "every")
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))


def _params_of_latest(workdir):
  from seqrec_jax.core import training
  from seqrec_jax.core.checkpoints import Checkpointer
  from seqrec_jax.recommender.model import init_params

  config = _config()
  dataset, split = recommender_train.load_data(config)
  model_cfg = recommender_train.model_config(config, dataset.interactions.num_items)
  target = training.create_train_state(init_params(model_cfg, jax.random.PRNGKey(0)),
                                       recommender_train.make_optimizer(config), 0)
  state, _, _ = Checkpointer(workdir / "checkpoints").restore_newest_valid(target)
  return state.params


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path):
  config = _config(max_steps=6, eval_every_steps=2, log_every_steps=1, num_epochs=50)
  recommender_stage.run(config, tmp_path)
  assert _checkpoint_steps(tmp_path)[-2:] == [4, 6]
  # Truncate every array file of the newest checkpoint.
  for f in (tmp_path / "checkpoints" / "6" / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
  lines_before = len((tmp_path / "metrics.jsonl").read_text().splitlines())
  more = _config(max_steps=8, eval_every_steps=2, log_every_steps=1, num_epochs=50)
  results = recommender_stage.run(more, tmp_path)
  assert results["steps"] == 8
  assert (tmp_path / "checkpoints.unreadable" / "6").is_dir()
  # It resumed from step 4 (a restart from scratch would log steps 1.. again) ...
  new_lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  new_train_steps = [l["step"] for l in new_lines[lines_before:] if l["split"] == "train"]
  assert new_train_steps == [5, 6, 7, 8]
  # ... and reached the parameters of an uninterrupted run (the same computation repeated).
  straight = tmp_path / "straight"
  recommender_stage.run(more, straight)
  jax.tree_util.tree_map(np.testing.assert_array_equal, _params_of_latest(tmp_path),
                         _params_of_latest(straight))


def test_restore_into_another_shape_names_the_entry(tmp_path):
  recommender_stage.run(_config(max_steps=2, eval_every_steps=2), tmp_path)
  bigger = _config(max_steps=4, eval_every_steps=2)
  bigger.model.hidden_dim = 24
  # The error names an entry and both layouts, e.g. "entry params.item_embedding.embedding is
  # ((41, 16), 'float32') in the checkpoint but ((41, 24), 'float32') in the model ...".
  from seqrec_jax.core import training
  from seqrec_jax.core.checkpoints import Checkpointer
  from seqrec_jax.recommender.model import init_params

  dataset, _ = recommender_train.load_data(bigger)
  model_cfg = recommender_train.model_config(bigger, dataset.interactions.num_items)
  target = training.create_train_state(init_params(model_cfg, jax.random.PRNGKey(0)),
                                       recommender_train.make_optimizer(bigger), 0)
  with pytest.raises(CheckpointMismatchError,
                     match=r"entry \S+ is \(\(.*\) in the checkpoint but \(\(.*\) in the model"):
    Checkpointer(tmp_path / "checkpoints").restore(target)
  # The stage itself refuses earlier, naming the setting.
  with pytest.raises(StageMismatchError, match=r"model\.hidden_dim: 16 -> 24"):
    recommender_stage.run(bigger, tmp_path)


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
  overrides = ["--config=tests/helpers/tiny_config.py", "--config.train.max_steps=300",
               "--config.train.eval_every_steps=20", "--config.train.num_epochs=1000"]
  killed = tmp_path / "killed"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "experiments.main", "--experiment=train_recommender",
                           f"--workdir={killed}", *overrides], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  latest = killed / "checkpoints"
  deadline = time.time() + 240
  try:
    while time.time() < deadline and proc.poll() is None:
      if latest.exists() and any(p.name.isdigit() for p in latest.iterdir()):
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert not (killed / "results.json").exists()
  out = _cli("--experiment=train_recommender", f"--workdir={killed}", *overrides)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "resumed from" in out.stderr
  fresh = tmp_path / "fresh"
  out = _cli("--experiment=train_recommender", f"--workdir={fresh}", *overrides)
  assert out.returncode == 0, out.stderr[-3000:]
  a, b = _params(killed), _params(fresh)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  ra = json.loads((killed / "results.json").read_text())
  rb = json.loads((fresh / "results.json").read_text())
  assert _without_times(ra) == _without_times(rb)
