"""Run directories: where a run keeps its config, metadata, checkpoints and results.

    <run.root>/<run.experiment>/<run.name>/
        config.yaml       the resolved config
        run_meta.json     git sha, config hash, W&B run id, start/end time, status, SLURM job ids
        checkpoints/      Lightning checkpoints (last.ckpt, periodic ones)
        results.json      metrics, per-step curves (written by the evaluation protocol)
        results.md        the same as tables
        logs/             CSV or W&B files

The run name is `run.name` when set, else `<method>-<hash of the config>`: the same command always
finds the same directory, which is what `--resume auto` relies on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lit_knowledge.config import config_hash, identity, schema_defaults, to_yaml
from lit_knowledge.errors import UserError, check_writable_dir


def global_rank() -> int:
    """This process's rank before any Trainer exists: SLURM's task id, torchrun's RANK, or Lightning's
    LOCAL_RANK for the processes its launcher starts; 0 for a single process."""
    for var in ("SLURM_PROCID", "RANK", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def run_name(cfg: DictConfig) -> str:
    return cfg.run.name or f"{cfg.method.name}-{config_hash(identity(cfg), 8)}"


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _diff(old: dict, new: dict, defaults: dict | None = None, prefix: str = "") -> list[str]:
    """The keys whose values differ, as 'key: old -> new'. A key the old config lacks (added to the schema since
    it was written) counts only when the new value is not that key's default (`defaults`, the schema's)."""
    out, defaults = [], defaults or {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        default = defaults.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, default if isinstance(default, dict) else {}, f"{prefix}{key}.")
        elif a == "<unset>" and b == default and b != "<unset>":
            continue
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def config_changes(old: DictConfig, new: DictConfig) -> list[str]:
    """How `new` differs from the config a run or checkpoint was made with (`old`); [] when it is the same run."""
    return _diff(identity(old), identity(new), schema_defaults(str(new.method.name)))


class RunDir:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.writer = global_rank() == 0  # only rank zero writes the directory's files
        self.name = run_name(cfg)
        self.path = Path(cfg.run.root) / cfg.run.experiment / self.name
        self.checkpoints = self.path / "checkpoints"
        self.meta_path = self.path / "run_meta.json"
        self.meta: dict = {}
        self.checked: tuple[str, str | None] | None = None  # (resume, its checkpoint) once `check` passed
        self.corrupt: list[Path] = []  # unreadable checkpoints `check` found; `start` sets them aside

    # ------------------------------------------------------------------------------------------ lifecycle

    def check(self, resume: str = "auto") -> str | None:
        """Everything `start` checks, writing nothing: the directory can be written, its config matches, the
        checkpoint to resume from is readable. Returns that checkpoint (or None).

        A run directory made with a different config is never reused silently: the changed keys are named.
        """
        if self.writer:
            check_writable_dir(self.path, f"run.root={self.cfg.run.root}")
        old_config = self.path / "config.yaml"
        if old_config.exists() and resume != "never":
            changes = config_changes(OmegaConf.load(old_config), self.cfg)
            if changes:
                raise UserError(
                    f"run directory {self.path} holds a run with a different config ({'; '.join(changes[:3])}); "
                    "set run.name to start a new run, or pass --resume never to overwrite it"
                )
        self.checked = (resume, self.resume_checkpoint(resume))
        return self.checked[1]

    def completed_results(self, resume: str = "auto") -> dict | None:
        """The results of this directory's run when it completed (`--resume auto` only), else None.

        A completed run is not run again: resuming it would only repeat its evaluation and overwrite its wall
        time and peak memory with the repeat's. `--resume never` runs it afresh.
        """
        from lit_knowledge.evaluation.results import read_results

        if resume != "auto" or self._read_meta().get("status") != "completed":
            return None
        try:
            results = read_results(self.path)
        except (OSError, json.JSONDecodeError):
            return None  # no readable results: the run resumes from its checkpoint and writes them again
        return {**results, "run_dir": str(self.path)}

    def start(self, resume: str = "auto") -> str | None:
        """Create or reopen the directory; return the checkpoint to resume from (or None).

        Runs `check` first unless it already ran for this `resume`: nothing is written before every check passed.
        """
        ckpt = self.checked[1] if self.checked and self.checked[0] == resume else self.check(resume)
        if not self.writer:  # other ranks read what rank zero wrote (the W&B id) and resume the same checkpoint
            self.meta = self._read_meta()
            return ckpt
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        if resume == "never":
            for old_ckpt in [*self.checkpoints.glob("*.ckpt"), *self.path.glob("hpc_ckpt_*.ckpt")]:
                old_ckpt.unlink()
        for bad in self.corrupt:  # out of the candidates' way: later resumes need not warn again
            os.replace(bad, bad.with_name(bad.name + ".corrupt"))
        self.meta = self._read_meta() if resume != "never" else {}
        self.meta.setdefault("wandb_run_id", uuid.uuid4().hex[:12])
        self.meta.setdefault("start_time", now())
        self.meta.update(
            {"run": self.name, "experiment": self.cfg.run.experiment, "method": self.cfg.method.name,
             "git_sha": git_sha(), "config_hash": config_hash(identity(self.cfg)), "status": "running",
             "end_time": None}
        )
        job = os.environ.get("SLURM_JOB_ID")
        if job:
            jobs = self.meta.setdefault("slurm_job_ids", [])
            if job not in jobs:
                jobs.append(job)
        write_atomic(self.path / "config.yaml", to_yaml(self.cfg))
        self.save_meta()
        return ckpt

    def finish(self, status: str = "completed") -> None:
        if not self.writer:
            return
        if status in ("completed", "stopped"):
            self.drop_superseded_hpc_checkpoints()
        self.meta.update({"status": status, "end_time": now()})
        self.save_meta()

    def drop_superseded_hpc_checkpoints(self) -> None:
        """Delete the requeue checkpoints (hpc_ckpt_*) that last.ckpt, written at the end of the fit, supersedes."""
        last = checkpoint_step(self.checkpoints / "last.ckpt") if (self.checkpoints / "last.ckpt").exists() else None
        if last is None:
            return
        for path in self.path.glob("hpc_ckpt_*.ckpt"):
            step = checkpoint_step(path)
            if step is None or step <= last:
                path.unlink()

    def save_meta(self) -> None:
        write_atomic(self.meta_path, json.dumps(self.meta, indent=2))

    def _read_meta(self) -> dict:
        if not self.meta_path.exists():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{self.meta_path} is not valid JSON; fix or delete it (or pass --resume never)") from None

    # ------------------------------------------------------------------------------------------ checkpoints

    def resume_checkpoint(self, resume: str) -> str | None:
        """The checkpoint to resume from: an explicit path (checked), or with 'auto' the newest readable one.

        Candidates are checkpoints/*.ckpt (periodic and last) and the hpc_ckpt_*.ckpt that Lightning's
        SLURM requeue writes into the run directory; the highest global step wins. A truncated or corrupt
        checkpoint is skipped with a warning naming it, so 'auto' falls back to the previous good one.
        """
        if resume == "never":
            return None
        if resume != "auto":
            if not Path(resume).is_file():
                raise UserError(f"checkpoint {resume} not found; pass an existing .ckpt file or --resume auto")
            meta = read_checkpoint(resume)
            if meta is None:
                raise UserError(f"checkpoint {resume} is truncated or corrupt; pass another one or --resume auto")
            if meta[1] is not None:
                changes = config_changes(OmegaConf.create(meta[1]), self.cfg)
                if changes:
                    raise UserError(f"checkpoint {resume} was made with a different config ({'; '.join(changes[:3])}); "
                                    "resume it with its own config (its run directory's config.yaml)")
            return resume
        candidates = list(self.checkpoints.glob("*.ckpt")) + list(self.path.glob("hpc_ckpt_*.ckpt"))
        readable = []
        self.corrupt = []
        for path in candidates:
            step = checkpoint_step(path)
            if step is None:
                print(f"lit_knowledge: skipping checkpoint {path}: truncated or corrupt (the run sets it aside as "
                      f"{path.name}.corrupt)", file=sys.stderr)
                self.corrupt.append(path)
            else:
                readable.append((step, path.stat().st_mtime, str(path)))
        return max(readable)[2] if readable else None


def read_checkpoint(path: str | Path) -> tuple[int, dict | None] | None:
    """(global step, the config it was made with or None) of a Lightning checkpoint; None when unreadable.

    The file is memory-mapped, so the weights are not read: cheap even for a large model.
    """
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        return int(ckpt["global_step"]), ckpt.get("lit_knowledge", {}).get("config")
    except Exception:  # truncated zip, bad pickle, missing key: all mean "not usable"
        return None


def resume_summary(path: str | Path) -> str:
    """Where a checkpoint stands: its global step and, for a stream run, its position in the batch plan."""
    import torch

    ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    state = ckpt.get("lit_knowledge", {})
    where = f"global step {int(ckpt['global_step'])}"
    if "batches_done" in state:
        where += (f", stream batch {state['batches_done']} ({len(state.get('history', []))} stream steps "
                  "evaluated)")
    return where


def checkpoint_step(path: str | Path) -> int | None:
    meta = read_checkpoint(path)
    return None if meta is None else meta[0]
