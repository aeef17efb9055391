"""The viewer in a real headless Chromium: list, paging, histogram filters, diff, lineage, and
hostile rows that must not run.

Screenshots for docs/ui.md: `ASSAY_UI_SCREENSHOTS=docs/ui pytest tests/viewer`.
"""

from __future__ import annotations

import re
from typing import Any

FRAGMENTS_LOADED = "body[data-fragments=loaded]"


def test_datasets_list_shows_every_dataset_and_opens_one(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets")
    names = page.locator("#datasets a.dataset-link").all_inner_texts()
    assert names == ["chat", "code", "dead", "hostile", "prefs"]
    chat = page.locator("#datasets tr", has_text="chat").first
    assert "sft" in chat.inner_text() and "250" in chat.inner_text()
    shoot(page, "datasets")
    page.click("text=chat")
    page.wait_for_url(re.compile(r"/datasets/chat$"))
    assert page.locator("h1").inner_text().startswith("chat")


def test_paging_walks_all_rows_one_hundred_at_a_time(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/chat")
    page.wait_for_selector(FRAGMENTS_LOADED)
    assert page.inner_text("#pager-info").startswith("rows 1–100 of 250")
    assert page.locator("article.row").count() == 100
    shoot(page, "dataset")
    page.locator("a.next").first.click()
    page.wait_for_url(re.compile(r"page=1"))
    assert page.inner_text("#pager-info").startswith("rows 101–200 of 250")
    page.locator("a.next").first.click()
    page.wait_for_url(re.compile(r"page=2"))
    assert page.inner_text("#pager-info").startswith("rows 201–250 of 250")
    assert page.locator("article.row").count() == 50
    assert page.locator("a.next").count() == 0
    # The last row of the last page is the dataset's last row (v2's ids run r0010..r0259).
    assert "r0259" in page.locator("article.row").last.inner_text()


def test_clicking_a_histogram_bar_filters_the_rows(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/chat")
    page.wait_for_selector(FRAGMENTS_LOADED)
    language = page.locator('.hist-body[data-column="language"]')
    bar = language.locator("a.bar-link").filter(has_text="en")
    assert bar.locator("title").text_content().startswith("en: 63 rows")
    bar.locator("rect.bar").click()
    page.wait_for_url(re.compile(r"where="))
    page.wait_for_selector(FRAGMENTS_LOADED)
    assert page.input_value("#where") == "`language` = 'en'"
    assert page.inner_text("#pager-info").startswith("rows 1–63 of 63 matching")
    # The other histograms now count only the filtered rows.
    turns = page.locator('.hist-body[data-column="turns"] .hist-title').inner_text()
    assert "n=63" in turns
    shoot(page, "filtered")
    # A second bar narrows further: the filters combine with AND.
    page.locator('.hist-body[data-column="scores.ifeval"] a.bar-link').first.locator("rect.bar").click()
    page.wait_for_url(re.compile(r"AND"))
    assert page.input_value("#where").startswith("(`language` = 'en') AND (`scores`.`ifeval` >= 0.1 AND")
    shown = page.inner_text("#pager-info")
    assert re.match(r"rows 1–\d+ of \d+ matching", shown), shown


def test_search_finds_text_inside_conversations(page: Any, site: Any) -> None:
    page.goto(f"{site.url}/datasets/chat")
    page.fill("#q", "Question 42:")
    page.press("#q", "Enter")
    page.wait_for_url(re.compile(r"q=Question"))
    assert page.inner_text("#pager-info").startswith("rows 1–1 of 1")
    assert "Question 42:" in page.locator("article.row").inner_text()


def test_diff_between_two_versions(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/chat")
    page.click("#diff-link")
    page.wait_for_url(re.compile(r"/datasets/chat/diff"))
    assert page.inner_text("#diff-title") == "chat@1 → chat@2"
    summary = {
        row.locator("td").nth(0).inner_text(): row.locator("td").nth(1).inner_text()
        for row in page.locator("#diff-rows tbody tr").all()
    }
    assert summary == {"added": "10", "removed": "10", "in both": "240", "rows": "250 → 250"}
    # The full diff (every column of the rows in both) is loaded into the page when computed.
    page.wait_for_selector(FRAGMENTS_LOADED)
    changed = page.locator("#diff-changed tbody tr")
    assert changed.nth(0).inner_text().split("\t")[:2] == ["changed", "240"]
    assert changed.nth(1).inner_text().split("\t")[:2] == ["unchanged", "0"]
    assert page.locator(".changed-pair").count() == 5
    shoot(page, "diff")
    # Any two versions: pick them in the form.
    page.select_option("#old", "2")
    page.select_option("#new", "1")
    page.click("text=compare")
    page.wait_for_url(re.compile(r"old=2"))
    assert page.inner_text("#diff-title") == "chat@2 → chat@1"


def test_lineage_graph_links_sources_models_and_files(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/chat?v=2")
    page.click("#lineage-link")
    page.wait_for_url(re.compile(r"/lineage"))
    graph = page.locator("#lineage-graph")
    keys = sorted(graph.locator("g.node").evaluate_all("nodes => nodes.map(n => n.dataset.key)"))
    assert keys == [
        "dataset:chat@1",
        "dataset:chat@2",
        "file:file:seeds/prompts.jsonl#sha256=" + "0" * 64,
        "model:smollm2-135m-instruct#0123456789abcdef",
    ]
    assert graph.locator("path.edge").count() == 3
    assert "sft-demo" in page.inner_text("main")  # the model trained on chat@2
    shoot(page, "lineage")
    graph.locator('g.node[data-key="dataset:chat@1"]').click()
    page.wait_for_url(re.compile(r"/datasets/chat\?v=1"))
    assert page.locator("h1").inner_text() == "chat @1"


def test_rows_render_for_their_kind(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/prefs")
    pair = page.locator(".pair").first
    assert "Autumn moonlight" in pair.locator(".side.chosen").inner_text()
    assert "0.9" in pair.locator(".side.chosen .score").inner_text()
    assert "0.1" in pair.locator(".side.rejected .score").inner_text()
    shoot(page, "preference")
    page.goto(f"{site.url}/datasets/code")
    assert page.locator("table.tests tr.pass").count() == 1
    assert "AssertionError: 4 != 5" in page.locator("table.tests tr.fail").inner_text()
    page.goto(f"{site.url}/datasets/dead")
    assert "stage generate" in page.inner_text(".dead")
    assert "PromptTooLongError" in page.inner_text(".dead")
    page.goto(f"{site.url}/models/sft-demo")
    assert page.locator("#metrics rect.bar").count() == 2  # train_loss, eval_ifeval
    assert page.locator("svg.curve polyline").count() == 1  # loss_curve
    # Evaluations: the latest run's metrics as bars with error bars, and their history.
    assert page.locator("svg.eval-chart rect.bar").count() == 4  # 2 metrics x 2 suites
    assert page.locator("svg.eval-chart .err").count() == 4
    assert page.locator("svg.history circle.point").count() == 6  # ifeval: 2 metrics x 3 runs
    assert page.locator("svg.eval-chart").first.bounding_box()["width"] > 300  # drawn, not empty
    shoot(page, "model")


def test_hostile_rows_are_shown_as_text_and_nothing_runs(page: Any, site: Any, shoot: Any) -> None:
    page.goto(f"{site.url}/datasets/hostile")
    page.wait_for_selector(FRAGMENTS_LOADED)
    page.goto(f"{site.url}/datasets/hostile?q=script")
    page.wait_for_selector(FRAGMENTS_LOADED)
    for link in page.locator("article.row pre").all()[:3]:
        link.click()  # clicking the text of a javascript: "link" must do nothing
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.scripts.length") == 1  # only /static/viewer.js
    hrefs = page.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript:")]
    assert page.locator("main img, main iframe, article svg").count() == 0
    text = page.inner_text("#rows")
    assert "<script>window.__pwned = 1</script>" in text  # shown literally
    assert "\ufffd\ufffd<script>window.__pwned=6</script>\ufffd" in text  # bad UTF-8 replaced
    shoot(page, "hostile")
    assert page.problems == []
