"""A local web explorer over a finished workdir: browse the latents, steer one person's
recommendations with sliders, and see why an item is recommended.

`explorer` (the API's answers, pure functions of the query), `server` (the standard library's
threading HTTP server and routes), `static/` (the page, its script and style; no network at run
time). Started by `python -m experiments.main --experiment=serve --workdir=DIR [--port=8000]
[--host=127.0.0.1]`.
"""
