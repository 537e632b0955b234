"""seqrec_jax: sparse autoencoders for interpreting and steering transformer recommenders."""

__version__ = "0.1.0"
