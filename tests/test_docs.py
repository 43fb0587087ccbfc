"""The repository documents itself: its reStructuredText renders cleanly and cites only itself."""

from __future__ import annotations

import io
import re
from pathlib import Path

import docutils.core
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    [ROOT / "README.rst", *ROOT.glob("docs/*.rst"), *ROOT.glob("bench/*.rst")],
)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_renders_without_warnings(path: Path) -> None:
    warnings = io.StringIO()
    docutils.core.publish_doctree(
        path.read_text(encoding="utf-8"),
        source_path=str(path),
        settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5},
    )
    assert warnings.getvalue() == ""


def test_no_reference_to_a_document_or_tracker_outside_the_repository() -> None:
    outside = re.compile(r"SPEC\.md|SPEC §|STYLE\.md|\b[Ii]ssue #?[0-9]+")
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix not in {".py", ".rst", ".md", ".toml", ".cfg", ".js", ".html", ".in", ".example"}:
            continue
        if any(part.startswith(".") or part in {"build", "uac_registrant.egg-info"} for part in path.parts):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if outside.search(line) and path != Path(__file__).resolve():
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found == []
