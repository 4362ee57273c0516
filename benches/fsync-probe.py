"""What one group commit's segment fdatasync costs on this disk, three ways.

    python3 benches/fsync-probe.py [DIR]      # default: a temp dir beside the repo's target/

Writes chunks of 400 KiB (one scenario-1 group: 4 batches x 100 x 1 KiB) to a
file and times the fdatasync after each, three ways: appended to a growing
file (what segments do today); written over a file zero-filled and synced
beforehand; written into a posix_fallocate'd range. Each round runs the three
in a random order; the first 10 syncs of each run are warm-up and left out.
Prints p50/p90/mean per round. The zero fill itself is not timed: it writes
every byte twice, once ahead of time. DIR must be on the disk the broker's
data dir uses (a tmpfs /tmp measures nothing).

On ext4 an append's fdatasync must also commit the file's new size through
the journal; an overwrite of written blocks need not; an fallocate'd range
still converts its extents from unwritten to written.
"""
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

CHUNK = 400 * 1024
SYNCS = 150
WARMUP = 10
ROUNDS = 3


def prepare_append(fd, size):
    """Nothing: the file grows with each write."""


def prepare_prezero(fd, size):
    zeros = bytes(4 << 20)
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros, offset)
    os.fsync(fd)


def prepare_fallocate(fd, size):
    os.posix_fallocate(fd, 0, size)
    os.fsync(fd)


def timed_syncs(path, prepare):
    """Latencies in ms of SYNCS write + fdatasync pairs after `prepare`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        prepare(fd, (SYNCS + WARMUP) * CHUNK)
        data = os.urandom(CHUNK)
        latencies = []
        for i in range(SYNCS + WARMUP):
            os.pwrite(fd, data, i * CHUNK)
            start = time.perf_counter()
            os.fdatasync(fd)
            if i >= WARMUP:
                latencies.append((time.perf_counter() - start) * 1e3)
        return sorted(latencies)
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    default_parent = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target")
    os.makedirs(default_parent, exist_ok=True)
    given = len(sys.argv) > 1
    directory = sys.argv[1] if given else tempfile.mkdtemp(prefix="fsync-probe-", dir=default_parent)
    os.makedirs(directory, exist_ok=True)
    ways = [("append", prepare_append), ("prezero", prepare_prezero), ("fallocate", prepare_fallocate)]
    try:
        for round_no in range(ROUNDS):
            random.shuffle(ways)
            for name, prepare in ways:
                lat = timed_syncs(os.path.join(directory, f"{name}.seg"), prepare)
                print(f"round {round_no} {name:9s} p50 {statistics.median(lat):.3f} ms  "
                      f"p90 {lat[int(len(lat) * 0.9)]:.3f}  mean {statistics.mean(lat):.3f}", flush=True)
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
