"""Huge pages for XLA:CPU's per-step buffers (glibc only; nothing to do on accelerators).

XLA:CPU allocates each compiled step's scratch buffer afresh on every call (146 MB for the
paper's SASRec step at batch 128) and glibc serves allocations that large with a fresh `mmap`,
so every step faults its whole working set in again, 4 KiB at a time: 36,000 page faults per
step, and the step takes ~1/3 less wall time without them (2 cores). With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` glibc
asks for transparent huge pages for them, 512x fewer faults. glibc reads the tunable only at
process start, so the command-line entry restarts itself once with it set
(`restart_with_huge_pages`); `SEQREC_HUGE_PAGES=0` keeps the process as it is.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"


def environment_with_huge_pages(env: dict[str, str]) -> dict[str, str]:
  """`env` with `TUNABLE` added to `GLIBC_TUNABLES` (unchanged if a hugetlb value is there)."""
  tunables = env.get("GLIBC_TUNABLES", "")
  if "glibc.malloc.hugetlb" in tunables:
    return dict(env)
  return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, TUNABLE]))}


def restart_with_huge_pages() -> None:
  """Re-execute this process (same interpreter and arguments) with `TUNABLE` set, once; returns
  without doing anything off glibc, when a hugetlb value is set already, or with
  SEQREC_HUGE_PAGES=0. Call it first thing, before JAX starts."""
  env = environment_with_huge_pages(dict(os.environ))
  if (platform.libc_ver()[0] != "glibc" or os.environ.get("SEQREC_HUGE_PAGES") == "0"
      or env == dict(os.environ)):
    return
  env["SEQREC_HUGE_PAGES"] = "0"  # never loop, whatever glibc makes of the tunable
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
