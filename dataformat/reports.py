"""The small per-video files beside the two datasets (README, "Output format"): which rows each keeps, in
which order (so that reruns give identical bytes), and its text. Every writer (the Beam job, the chunked
merge) renders them here; readers use `dataformat.files.read_jsonl` / `read_csv`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Callable, Iterable, Optional

from dataformat.schema import SPLITS_CSV_COLUMNS


def render_jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def render_splits_csv(rows: Iterable[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SPLITS_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@dataclasses.dataclass(frozen=True)
class Report:
    """A small per-video file: which rows it keeps, their order, its text."""

    render: Callable[[list], str]
    sort_by: str = "video_id"
    keep: Optional[Callable[[dict], bool]] = None

    def text(self, rows: Iterable[dict]) -> str:
        kept = [r for r in rows if self.keep is None or self.keep(r)]
        return self.render(sorted(kept, key=lambda r: r[self.sort_by]))


# failures.jsonl: one JSON object per failed input with `path`, `video_id` and `error`.
FAILURES = Report(render_jsonl, sort_by="path")
# warnings.jsonl: videos kept with a warning (e.g. decoding stopped early).
WARNINGS = Report(lambda rows: render_jsonl({"video_id": r["video_id"], "warning": r["warning"]} for r in rows),
                  keep=lambda r: bool(r.get("warning")))
# splits.csv: every input video with its group, label, split, sampled frames and status.
SPLITS = Report(render_splits_csv)
# Rows {video_id, error} sorted by video: e.g. the videos an extraction refuses to write (never published).
VIDEO_ERRORS = Report(render_jsonl)
