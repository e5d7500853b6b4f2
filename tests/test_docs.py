"""The documentation: the site builds strictly, the CLI reference is current, the README stays short.

The strict build (``mkdocs build --strict``) fails on a broken link or anchor, a page missing from
the nav, a docstring mkdocstrings cannot read, or an API reference to a module that is gone.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# Topic pages other branches are writing; the README links to them already. Until they exist, a
# missing one is tolerated here (and nothing in the built site links to them). Once one is merged,
# add it to the nav in mkdocs.yml and to index.md's table, and move it to TOPIC_PAGES.
TOPIC_PAGES = {
    "index.md",
    "install.md",
    "quickstart.md",
    "unet.md",
    "maskrcnn.md",
    "keypoints.md",
    "tensorrt.md",
    "openvino-int8.md",
    "large-images.md",
    "serving.md",
    "batch.md",
    "benchmarks.md",
    "artifact-format.md",
    "architecture.md",
    "cli.md",
    "api.md",
    "development.md",
    "backbones.md",
}


def _gen_cli_docs() -> ModuleType:
    """scripts/gen_cli_docs.py, imported from its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    """docs/cli.md equals what scripts/gen_cli_docs.py generates from today's parsers."""
    from segrt.cli import build_commands

    if not build_commands().has("train"):
        pytest.skip(
            "the training side's commands are not installed (pip install -e '.[train]'): "
            "docs/cli.md documents them, so it cannot be compared here"
        )
    expected = _gen_cli_docs().build_page()
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is out of date: run `python scripts/gen_cli_docs.py` and commit it"


def test_cli_reference_covers_every_command() -> None:
    """Each verb and nested verb of the parser has its own section in the generated page."""
    from segrt.cli import build_parser

    gen = _gen_cli_docs()
    page = gen.render(build_parser())
    paths = []

    def walk(prefix: str, parser: object) -> None:
        for name, _, sub in gen._subcommands(parser):
            paths.append(f"{prefix} {name}")
            walk(f"{prefix} {name}", sub)

    walk("segrt", build_parser())
    assert {"segrt predict", "segrt eval", "segrt info", "segrt serve", "segrt bench model"} <= set(paths)
    for path in paths:
        assert re.search(rf"^#+ `{re.escape(path)}`$", page, re.MULTILINE), f"no section for `{path}`"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds: no broken link or anchor, every page in the nav, the API reference reads."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' (the dev extra includes it)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    assert (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8").count("segrt.unet.predictor") > 0


def test_every_figure_is_on_a_page() -> None:
    """Every picture in docs/ is shown by a Markdown file under docs/ (no figure lost in the move)."""
    text = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    shown = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text))
    for picture in sorted(DOCS.glob("*.png")):
        assert picture.name in shown, f"docs/{picture.name} is not shown on any page"


def test_readme_is_short_and_links_every_topic_page() -> None:
    """README.md: at most 250 lines, `import segrt`, and a link to every topic page, each of which exists."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "import segrt" in text and "import sdk" not in text
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)(?:#[\w-]+)?\)", text))
    assert linked >= TOPIC_PAGES, f"README does not link {sorted(TOPIC_PAGES - linked)}"
    for page in linked:
        assert (DOCS / page).exists(), f"README links docs/{page}, which does not exist"
    for link in re.findall(r"\]\(((?!https?:|#)[^)\s#]+)", text):
        assert (ROOT / link).exists(), f"README links {link}, which does not exist"


def test_pages_name_each_other_by_link() -> None:
    """No page refers to another as plain text ("see the serving page"): the merge turned these into links."""
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for mention in re.findall(r"\bthe (?:large-images|TensorRT|serving|batch|install) page\b", text):
            pytest.fail(f"docs/{page.name} mentions {mention!r} in plain text: link the page instead")


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command (the fenced block under "2. Set up and run the tests") is the last line
    of `.ci/run`, so CI runs exactly what a new user is told to run."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"\*\*2\. Set up and run the tests\*\*.*?```bash\n(.+?)\n```", text, re.S)
    assert block is not None, "README has no test command under '2. Set up and run the tests'"
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert lines[-1] == block.group(1).strip()
