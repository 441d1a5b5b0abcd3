"""Writes the flag tables of docs/flags.md from the config dataclasses, where each setting is declared once.

    .venv/bin/python scripts/flag_tables.py           # rewrite docs/flags.md's tables
    .venv/bin/python scripts/flag_tables.py --check   # exit 1 if they are out of date (tests/test_settings.py)

A table sits between `<!-- flags: module.Class -->` and `<!-- /flags -->` lines.
"""

import argparse
import importlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402

FLAGS_DOC = ROOT / "docs" / "flags.md"
SECTION = re.compile(r"(<!-- flags: ([\w.]+)\.(\w+) -->\n)(.*?)(<!-- /flags -->)", re.S)


def render(text: str) -> str:
    """`text` with every flag table regenerated."""
    def table(match):
        config_cls = getattr(importlib.import_module(match[2]), match[3])
        return match[1] + settings.markdown_table(config_cls) + match[5]
    return SECTION.sub(table, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the tables are up to date")
    parser.add_argument("--file", default=str(FLAGS_DOC), help="the Markdown file holding the tables")
    args = parser.parse_args()
    path = pathlib.Path(args.file)
    old = path.read_text()
    if not SECTION.search(old):
        print(f"{path}: no '<!-- flags: module.Class -->' section", file=sys.stderr)
        return 1
    new = render(old)
    if args.check:
        if new != old:
            print(f"{path}: the flag tables are out of date; run scripts/flag_tables.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
