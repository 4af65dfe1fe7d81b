"""A command's wall time and peak memory as a fresh process: the one timer of the benchmarks that
compare whole commands (predict_bench.py, scale_bench.py)."""

import subprocess
import sys
from pathlib import Path

# one command in a process of its own; its peak memory is the larger of getrusage's (the largest
# process it waited for) and the sum of its process tree's RSS, read from /proc every 0.1 s (a
# Spark build's JVM is a grandchild)
WRAP = """
import os, resource, subprocess, sys, time
def tree(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total
start, peak = time.perf_counter(), 0
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
while proc.poll() is None:
    peak = max(peak, tree(proc.pid))
    time.sleep(0.1)
if proc.returncode:
    sys.exit(proc.returncode)
maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(time.perf_counter() - start, max(peak, maxrss) / 2**20)
"""


def timed(argv: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Seconds and peak memory (MB) of a fresh process running argv."""
    out = subprocess.run([sys.executable, "-c", WRAP, *argv], check=True, capture_output=True,
                         text=True, cwd=cwd).stdout.split()
    return float(out[0]), float(out[1])
