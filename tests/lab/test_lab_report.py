"""The HTML report: one self-contained page, a table, a plot per swept parameter, everything escaped."""

from __future__ import annotations

import base64
import re

import toy_threats as toy

from threatlab.lab.catalogue import Catalogue
from threatlab.lab.report import render_report, swept_params, write_report
from threatlab.lab.runner import RunResult, run_threat
from threatlab.lab.store import Store
from threatlab.lab.sweep import sweep

IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_report_has_the_table_and_one_inline_png_per_swept_parameter(tmp_path):
    cat = Catalogue([toy.BLIND_GUESS, toy.COIN])
    with Store(tmp_path / "results.sqlite") as store:
        sweep(toy.BLIND_GUESS, {"window": ["256", "1024"], "guesses": ["8", "32"]}, trials=20, seed=1, store=store,
              workers=1)
        store.put(run_threat(toy.BLIND_GUESS, None, [], 20, 1))  # at the defaults: the summary's row
        store.put(run_threat(toy.COIN, None, [], 20, 1))  # not swept: a row, no plot
        path = write_report(store.query(), tmp_path, cat, source=str(store.path))
    assert path == tmp_path / "report.html"
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<link" not in page and "<script" not in page  # self-contained
    table = page[page.index("<table>"):page.index("</table>")]
    for cell in ("toy.blind-guess", "toy.coin", "no defense", "exact-match+rate-limit", "success_rate",
                 "guesses_mean", "heads_max"):
        assert cell in table
    # measured and expected side by side, for the defaults row
    base = run_threat(toy.BLIND_GUESS, None, [], 20, 1)
    assert f'{base.metrics["success_rate"]:.4g}</td><td class="num exp">{base.expected["success_rate"]:.4g}' in table
    images = IMG.findall(page)
    assert len(images) == 2  # window and guesses; the coin was not swept
    assert all(base64.b64decode(b).startswith(b"\x89PNG\r\n\x1a\n") for b in images)
    assert page.index("<h3>window (numbers)") < page.index("<h3>guesses (packets)")


def test_swept_params_are_those_that_vary():
    runs = [RunResult("a.b", {"x": x, "y": 1}, (), 0, 1, {"success_rate": 0.0}, None, "v") for x in (1, 2)]
    assert swept_params(runs) == ["x"]


def test_report_escapes_hostile_names(tmp_path):
    evil = '<script>alert("x")</script>'
    runs = [
        RunResult(f"x.{evil}", {"name": f"{evil}${j}", "n": i}, ('"><img src=q onerror=alert(1)>',), 0, 3,
                  {"success_rate": 0.5, f"m{evil}": 1.0}, {"success_rate": 0.4}, "v")
        for i in range(2) for j in range(2)
    ]
    page = render_report(runs, source=f"/tmp/{evil}")
    assert "<script" not in page
    assert "onerror=alert(1)>" not in page.replace("&gt;", "")  # never a live attribute
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert '"><img' not in page
    assert len(IMG.findall(page)) == 2  # name (categorical) and n


def test_an_empty_store_gives_a_page_saying_so(tmp_path):
    page = write_report([], tmp_path).read_text()
    assert "No runs in the results store yet" in page
