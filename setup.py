import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent

def _requirements(section: str) -> list[str]:
  """The requirements of one section of requirements.txt: "run" (before the "# test" line) or
  "test" (after it)."""
  lines = (here / "requirements.txt").read_text().splitlines()
  split = next(i for i, line in enumerate(lines) if line.startswith("# test"))
  chosen = lines[:split] if section == "run" else lines[split + 1 :]
  return [line.split("#")[0].strip() for line in chosen if line.split("#")[0].strip()]



setup(
    name="seqrec_jax",
    version="0.1.0",
    description="Sparse autoencoders for sequential recommenders (SASRec, BERT4Rec) in JAX",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["seqrec_jax", "seqrec_jax.*", "experiments", "experiments.*"]),
    python_requires=">=3.10",
    package_data={"seqrec_jax.serve": ["static/*"]},  # the explorer's page, script and style
    install_requires=_requirements("run"),
    extras_require={"test": _requirements("test")},
)
