"""Components built once: a cached build, keyed by everything that shapes the artifact.

The world's reader is one (lit_knowledge/methods/pretrain.py); a method may have its own parts (a memory
module, a compressor, a teacher). A `CachedBuild` is a kind ("readers"), a recipe (a dict of everything that
shapes the artifact) and a cache root. Its key is the recipe's hash, and it lives in `<root>/<kind>/<key>/`:

- **found or built**: `ensure(build)` returns the directory, calling `build(self)` only when no finished
  artifact is there (or shipped in the repository under the same key, every file matching its manifest);
- **atomic**: `publish` writes into a temporary directory and renames it, so a half-written artifact is
  never picked up; the record file (`record`, e.g. reader.json) marks it finished;
- **resumable, with progress**: `fit` trains a LightningModule with one progress bar named for its phase,
  checkpoints it into `<key>.partial/` when a preemption notice arrives (then raises `Preempted`), and goes
  on from the newest checkpoint there when the requeued job builds it again;
- **one builder**: in a multi-process launch only global rank zero builds; the other ranks wait for the record;
- **never in a dry run**: inside `without_building()` (`train --dry-run`), `ensure` returns None instead of
  building, and the caller stands in an untrained part.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lit_knowledge.config import config_hash
from lit_knowledge.run import global_rank

MANIFEST = "manifest.json"
_building = [True]


@contextmanager
def without_building():
    """Within this block `CachedBuild.ensure` builds nothing: it returns None for an artifact not built yet."""
    _building.append(False)
    try:
        yield
    finally:
        _building.pop()


def building() -> bool:
    """False inside `without_building()` (a dry run): parts not built yet are stood in for, never built."""
    return _building[-1]


def cache_root(cfg) -> Path:
    """Where cached builds live: $LIT_KNOWLEDGE_CACHE, else `run.cache_dir` (the one rule, in models/provision.py)."""
    from lit_knowledge.models.provision import cache_root as root

    return root(cfg.run.cache_dir)


def keyed_as_before(recipe: dict, value_before: dict) -> dict:
    """`recipe` without each field that holds the value builds had before the field existed (`value_before`), so
    adding an option to a recipe keeps the cache keys of everything built without it."""
    return {k: v for k, v in recipe.items() if k not in value_before or v != value_before[k]}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class CachedBuild:
    kind: str  # the cache's sub-directory, e.g. "readers"
    recipe: dict  # everything that shapes the artifact: a change of any value is another artifact
    root: Path  # the cache root (`cache_root(cfg)`)
    record: str = "build.json"  # the file that marks a finished artifact (its report and key)
    shipped_root: Path | None = None  # artifacts shipped in the repository, `<shipped_root>/<key>/`, if any

    @property
    def key(self) -> str:
        return config_hash(self.recipe)

    @property
    def path(self) -> Path:
        return self.root / self.kind / self.key

    @property
    def partial(self) -> Path:
        """Where an unfinished build keeps its checkpoints."""
        return self.path.with_name(self.key + ".partial")

    # ------------------------------------------------------------------------------ finding

    def shipped(self) -> Path | None:
        """The shipped artifact of this key, when every file matches the hash its manifest gives."""
        if self.shipped_root is None:
            return None
        path = self.shipped_root / self.key
        if not (path / MANIFEST).is_file():
            return None
        files = json.loads((path / MANIFEST).read_text())["files"]
        changed = [n for n, digest in files.items() if not (path / n).is_file() or file_sha256(path / n) != digest]
        if changed:
            print(f"lit_knowledge: the shipped files in {path} do not match their manifest ({', '.join(changed)}); "
                  "using or building a cached copy instead", file=sys.stderr)
            return None
        return path

    def find(self) -> Path | None:
        """The finished artifact if there is one: the shipped one, else the cached one."""
        shipped = self.shipped()
        if shipped is not None:
            return shipped
        return self.path if (self.path / self.record).exists() else None

    def ensure(self, build: Callable[["CachedBuild"], object]) -> Path | None:
        """The artifact's directory, built first by `build(self)` when it is not there yet (None inside
        `without_building()`)."""
        found = self.find()
        if found is not None:
            return found
        if not building():
            return None
        if global_rank() != 0:  # rank zero builds; the other ranks of the launch wait for its record
            while not (self.path / self.record).exists():
                time.sleep(5)
            return self.path
        build(self)
        if not (self.path / self.record).exists():
            raise RuntimeError(f"the build of {self.path} returned without publishing it")
        return self.path

    # ------------------------------------------------------------------------------ building

    def checkpoint_to_resume(self) -> tuple[int, str] | None:
        """(step, path) of the newest checkpoint an interrupted build left, or None."""
        from lit_knowledge.run import checkpoint_step

        saved = sorted((s, str(p)) for p in self.partial.glob("hpc_ckpt_*.ckpt") if (s := checkpoint_step(p)) is not None)
        return saved[-1] if saved else None

    def fit(self, module, max_steps: int, trainer_cfg, what: str):
        """Train `module` for `max_steps` (resuming an interrupted build), one progress bar named `module.phase`.

        A preemption notice checkpoints the fit into `partial` and raises `Preempted` (the job is requeued).
        """
        import lightning as L
        import torch
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        from lit_knowledge.console import PhaseBar, quiet_libraries
        from lit_knowledge.preemption import Preempted
        from lit_knowledge.requeue import RequeueOnSignal

        resume = self.checkpoint_to_resume()
        quiet_libraries()
        requeue = RequeueOnSignal(self.partial)
        bar = [PhaseBar(module.phase)] if trainer_cfg.enable_progress_bar else []
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            trainer = L.Trainer(max_steps=max_steps, accelerator=trainer_cfg.accelerator, devices=1, logger=False,
                                enable_checkpointing=False, enable_model_summary=False,
                                enable_progress_bar=trainer_cfg.enable_progress_bar,
                                gradient_clip_val=trainer_cfg.gradient_clip_val, callbacks=[requeue, *bar],
                                plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])
            self.partial.mkdir(parents=True, exist_ok=True)
            trainer.fit(module, datamodule=module.datamodule(), ckpt_path=resume[1] if resume else None)
        if requeue.requeued:
            raise Preempted(what, saved=f"{what} checkpointed at step {trainer.global_step} in {self.partial}",
                            requeued=True)
        return trainer

    def train(self, make_module: Callable[[], object], max_steps: int, trainer_cfg, what: str, seed: int) -> Path:
        """Train the module `make_module()` returns (built under `seed`) for `max_steps`, going on from an
        interrupted build's checkpoint, then publish it (`module.save(directory)`, `module.report`); its directory."""
        import sys

        import torch

        resume = self.checkpoint_to_resume()
        print(f"lit_knowledge: {what} ({max_steps} steps{f', going on from step {resume[0]}' if resume else ''}); "
              f"it is cached in {self.path}", file=sys.stderr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = make_module()
        self.fit(module, max_steps, trainer_cfg, what)
        self.publish(module.save, module.report)
        self.clean()
        return self.path

    def publish(self, write: Callable[[Path], None], report: dict) -> Path:
        """Write the artifact (`write(directory)`) and its record atomically, then drop the partial directory."""
        final = self.path
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        (tmp / self.record).write_text(json.dumps({"report": report, "key": self.key}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def clean(self) -> None:
        """Forget an interrupted build's checkpoints (after the artifact is published)."""
        shutil.rmtree(self.partial, ignore_errors=True)
