"""The CSV metrics log of a run that is resumed keeps the rows of its earlier parts.

Lightning's CSV writer deletes `logs/metrics.csv` when it starts, so a run resumed after a crash or a
requeue used to lose everything logged before. `ResumableCSVLogger` keeps the rows up to the global
step of the checkpoint it resumes from (later rows belong to work the crash lost: the resumed run logs
those steps again), rewrites them at once (so a second crash loses nothing either) and appends after them.
A run that starts from scratch (no checkpoint, or --resume never) starts a fresh file.
"""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _KeptHistoryWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_until: int | None):
        self.keep_until = keep_until
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv
        path = self.metrics_file_path
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)
        if self.keep_until is None:
            os.remove(path)
            return
        kept = [r for r in rows if _step(r) is not None and _step(r) <= self.keep_until]
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, path)
        self.metrics_keys = sorted(header)  # later saves append under the same header (or rewrite it with new keys)
        self.kept_rows = len(kept)


def _step(row: dict) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger whose metrics.csv keeps the rows up to `keep_until` (the resumed checkpoint's step)."""

    def __init__(self, *args, keep_until: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_until = keep_until

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptHistoryWriter(self.log_dir, self.keep_until)
        return self._experiment
