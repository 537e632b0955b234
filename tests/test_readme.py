"""The README's Python walkthrough runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def walkthrough_code() -> str:
  text = README.read_text()
  section = text.split("## Python walkthrough", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_walkthrough_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(walkthrough_code(), "README.md", "exec"), namespace)
  out = capsys.readouterr().out
  assert "genre 0 share in top 10" in out
  before, after = out.strip().splitlines()[-1].split(":")[1].split("->")
  assert float(after) > float(before)  # the edit steers towards the genre
