"""The most memory a run held at once, for results.json's `peak_memory_bytes`.

On a GPU it is the most the device's tensors took (`torch.cuda.max_memory_allocated`). On a CPU it is the
process's peak resident set size, which also counts Python, the libraries and the data: Linux lets a process
reset that peak (writing 5 to /proc/self/clear_refs), so runs that follow one another in one process (a sweep)
each report their own. Where the reset is refused, the figure is the process's peak since it started, and
`peak_memory_scope` says so.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Start it before the run, read it after: `peak = PeakMemory(); ...; peak.bytes(), peak.scope`."""

    def __init__(self):
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.scope = "cuda_allocated"
            return
        try:
            CLEAR_REFS.write_text("5")
            self.scope = "cpu_rss_run"
        except OSError:
            self.scope = "cpu_rss_process"

    def bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated())
        return resident_peak_bytes()


def resident_peak_bytes() -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
