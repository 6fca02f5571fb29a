"""User-facing errors: one clear line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import difflib
import functools
import sys
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
