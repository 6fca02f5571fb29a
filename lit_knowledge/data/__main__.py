"""Look at data sources from the command line.

    python -m lit_knowledge.data sources              # the registered data sources
    python -m lit_knowledge.data stats SOURCE PATH    # JSON counts of the stream SOURCE makes of PATH

PATH may be `-` for a source that reads no file (the synthetic `world`). A mistake (unknown
source, missing or malformed file) prints `error: <message>` on one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

import lit_knowledge.data.edit_readers  # noqa: F401  (registers the edit sources)
import lit_knowledge.data.readers  # noqa: F401  (registers the real-data sources)
import lit_knowledge.data.world  # noqa: F401  (registers the `world` sources)
from lit_knowledge.config import DataConfig
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.errors import cli_entry_point


def stats(source: str, path: str, docs_per_step: int) -> dict:
    """Build SOURCE's stream from PATH (default data settings otherwise) and count what is in it."""
    make_stream = SOURCES.get(source)
    data_cfg = OmegaConf.structured(DataConfig(source=source, path=None if path == "-" else path,
                                               docs_per_step=docs_per_step))
    stream = make_stream(data_cfg)
    counts = stream.counts()
    return {"source": source, "path": path, "documents": counts["documents"], "probes": counts["probes"],
            "edits": counts["edits"], "steps": counts["steps"], "background_probes": counts["background_probes"],
            "heldout_texts": len(stream.heldout_texts)}


@cli_entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sources", help="list the registered data sources")
    p = commands.add_parser("stats", help="print JSON counts of the stream a source makes of a file")
    p.add_argument("source", help="a data source name (see `sources`)")
    p.add_argument("path", help="the data file (`-` for a source that reads none)")
    p.add_argument("--docs-per-step", type=int, default=DataConfig.docs_per_step,
                   help="documents per stream step for document sources (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "sources":
        print("\n".join(SOURCES.names()))
    else:
        print(json.dumps(stats(args.source, args.path, args.docs_per_step)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
