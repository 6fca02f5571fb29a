"""`make reader`: pretrain a reader afresh and ship it in the repository, `data/readers/<key>/`.

    python -m lit_knowledge.ship_reader [--config FILE ...] [key=value ...]

With no arguments it ships the default reader, the one every `model.name: reader` config with the default
world, model and pretraining settings uses (the quickstart's and the tests'). Beside the weights and the
tokenizer it writes `manifest.json`: the key, the recipe the key hashes, the reader's report (its bars), the
sha256 of every file, and what made it (command, commit, date, library versions, threads, seconds). Runs use
the shipped files only while every hash matches; any other reader is pretrained on first use and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from lit_knowledge.errors import cli_entry_point


def git_commit(repo: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ship(cfg, out_root: Path, seconds: float, cache_entry: Path, command: str = "make reader") -> Path:
    """Copy a freshly pretrained cache entry to `out_root/<key>/` with its manifest; the shipped directory."""
    import torch
    import transformers

    from lit_knowledge.builds import MANIFEST, file_sha256
    from lit_knowledge.methods.pretrain import READER_REPORT, reader_key, reader_recipe

    key = reader_key(cfg)
    final = out_root / key
    tmp = out_root / f".{key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cache_entry, tmp)
    files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = {
        "key": key,
        "recipe": reader_recipe(cfg),
        "report": json.loads((tmp / READER_REPORT).read_text())["report"],
        "files": files,
        "made": {"command": command, "commit": git_commit(out_root), "date": date.today().isoformat(),
                 "torch": torch.__version__, "transformers": transformers.__version__,
                 "threads": torch.get_num_threads(), "seconds": round(seconds)},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


@cli_entry_point
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.ship_reader", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides (the reader's recipe: world, model.tiny, "
                                                     "pretrain, run.seed, data.max_length)")
    parser.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    parser.add_argument("--out", default=None, help="where readers are shipped (default: the repository's data/readers)")
    args = parser.parse_args(argv)

    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import SHIPPED_READERS, pretrain_reader

    cfg = load_config(args.config, args.overrides)
    out_root = Path(args.out) if args.out else SHIPPED_READERS
    out_root.mkdir(parents=True, exist_ok=True)
    # Pretrain into a cache of its own: never reuse (or overwrite) what a cache already holds under this key.
    before = os.environ.get("LIT_KNOWLEDGE_CACHE")
    with tempfile.TemporaryDirectory(prefix="lk_reader_") as cache:
        os.environ["LIT_KNOWLEDGE_CACHE"] = cache
        try:
            started = time.perf_counter()
            entry = pretrain_reader(cfg)
            shipped = ship(cfg, out_root, time.perf_counter() - started, entry)
        finally:
            if before is None:
                os.environ.pop("LIT_KNOWLEDGE_CACHE")
            else:
                os.environ["LIT_KNOWLEDGE_CACHE"] = before
    report = json.loads((shipped / "manifest.json").read_text())["report"]
    print(f"shipped {shipped}: in-context F1 {report['in_context_f1']:.3f}, closed-book {report['closed_book_stream_f1']:.3f}, "
          f"background {report['background_f1']:.3f}, bars {'met' if report['bars_met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
