r"""A PNG of a diagnosis page as a browser shows it (for docs/report.png), with Debian's Chromium, headless.

    .venv/bin/python scripts/report_screenshot.py --report=demo_out/report/index.html --out=docs/report.png

(scripts/demo.sh writes demo_out/report/index.html; scripts/test.sh installs Chromium when it is missing.)
"""

from __future__ import annotations

import argparse
import os


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="the index.html of python -m tools.report")
    parser.add_argument("--out", required=True, help="where the PNG goes")
    parser.add_argument("--height", type=int, default=2400, help="pixels of the page shown, from its top")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    url = "file://" + os.path.abspath(args.report)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1240, "height": args.height})
        page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.goto(url)
        page.screenshot(path=args.out)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
