"""Open an HTML page in headless Chromium (flags from NOTES.md) and read back its DOM."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


# Collects script errors and console.error calls into an attribute that --dump-dom shows.
ERROR_COLLECTOR = (
    "<script>(function(){var h=document.documentElement;function note(m){"
    "h.setAttribute('data-js-errors',(h.getAttribute('data-js-errors')||'')+m+'|');}"
    "window.addEventListener('error',function(e){note(e.message);});"
    "var ce=console.error;console.error=function(){note([].join.call(arguments,' '));"
    "return ce.apply(console,arguments);};})();</script>"
)


def open_in_chromium(
    chromium: str, html: Path, tmp: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Chromium headless with no network features and a fresh profile (flags from NOTES.md)."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000", *extra, html.resolve().as_uri(),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def dump_dom(chromium: str, report: Path, tmp: Path) -> str:
    """The DOM after the page's scripts ran, with an error collector injected first."""
    probe = tmp / f"probe-{report.name}"
    probe.write_text(report.read_text().replace("<head>", "<head>" + ERROR_COLLECTOR, 1))
    result = open_in_chromium(chromium, probe, tmp, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]
    return result.stdout


def assert_clean(dom: str) -> None:
    """The page's script finished, nothing raised or logged an error, no payload ran."""
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None
    assert "data-report-ready" in root.group(0), "the report's script did not finish"
    assert "data-js-errors" not in root.group(0), root.group(0)
    assert "data-pwned" not in root.group(0), root.group(0)
