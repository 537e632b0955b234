import os
import subprocess
import sys

import pytest

from seqrec_jax.core import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHOW = ("from seqrec_jax.core import host_memory; host_memory.restart_with_huge_pages(); "
         "import os, sys; print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])")


def _run(env_extra):
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SEQREC_HUGE_PAGES")}
  out = subprocess.run([sys.executable, "-c", _SHOW, "--flag=1"], cwd=ROOT, capture_output=True,
                       text=True, env={**env, **env_extra}, timeout=120, check=True)
  return out.stdout.strip()


def test_environment_adds_the_tunable_once():
  assert host_memory.environment_with_huge_pages({})["GLIBC_TUNABLES"] == host_memory.TUNABLE
  kept = host_memory.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  assert kept["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{host_memory.TUNABLE}"
  own = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
  assert host_memory.environment_with_huge_pages(own) == own


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_restart_sets_the_tunable_and_keeps_the_arguments():
  assert _run({}) == f"{host_memory.TUNABLE} ['--flag=1']"
  assert _run({"SEQREC_HUGE_PAGES": "0"}) == "None ['--flag=1']"
  assert _run({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == "glibc.malloc.hugetlb=0 ['--flag=1']"
