"""The pieces of the bigger pages: sortable tables, thumbnails, SVG charts, the error-analysis page.

Each escapes what it shows (class names come from data) and fetches nothing; the script that sorts and pages
tables is added to a page only when the page holds one.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from finegrain.reports import gallery, html, svg
from finegrain.reports.error_analysis import error_analysis_page
from finegrain.reports.tables import SCRIPT, sortable_table

EVIL = "<b>현대 & co</b>"
JPEG = b"\xff\xd8\xff fake jpeg"


def test_sortable_table_escapes_text_keeps_markup_and_sorts_numbers_by_value():
    rows = [{"class": EVIL, "loss": 0.123456789, "n": 7, "pic": html.Markup("<img src='x'/>")}]
    text = sortable_table(rows, ["class", "loss", "n", "pic"], page_size=25, decimals=3)
    assert "<b>" not in text and "&lt;b&gt;현대 &amp; co&lt;/b&gt;" in text
    assert "<td data-v='0.123456789'>0.123</td>" in text and "<td data-v='7'>7</td>" in text
    assert "<img src='x'/>" in text and "class='fg-table' data-page='25'" in text


def test_page_carries_the_table_script_only_when_it_has_a_widget():
    assert "<script>" not in html.page("plain", html.paragraph("text"))
    with_table = html.page("t", sortable_table([{"a": 1}], ["a"]))
    assert with_table.count("<script>") == 1 and SCRIPT in with_table
    assert with_table.index("<table") < with_table.index("<script>")  # runs after the table exists
    assert "http" not in SCRIPT and "src=" not in SCRIPT  # nothing fetched


def test_figure_shows_the_thumbnail_or_says_why_there_is_none():
    shown = gallery.figure(JPEG, EVIL, note="p 0.3", title="train/a.jpg")
    assert "data:image/jpeg;base64," in shown and "loading='lazy'" in shown and "title='train/a.jpg'" in shown
    assert "<b>" not in shown and "p 0.3" in shown
    missing = gallery.figure(None, "x.jpg", missing="corrupt <JPEG>", bad=True)
    assert "fg-missing" in missing and "corrupt &lt;JPEG&gt;" in missing and "<img" not in missing
    assert "--w:90px" in gallery.strip([shown, missing], 90)


def test_svg_charts_escape_hover_texts_and_count_every_value():
    hist = svg.histogram([1, 2, 2, 3, 40], "images <per> class")
    assert hist.startswith("<svg") and "images &lt;per&gt; class" in hist
    counts = [int(t.rsplit(": ", 1)[1]) for t in re.findall(r"<title>([^<]*)</title>", hist)]
    assert sum(counts) == 5
    dots = svg.scatter(
        np.array([[0.0, 0.0], [1.0, 2.0]]), ["#f00", "#0f0"], [EVIL, "b"], labels=[("3", (1.0, 2.0))]
    )
    assert dots.count("<circle") == 2 and "&lt;b&gt;현대" in dots and ">3</text>" in dots
    assert svg.histogram([], "x") == "" and svg.scatter(np.zeros((0, 2)), [], []) == ""


def test_error_analysis_page_has_every_section_and_escapes_class_names():
    per_class = pd.DataFrame({"class": [EVIL, "b"], "group": [0, -1], "images": [3, 2], "accuracy": [0.5, 1.0],
                              "logloss": [1.2, 0.1], "mean_p_true": [0.4, 0.9], "taken_for": ["b", ""],
                              "taken_for_count": [1, 0]})  # fmt: skip
    pairs = pd.DataFrame([{"true": EVIL, "predicted": "b", "count": 1, "share_of_true": 0.33, "same_group": False,
                           "examples": ["img1"], "references": ["img2"]}])  # fmt: skip
    worst = pd.DataFrame([{"image_id": "img1", "true": EVIL, "predicted": "b", "p_true": 0.1, "p_predicted": 0.8,
                           "logloss": 2.3}])  # fmt: skip
    summary = {
        "what": "OOF",
        "n_images": 5,
        "n_classes": 2,
        "accuracy": 0.8,
        "log_loss": 0.5,
        "pictures": "from x",
    }
    page = error_analysis_page(summary, per_class, pairs, worst, {0: [EVIL, "c"]}, {"img1": JPEG},
                               {"img1": "train/b/img1.jpg"})  # fmt: skip
    assert "<b>" not in page and "&lt;b&gt;현대 &amp; co&lt;/b&gt;" in page
    for section in ("Most confused pairs", "Per class", "Worst-scored images", "multi-class groups"):
        assert section in page
    assert page.count("data:image/jpeg;base64,") == 2  # the pair's example and the worst image
    assert "fg-missing" in page  # img2, the predicted class's reference, has no thumbnail: a grey box
    assert "title='train/b/img1.jpg'" in page and "1 mistakes" in page
