"""Render a report.html in headless Chromium and fail on a broken image, a console error or a
figure without axis labels (issue 13 item 16).

    python benchmarks/check_report.py runs/demo/report.html [--screenshot shot.png]

The page is loaded from a temporary copy that has a `<base>` pointing at the report's folder and a
small script that records, once the page has loaded, every image that did not decode, every
console error and every failed resource. Chromium prints the resulting DOM (`--dump-dom`); its own
console log (`--enable-logging=stderr`) is read too. Figures are checked in the files themselves:
every image not marked `data-kind="photo"` is a plot and its PNG must carry its axis labels
(`structvpr.report.figures.save_plot` writes them). The report folder is not modified.
Exit status: 0 all checks passed, 1 a check failed, 2 Chromium is not installed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
RESULT_ID = "structvpr-report-check"

# Runs first in <head>: collects console errors, script errors and failed resources, then on load
# lists the images that did not decode and writes everything as JSON into the page.
_PROBE = (
    """<script>
(function () {
  var problems = [];
  var originalError = console.error;
  console.error = function () {
    problems.push("console error: " + Array.prototype.join.call(arguments, " "));
    originalError.apply(console, arguments);
  };
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    if (target.tagName) {
      problems.push("failed to load " + target.tagName.toLowerCase() + ": " + (target.src || target.href));
    } else {
      problems.push("script error: " + event.message);
    }
  }, true);
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
    broken.forEach(function (img) { problems.push("broken image: " + img.getAttribute("src")); });
    var out = document.createElement("pre");
    out.id = "RESULT_ID";
    out.textContent = JSON.stringify({images: images.length, problems: problems});
    document.body.appendChild(out);
  });
})();
</script>"""
).replace("RESULT_ID", RESULT_ID)


class _Images(HTMLParser):
    """(src, figure kind) of every <img>; the kind of the enclosing <figure>, or '' outside one."""

    def __init__(self) -> None:
        super().__init__()
        self.kind_stack: list[str] = []
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure":
            self.kind_stack.append(values.get("data-kind") or "")
        elif tag == "img":
            self.images.append((values.get("src") or "", self.kind_stack[-1] if self.kind_stack else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self.kind_stack:
            self.kind_stack.pop()


def find_chromium() -> str | None:
    """Path of an installed Chromium / Chrome, or None."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def unlabelled_plots(report: Path) -> list[str]:
    """Problems with the plots of `report`: every image not marked as a photo must be a PNG whose
    text chunks carry non-empty x and y axis labels."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from structvpr.report.figures import axis_labels

    parser = _Images()
    parser.feed(report.read_text(encoding="utf-8"))
    problems = []
    for src, kind in parser.images:
        if kind == "photo":
            continue
        path = report.parent / html.unescape(src)
        if not path.is_file():
            continue  # reported by the browser as a broken image
        try:
            xlabel, ylabel = axis_labels(path)
        except OSError as error:
            problems.append(f"figure {src}: unreadable ({error})")
            continue
        if not xlabel or not ylabel:
            problems.append(f"figure {src}: no axis labels recorded (x {xlabel!r}, y {ylabel!r})")
    return problems


def render(report: Path, chromium: str, screenshot: Path | None, timeout: float = 120) -> tuple[dict, list[str]]:
    """Load the report in headless Chromium; returns (probe result, console lines from Chromium's log)."""
    page = report.read_text(encoding="utf-8")
    base = f'<base href="{report.parent.resolve().as_uri()}/">'
    probed = re.sub(r"<head>", "<head>" + base + _PROBE, page, count=1, flags=re.IGNORECASE)
    with tempfile.TemporaryDirectory(prefix="structvpr-report-check-") as scratch:
        copy = Path(scratch) / "report.html"
        copy.write_text(probed, encoding="utf-8")
        profile = Path(scratch) / "profile"  # a fresh user data dir: no state from other runs
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if screenshot is not None:
            shot = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400"]
            subprocess.run(
                [*shot, f"--screenshot={screenshot.resolve()}", report.resolve().as_uri()],
                capture_output=True,
                timeout=timeout,
            )
    match = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', result.stdout, flags=re.S)
    if not match:
        raise RuntimeError(f"Chromium did not render the page (exit {result.returncode}): {result.stderr[-1500:]}")
    probe = json.loads(html.unescape(match.group(1)))
    console = [
        line.strip()
        for line in result.stderr.splitlines()
        if "CONSOLE" in line and ("error" in line.lower() or "failed" in line.lower())
    ]
    return probe, console


def main() -> int:
    """Check one report; print each problem and a verdict. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html to check")
    parser.add_argument("--screenshot", type=Path, default=None, help="also save a 1200 px wide screenshot here")
    args = parser.parse_args()
    if not args.report.is_file():
        print(f"check_report: {args.report}: no such file", file=sys.stderr)
        return 1
    chromium = find_chromium()
    if chromium is None:
        print("check_report: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    probe, console = render(args.report, chromium, args.screenshot)
    problems = list(probe["problems"]) + [f"chromium log: {line}" for line in console] + unlabelled_plots(args.report)
    for problem in problems:
        print(f"FAIL {problem}")
    verdict = "FAILED" if problems else "passed"
    print(
        f"{args.report}: {probe['images']} images rendered in {Path(chromium).name}; "
        f"{len(problems)} problems: {verdict}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
