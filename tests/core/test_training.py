import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(mode: str, devices: int) -> list[float]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-m", "tests.helpers.parallel_losses", mode], cwd=ROOT, env=env,
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
