"""The HTML page helpers: self-contained pages, every piece of text escaped, PNGs inlined."""

from __future__ import annotations

import base64

from finegrain.reports import html

SCRIPT = "<script>alert('x')</script>"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def test_page_escapes_the_title_and_keeps_the_body_html():
    text = html.page(f"run {SCRIPT} & co", "<p>body</p>")
    assert text.startswith("<!doctype html>") and text.endswith("</body></html>")
    assert "<script>" not in text
    assert "<title>run &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co</title>" in text
    assert "<p>body</p>" in text
    assert "<meta charset='utf-8'>" in text
    assert "src='http" not in text and "<link" not in text  # nothing fetched from elsewhere


def test_table_escapes_cells_and_headings_and_shows_values_as_given():
    rows = [{"member": SCRIPT, "nll": 0.123456, "n": 3}, {"member": "현대_차종 & <b>"}]
    text = html.table(rows, ["member", "nll", "n", "<th>"])
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<th>&lt;th&gt;</th>" in text
    assert "<td>0.123456</td><td>3</td>" in text
    assert "<td>현대_차종 &amp; &lt;b&gt;</td><td></td><td></td><td></td>" in text  # missing keys: empty
    assert text.count("<tr>") == 3


def test_empty_table_has_only_its_heading():
    assert html.table([], ["a", "b"]) == "<table><tr><th>a</th><th>b</th></tr></table>"


def test_paragraph_escapes():
    assert html.paragraph(SCRIPT) == "<p>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</p>"


def test_png_img_inlines_a_path_or_bytes_and_escapes_alt(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(PNG)
    from_path = html.png_img(path, "t-SNE")
    assert from_path == html.png_img(PNG, "t-SNE") == html.png_img(str(path), "t-SNE")
    data = from_path.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(data) == PNG
    quoted = html.png_img(PNG, "a' onerror='alert(1)")
    assert "onerror='" not in quoted and "a&#x27; onerror=&#x27;alert(1)" in quoted
