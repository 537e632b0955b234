"""The experiment stages. Each only wires library calls, reads and writes through
`seqrec_jax.workdir`, and has the one entry point `run(config, workdir) -> results`:

`recommender` (train_recommender), `sae` (train_sae), `interpret`, `steer`; `report` rewrites
`DIR/interpret/report.html` from whatever stages have finished (interpret and steer call it).
"""
