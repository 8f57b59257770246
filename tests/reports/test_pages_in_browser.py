"""Every page the pipeline writes opens in a real browser (headless Chromium) with a body and no JavaScript or
console error, and its tables turn sortable and paged (the inline script ran).

The pages come from a small synthetic run of the steps (tests.support.synthetic_run: preprocess, regroup,
calibrate, ensemble and a member's page, no training). Skipped where Debian's chromium is not installed;
`make screenshots` renders the same pages, at 396 classes, into docs/screenshots/.
"""

from __future__ import annotations

import pytest

from tests.support.browser import INSTALL_HINT, check_page, chromium, dom

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason=f"chromium is not installed ({INSTALL_HINT})"),
]
PAGES = ["preprocess", "train", "regroup", "calibrate", "ensemble"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from tests.support.synthetic_run import synthetic_pages

    return synthetic_pages(tmp_path_factory.mktemp("pages"), n_classes=24, n_per_class=12, folds=3)


@pytest.mark.parametrize("name", PAGES)
def test_page_opens_without_errors(pages, name):
    assert check_page(pages[name]) == []


@pytest.mark.parametrize("name", ["preprocess", "regroup", "ensemble"])
def test_tables_become_sortable_filterable_and_paged(pages, name):
    shown = dom(pages[name])
    assert 'class="fg-pager"' in shown and 'class="fg-sort"' in shown and "filter rows" in shown


def test_the_check_catches_a_script_error_and_an_empty_page(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!doctype html><html><body><p>text</p><script>noSuchFunction();</script></body></html>"
    )
    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><html><body><script>var x = 1;</script></body></html>")
    assert any("Uncaught ReferenceError" in p for p in check_page(broken))
    assert any("empty body" in p for p in check_page(empty))
