"""The explorer's HTTP API on a tiny finished workdir: lists, errors, explanations, concurrency."""

import concurrent.futures
import json
import pathlib
import re
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from seqrec_jax.serve import server
from seqrec_jax.steer.explain import explain


def get(url, route, **params):
  """`(status, json)` of `GET url/route?params` (lists repeat a parameter)."""
  query = urllib.parse.urlencode([(k, v) for k, vs in params.items()
                                  for v in (vs if isinstance(vs, list) else [vs])])
  try:
    with urllib.request.urlopen(f"{url}/{route}?{query}", timeout=60) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _user(explorer):
  return str(explorer.steerer.dataset.interactions.user_ids[0])


def changing_edit(explorer, url, strengths=("+32", "-32")):
  """`(user, edit, answer)` for an attribute edit that changes the user's top 10."""
  for user in explorer.steerer.dataset.interactions.user_ids[:10]:
    for name in explorer.steerer.controls:
      for edit in (f"{name}:{s}" for s in strengths):
        _, body = get(url, "api/recommend", user=str(user), edit=edit)
        if [e["item"] for e in body["after"]] != [e["item"] for e in body["before"]]:
          return str(user), edit, body
  raise AssertionError("no control changes any top 10")


def test_recommend_lists_and_empty_edit(served):
  explorer, url = served
  user = _user(explorer)
  for params in ({}, {"edit": ""}, {"edit": "genre_00:+0"}):
    status, body = get(url, "api/recommend", user=user, **params)
    assert status == 200 and body["user"] == user
    assert len(body["before"]) == len(body["after"]) == 10
    assert [e["item"] for e in body["after"]] == [e["item"] for e in body["before"]]
    assert not any(e["new"] for e in body["after"])
  first = body["before"][0]
  assert set(first) == {"item", "title", "attributes"} and isinstance(first["attributes"], list)
  history = explorer.steerer.user_history(user)
  assert not {e["item"] for e in body["before"]} & set(history.tolist())  # seen filtered


def test_edit_changes_the_list_as_the_steerer_computes_it(served):
  explorer, url = served
  user, edit, body = changing_edit(explorer, url)
  s = explorer.steerer
  expected = s.top_items(s.user_history(user), s.resolve([edit]))
  assert [e["item"] for e in body["after"]] == expected
  before = {e["item"] for e in body["before"]}
  assert [e["new"] for e in body["after"]] == [e["item"] not in before for e in body["after"]]
  control = s.controls[edit.split(":")[0]]["promote" if "+" in edit else "suppress"]
  assert body["edits"] == [{"latent": j, "mode": s.mode, "strength": float(edit.split(":")[1]) * w}
                           for j, w in zip(control.latents, control.weights)]


def test_typed_history(served):
  explorer, url = served
  status, body = get(url, "api/recommend", items="3,7,5", edit="#1:+4")
  assert status == 200 and body["user"] is None and len(body["after"]) == 10
  assert not {3, 5, 7} & {e["item"] for e in body["before"]}
  status, found = get(url, "api/items", q=explorer.steerer.describe(7)["title"])
  assert status == 200 and 7 in [e["item"] for e in found["items"]]


@pytest.mark.parametrize("route,params,status,pattern", [
    ("api/recommend", {"user": "nobody"}, 404, "unknown user 'nobody'"),
    ("api/recommend", {"user": "user_0000", "edit": "genre_00"}, 400, "must look like NAME:VALUE"),
    ("api/recommend", {"user": "user_0000", "edit": "genre_00:lots"}, 400, "not a number"),
    ("api/recommend", {"user": "user_0000", "edit": "Horror:+2"}, 400, "unknown attribute"),
    ("api/recommend", {"user": "user_0000", "edit": "genre_00:+33"}, 400, r"out of range \[-32, 32\]"),
    ("api/recommend", {"user": "user_0000", "edit": "#999:+1"}, 400, "latent out of range"),
    ("api/recommend", {}, 400, "give user=ID or items="),
    ("api/recommend", {"items": "3,x"}, 400, "must be integers"),
    ("api/recommend", {"items": "3,9999"}, 404, "unknown item 9999"),
    ("api/explain", {"user": "user_0000", "item": "0"}, 404, "unknown item 0"),
    ("api/explain", {"user": "user_0000"}, 400, "give item=ID"),
    ("api/effect", {"edit": "genre_00:-40"}, 400, "out of range"),
    ("api/latent", {"id": "100000"}, 404, "unknown latent"),
    ("api/nothing", {}, 404, "unknown API route"),
])
def test_bad_requests_get_4xx_with_one_line(served, route, params, status, pattern):
  _, url = served
  got, body = get(url, route, **params)
  assert got == status, body
  assert set(body) == {"error"} and "\n" not in body["error"] and re.search(pattern, body["error"])


def test_a_failing_route_is_500_and_the_server_keeps_serving(served, monkeypatch):
  explorer, url = served

  def broken(query):
    raise RuntimeError("disk on fire")

  monkeypatch.setattr(explorer, "latents", broken)
  status, body = get(url, "api/latents")
  assert status == 500 and body == {"error": "internal error: RuntimeError: disk on fire"}
  monkeypatch.undo()
  assert get(url, "api/latents")[0] == 200


def test_concurrent_requests_are_served_and_agree_with_sequential_ones(served):
  explorer, url = served
  users = [str(u) for u in explorer.steerer.dataset.interactions.user_ids[:4]]
  names = list(explorer.steerer.controls)
  queries = [{"user": u, "edit": f"{names[i % len(names)]}:{s:+g}"}
             for i, u in enumerate(users) for s in (-16, 8, 32)]
  sequential = [get(url, "api/recommend", **q) for q in queries]
  with concurrent.futures.ThreadPoolExecutor(len(queries)) as pool:
    parallel = list(pool.map(lambda q: get(url, "api/recommend", **q), queries))
    effects = list(pool.map(lambda q: get(url, "api/effect", edit=q["edit"]), queries))
  assert parallel == sequential
  assert all(status == 200 for status, _ in effects)


def test_effect_baseline_is_the_steer_stage_baseline(served):
  explorer, url = served
  status, body = get(url, "api/effect")
  assert status == 200 and body["after"] == body["baseline"]
  stage = explorer.steered["baseline"]  # the steer stage's results.json
  for key in ("ndcg@10", "hr@10", "coverage@10"):
    assert body["baseline"][key] == pytest.approx(stage[key], abs=1e-6)
  name = next(iter(explorer.steerer.controls))
  _, edited = get(url, "api/effect", edit=f"{name}:+32")
  assert edited["after"]["share@10"][name] != body["baseline"]["share@10"][name]


def test_explain_route_matches_the_library(served):
  explorer, url = served
  user = _user(explorer)
  _, recs = get(url, "api/recommend", user=user)
  item = recs["before"][0]["item"]
  status, body = get(url, "api/explain", user=user, item=str(item))
  assert status == 200 and body["item"] == item and body["latents"]
  contributions = [e["contribution"] for e in body["latents"]]
  assert contributions == sorted(contributions, reverse=True)
  s = explorer.steerer
  result = explain(s.params, s.model_cfg, s.trained, s.layer,
                   s.input_batch(s.user_history(user))["input_ids"][0], item, positions=s.positions)
  assert [e["latent"] for e in body["latents"]] == result.latents[:10].tolist()
  np.testing.assert_allclose(contributions, result.contributions[:10], rtol=1e-5, atol=1e-6)
  labels = {int(j): v["attribute"] for j, v in explorer.interpreted["labels"].items()}
  assert [e["label"] for e in body["latents"]] == [labels.get(e["latent"]) for e in body["latents"]]


def test_latent_list_and_card(served):
  explorer, url = served
  _, listing = get(url, "api/latents")
  rows = listing["latents"]
  assert [r["latent"] for r in rows] == list(range(explorer.dict_size))
  labelled = next(int(j) for j in explorer.interpreted["top_examples"])
  status, card = get(url, "api/latent", id=str(labelled))
  assert status == 200 and card["label"]["attribute"] == rows[labelled]["label"]
  assert card["top_items"] and card["top_sequences"] and card["statistics"]
  aucs = [s["auc"] for s in card["statistics"]]
  assert aucs == sorted(aucs, reverse=True)
  dashboard = card["dashboard"]
  assert dashboard["latent"] == labelled and dashboard["label"] == card["label"]["attribute"]
  assert sum(dashboard["histogram"]["counts"]) > 0
  assert len(dashboard["logit_effect"]["items"]) == 10


def test_info_and_page_need_no_network(served):
  explorer, url = served
  status, info = get(url, "api/info")
  assert status == 200 and info["strength_limit"] == 32.0
  assert [c["attribute"] for c in info["controls"]] == list(explorer.steerer.controls)
  with urllib.request.urlopen(url + "/", timeout=30) as r:
    page = r.read().decode()
  assert r.headers["Content-Type"].startswith("text/html") and "/static/app.js" in page
  for path in pathlib.Path(server.STATIC_DIR).iterdir():
    text = path.read_text()
    # Nothing is fetched from elsewhere (the SVG namespace is a name, not a request).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:|import\s""",
                         text), path
    with urllib.request.urlopen(f"{url}/static/{path.name}", timeout=30) as r:
      assert r.read().decode() == text
  assert get(url, "static/../explorer.py")[0] == 404


def test_composite_presets_are_the_steer_stage_edits(served, monkeypatch):
  explorer, _ = served
  a, b = list(explorer.steerer.controls)[:2]
  monkeypatch.setattr(explorer, "steered", {"composites": {
      "texts": {"edits": [f"{a}:+8", f"{b}:-8"], "ndcg@10": 0.1},
      "metrics only": {"ndcg@10": 0.1, "share@10": {a: 0.5}},
  }})
  presets = {p["name"]: p["edits"] for p in explorer._presets()}
  assert presets == {"texts": [f"{a}:+8", f"{b}:-8"]}
