import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="seqrec_jax",
    version="0.1.0",
    description="Sparse autoencoders for sequential recommenders (SASRec, BERT4Rec) in JAX",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["seqrec_jax", "seqrec_jax.*", "experiments", "experiments.*"]),
    python_requires=">=3.10",
    install_requires=requirements,
)
