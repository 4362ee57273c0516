"""What one group commit's segment fdatasync costs on this disk, three ways.

    python3 benches/fsync-probe.py [DIR]      # default: a temp dir under /tmp

Writes 150 chunks of 400 KiB (one scenario-1 group: 4 batches x 100 x 1 KiB)
to a file and times the fdatasync after each: appended to a growing file (what
segments do today), written over a file zero-filled and synced beforehand,
and written into a posix_fallocate'd file. Three rounds, p50/p90/mean. On ext4
an append's fdatasync must also commit the file's new size; an overwrite of
written blocks need not, an fallocate'd range still converts extents.
"""
import os
import statistics
import sys
import tempfile
import time

d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fsync-probe-")
os.makedirs(d, exist_ok=True)
CH = 400 * 1024  # one s1 group: 4 batches x 100 x 1 KiB
N = 150
buf = os.urandom(CH)
def append_run():
    p = f"{d}/append.seg"
    if os.path.exists(p): os.unlink(p)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    lat = []
    off = 0
    for i in range(N):
        os.pwrite(fd, buf, off); off += CH
        t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
    os.close(fd); return lat
def prezero_run():
    p = f"{d}/prezero.seg"
    if os.path.exists(p): os.unlink(p)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    z = bytes(4 << 20)
    for o in range(0, N * CH + (4 << 20), 4 << 20):
        os.pwrite(fd, z, o)
    os.fsync(fd)
    lat = []
    off = 0
    for i in range(N):
        os.pwrite(fd, buf, off); off += CH
        t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
    os.close(fd); return lat
def falloc_run():
    p = f"{d}/falloc.seg"
    if os.path.exists(p): os.unlink(p)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, N * CH + (4 << 20)); os.fsync(fd)
    lat = []
    off = 0
    for i in range(N):
        os.pwrite(fd, buf, off); off += CH
        t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
    os.close(fd); return lat
for rnd in range(3):
    for name, f in (("append", append_run), ("prezero", prezero_run), ("fallocate", falloc_run)):
        l = f()
        l.sort()
        print(f"round {rnd} {name:9s} p50 {statistics.median(l)*1e3:.3f} ms  p90 {l[int(len(l)*.9)]*1e3:.3f}  mean {statistics.mean(l)*1e3:.3f}", flush=True)
for name in ("append", "prezero", "falloc"):
    p = f"{d}/{name}.seg"
    if os.path.exists(p):
        os.unlink(p)
