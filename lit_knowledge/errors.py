"""User-facing errors: one clear line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import difflib
import functools
import os
import sys
from pathlib import Path
from typing import Iterable


class UserError(Exception):
    """A mistake in the user's input (config, data file, checkpoint, command line).

    The entry points catch it and print `error: <message>` on one line, then exit with code 2.
    """

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def check_writable_dir(path: str | Path, what: str) -> None:
    """Raise a UserError unless `path` is a directory this process can write into, or could create.

    Nothing is created: the first existing ancestor must be a writable directory. `what` names the
    setting in the message (e.g. "run.root=runs").
    """
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is below {existing}, which is a file"
        raise UserError(f"{what}: {path} {where}, not a directory; give a directory path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: {existing} is not writable; give a directory you can write to")


def cli_entry_point(main):
    """Wrap a command's `main`: a UserError ends it with `error: <message>` on stderr and exit code 2."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code

    return run
