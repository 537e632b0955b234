"""Two processes x two CPU devices (jax.distributed, gloo) == one process x four devices.

Both runs execute 10 recommender and 10 SAE steps over a 4-device mesh with the same global
batches (tests/helpers/multiprocess_steps.py); their losses agree, and the checkpoints the two-process run
wrote restore here, in one process with one device, to the one-process run's parameters.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqrec_jax.core.checkpoints import Checkpointer
from tests.helpers import multiprocess_steps as worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 240  # per subprocess; a healthy run takes ~20 s on an idle 2-core machine


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(workdir, devices: int, *extra) -> subprocess.Popen:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, "-m", "tests.helpers.multiprocess_steps", f"--workdir={workdir}", *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_all(procs: list[subprocess.Popen]) -> None:
  """Wait for every process; on a failure or timeout kill the rest and show their output."""
  try:
    outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
  except subprocess.TimeoutExpired:
    outputs = None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  if outputs is None:
    pytest.fail(f"a worker did not finish within {TIMEOUT_S} s:\n" +
                "\n---\n".join(p.communicate()[0][-3000:] for p in procs))
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, f"worker exited with {p.returncode}:\n{out[-5000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  one, two = tmp_path_factory.mktemp("one_process"), tmp_path_factory.mktemp("two_processes")
  port = _free_port()
  procs = [_start(two, 2, f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
                  f"--process_id={i}") for i in range(2)]
  procs.append(_start(one, 4))
  _wait_all(procs)
  return one, two


def _losses(workdir):
  return json.loads((workdir / "losses.json").read_text())


def test_two_processes_run_on_four_devices(runs):
  one, two = map(_losses, runs)
  assert (one["process_count"], one["device_count"]) == (1, 4)
  assert (two["process_count"], two["device_count"], two["local_device_count"]) == (2, 4, 2)


@pytest.mark.parametrize("model", ["recommender", "sae"])
def test_losses_match_one_process(runs, model):
  one, two = (_losses(w)[model] for w in runs)
  assert len(one) == len(two) == worker.STEPS
  np.testing.assert_allclose(two, one, rtol=1e-4)
  assert len(set(np.round(one, 6))) == worker.STEPS  # the steps do update the state


def _restore(directory, target):
  ckpt = Checkpointer(directory, max_to_keep=1)
  try:
    return ckpt.restore(target)
  finally:
    ckpt.close()


def test_two_process_checkpoints_restore_in_one_process(runs):
  assert jax.process_count() == 1 and jax.device_count() == 1
  one, two = runs
  values = np.random.default_rng(0).normal(size=(256, worker.SAE.input_dim)).astype(np.float32)
  targets = {"recommender": worker.recommender_state()[1], "sae": worker.sae_state(values)[1]}
  for name, target in targets.items():
    restored, extra = _restore(two / name, target)
    assert extra == {"steps": worker.STEPS}
    assert int(restored.step) == worker.STEPS
    # Exactly the state the two processes held ...
    written = np.load(two / f"{name}_leaves.npz")
    leaves = jax.tree_util.tree_leaves(restored)
    assert len(written.files) == len(leaves)
    for i, leaf in enumerate(leaves):
      np.testing.assert_array_equal(np.asarray(leaf), written[f"arr_{i}"])
    # ... and, within float tolerance, the one-process run's. The attention key bias is left out:
    # softmax ignores it, so its gradient is rounding noise, which Adam scales up to lr-sized
    # steps that differ between any two reduction orders.
    reference, _ = _restore(one / name, target)
    flat, _ = jax.tree_util.tree_flatten_with_path(restored)
    for (path, a), b in zip(flat, jax.tree_util.tree_leaves(reference)):
      if "['key']['bias']" not in jax.tree_util.keystr(path):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6,
                                   err_msg=f"{name} {jax.tree_util.keystr(path)}")
