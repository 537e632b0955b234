import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(mode: str, devices: int, dropout: float = 0.0) -> list[float]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "tests.helpers.parallel_losses", mode, str(dropout)], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == devices
  return result["losses"]


@pytest.fixture(scope="module")
def jit_losses():
  return _run("jit", 1)


@pytest.mark.parametrize("mode", ["pmap", "mesh"])
def test_data_parallel_matches_single_device(mode, jit_losses):
  losses = _run(mode, 4)
  assert len(losses) == 10
  np.testing.assert_allclose(losses, jit_losses, rtol=1e-4)
  assert len(set(jit_losses)) == 10  # the steps do update the state


def test_mesh_matches_single_device_with_dropout(jit_losses):
  """The default dropout (0.2 here): the mesh draws its masks for the global batch (partitionable
  threefry), so it reproduces the one-device run; pmap folds the device index into each
  device's key (flax #2593), so its masks, and losses, differ by design."""
  jit_dropout = _run("jit", 1, dropout=0.2)
  assert not np.allclose(jit_dropout, jit_losses)  # dropout is active
  np.testing.assert_allclose(_run("mesh", 4, dropout=0.2), jit_dropout, rtol=1e-4)
  pmap_dropout = _run("pmap", 4, dropout=0.2)
  assert np.isfinite(pmap_dropout).all() and not np.allclose(pmap_dropout, jit_dropout)
