"""Prints compare.sh's table from its raw result lines.

    python3 benches/compare_table.py RESULTS HALF HALF_TALLYQ HALF_NATS

RESULTS holds one line per run: "s1|s2|s3 system=... key=value ...", in run
order, so the i-th line of each system within a scenario belongs to run i.
Absolute figures are medians over the runs; ratios are taken within each run
(the two systems ran back to back) and the median of those is printed.
"""
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if not parts:
        continue
    f = dict(kv.split("=", 1) for kv in parts[1:])
    rows.setdefault((parts[0], f["system"]), []).append(f)


def values(scenario, system, key):
    return [float(r[key]) if r[key] != "-" else float("nan") for r in rows.get((scenario, system), [])]


def median(vals):
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def run_ratio(scenario, key, other):
    pairs = zip(values(scenario, "tallyq", key), values(scenario, other, key))
    return median([t / o for t, o in pairs if o])


runs = len(rows.get(("s1", "tallyq"), []))
print(f"\n{runs} runs per system and scenario, 1 KiB messages, batches of 100, 4 producers, loopback;")
print("figures are medians, ratios are medians of the per-run ratios\n")
print("| scenario | metric | tallyq | NATS (default sync) | tallyq / NATS | NATS (sync always) | tallyq / NATS always |")
print("|---|---|---|---|---|---|---|")
for scenario, label, keys in [
    ("s1", "durable produce, max rate",
     ["msgs_per_sec", "mb_per_sec", "ack_p50_us", "ack_p99_us", "server_cpu_s", "server_peak_rss_mb"]),
    ("s2", f"produce + consume at {sys.argv[2]} msg/s",
     ["msgs_per_sec", "deliver_p50_us", "deliver_p99_us", "ack_p99_us", "server_cpu_s", "server_peak_rss_mb"]),
    ("s3", f"produce + consume at half of own max ({sys.argv[3]} / {sys.argv[4]} msg/s)",
     ["msgs_per_sec", "deliver_p50_us", "deliver_p99_us", "ack_p99_us", "server_cpu_s", "server_peak_rss_mb"]),
]:
    for key in keys:
        t = median(values(scenario, "tallyq", key))
        n = median(values(scenario, "nats", key))
        a = median(values(scenario, "nats-sync-always", key))
        r, ra = run_ratio(scenario, key, "nats"), run_ratio(scenario, key, "nats-sync-always")
        cells = [f"{x:,.0f}" if x == x else "" for x in (t, n)]
        ratio = f"{r:.2f}" if r == r else ""
        always = f"{a:,.0f}" if a == a else ""
        ratio_a = f"{ra:.2f}" if ra == ra else ""
        print(f"| {label} | {key} | {cells[0]} | {cells[1]} | {ratio} | {always} | {ratio_a} |")
