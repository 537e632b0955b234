"""One tiny finished workdir and one explorer server on it, shared by every test here."""

import pytest

from experiments import stages
from seqrec_jax.serve import explorer, server
from tests.helpers import tiny_config as tiny


def serve_config():
  c = tiny.get_sae_config()
  c.train.update(max_steps=4, eval_every_steps=2, num_epochs=50)
  c.steer.strengths = (-32.0, 0.0, 32.0)
  return c


@pytest.fixture(scope="session")
def served(tmp_path_factory):
  """`(explorer, url)` of a server on a finished tiny workdir, serving in a thread."""
  workdir = tmp_path_factory.mktemp("serve")
  config = serve_config()
  stages.pipeline(config, workdir)
  loaded = explorer.Explorer.load(config, workdir)
  srv, url = server.start_in_thread(loaded)
  yield loaded, url
  srv.shutdown()
  srv.server_close()
