"""Prints the table of benches/compaction-cost.sh from its result lines.

    python3 benches/compaction_table.py RESULTS RUNS SECONDS

Throughput ratios are medians of per-run ratios (run i of one build against
run i of another), with the worst run; server CPU is the broker's CPU time
per million messages produced (steadier than throughput on a shared machine).
"""
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    f = dict(kv.split("=", 1) for kv in parts[2:] if "=" in kv)
    rows.setdefault((parts[0], parts[1]), []).append(f)


def rate(f):
    return float(f["msgs_per_sec"])


def cpu(f):
    return float(f["server_cpu_s"]) / int(f["produced"]) * 1e6


def ratios(a, b):
    r = [rate(x) / rate(y) for x, y in zip(a, b) if rate(y)]
    return f"{statistics.median(r):.3f} ({min(r):.3f})"


print(f"\n{sys.argv[2]} alternating runs of {sys.argv[3]} s, durable produce, "
      "4 producers x batches of 100 x 1 KiB, loopback\n")
print("| case | msg/s before / off / now (medians) | off / before (worst) | now / before (worst) "
      "| now / off (worst) | server CPU s per M msgs before / off / now | segment files at the end, "
      "MiB before / off / now |")
print("|---|---|---|---|---|---|---|")
for case in ("plain", "churn"):
    b, o, n = (rows.get((case, k), []) for k in ("before", "off", "now"))
    builds = (b, o, n)
    rates = " / ".join(f"{statistics.median(rate(x) for x in xs):,.0f}" for xs in builds)
    cpus = " / ".join(f"{statistics.median(cpu(x) for x in xs):.2f}" for xs in builds)
    mib = " / ".join(f"{statistics.median(int(x.get('segments') or 0) for x in xs) / 2**20:,.0f}"
                     for xs in builds)
    print(f"| {case} | {rates} | {ratios(o, b)} | {ratios(n, b)} | {ratios(n, o)} | {cpus} | {mib} |")
