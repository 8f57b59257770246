"""The repository carries its own design, and its documents stay true to the tree.

- docs/code-map.md names every package and module under src/finegrain/ by its path, and every repository path
  a page under docs/ names exists (README.md: every path under src/, tests/, components/, bench/, configs/, docs/);
- README.md, the pages under docs/ and the Python sources cite only markdown files that are in the repository
  (or pages a step writes, such as report.md), and every relative link and its #anchor resolve;
- docs/README.md indexes every page under docs/, and README.md's Tests section names every test file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

SRC = REPO / "src" / "finegrain"
DOCS = REPO / "docs"
CODE_MAP = DOCS / "code-map.md"
PAGES = sorted(DOCS.rglob("*.md"))
MARKDOWN = [REPO / "README.md", *PAGES]
PYTHON_DIRS = ("src", "components", "pipelines", "bench")

# A repository path, as the pages write one: in backticks, from a top-level directory, no placeholder.
TOP_DIRS = ("src", "components", "pipelines", "images", "manifests", "bench", "tests", "configs", "scripts", "docs",
            "mk", ".github")  # fmt: skip
README_CHECKED = ("src", "tests", "components", "bench", "configs", "docs")
CODE_SPAN = re.compile(r"`([^`\s]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
MD_NAME = re.compile(r"(?<![\w/.-])([\w./-]*\.md)\b")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
LITERAL_MD = re.compile(r"""["']([\w-]+\.md)["']""")


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _repo_paths(text: str) -> set[str]:
    """Backticked tokens that name a path in the repository (placeholders like `<step>` and globs left out)."""
    found = set()
    for token in CODE_SPAN.findall(text):
        token = token.rstrip(".,;:")
        if token.split("/", 1)[0] in TOP_DIRS and "/" in token and not re.search(r"[<>*{}$]", token):
            found.add(token)
    return found


def _modules() -> set[str]:
    """Every module (a .py other than __init__.py) and every package (as `dir/`) under src/finegrain/."""
    names = {_rel(p) for p in SRC.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts}
    names |= {_rel(p.parent) + "/" for p in SRC.rglob("__init__.py") if "__pycache__" not in p.parts}
    return names


def _step_pages() -> set[str]:
    """The markdown pages steps write (report.md, ...): named in the docs, but outputs, not repository files."""
    sources = [*(SRC / "steps").glob("*.py"), SRC / "orchestration" / "kfp_adapter.py"]
    return {name for path in sources for name in LITERAL_MD.findall(path.read_text(encoding="utf-8"))}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _citing_files() -> list[Path]:
    sources = [p for d in PYTHON_DIRS for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts]
    return [*MARKDOWN, *sorted(sources)]


def test_the_docs_pages_exist():
    expected = {"README.md", "design.md", "data-flow.md", "performance.md", "code-map.md"}
    assert expected <= {p.name for p in PAGES}


def test_code_map_names_every_module_and_package():
    named = _repo_paths(CODE_MAP.read_text(encoding="utf-8"))
    missing = sorted(_modules() - named)
    assert not missing, f"docs/code-map.md does not name: {missing}"


@pytest.mark.parametrize("page", MARKDOWN, ids=_rel)
def test_repository_paths_named_in_the_docs_exist(page):
    names = _repo_paths(page.read_text(encoding="utf-8"))
    if page.parent != DOCS:  # README.md also names files a user creates or compiles (manifests/secrets.env)
        names = {n for n in names if n.split("/", 1)[0] in README_CHECKED}
    missing = sorted(n for n in names if not (REPO / n.rstrip("/")).exists())
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"


def test_markdown_files_cited_are_in_the_repository():
    pages = _step_pages()
    assert {"report.md", "submission_check.md", "registration.md"} <= pages
    bad = []
    for path in _citing_files():
        text = URL.sub("", path.read_text(encoding="utf-8"))
        for name in set(MD_NAME.findall(text)):
            if Path(name).name in pages:
                continue
            if not ((path.parent / name).is_file() or (REPO / name).is_file()):
                bad.append(f"{_rel(path)}: {name}")
    assert not bad, "cited markdown files that are not in the repository:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("page", MARKDOWN, ids=_rel)
def test_relative_links_and_anchors_resolve(page):
    bad = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if URL.match(target) or target.startswith("mailto:"):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            bad.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, f"{_rel(page)}: " + "; ".join(bad)


def test_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = {(DOCS / t.partition("#")[0]).resolve() for t in LINK.findall(index)}
    missing = [_rel(p) for p in PAGES if p.name != "README.md" and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link: {missing}"


def test_readme_tests_section_names_every_test_file():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Tests\n") :]
    section = section[: section.find("\n## ", 1)]
    named = _repo_paths(section)
    missing = sorted(_rel(p) for p in (REPO / "tests").rglob("test_*.py") if _rel(p) not in named)
    assert not missing, f"README.md's Tests section does not name: {missing}"
