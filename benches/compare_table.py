"""Prints compare.sh's table from its raw result lines.

    python3 benches/compare_table.py RESULTS HALF HALF_TALLYQ HALF_NATS

RESULTS holds one line per run: "SCENARIO system=... key=value ...", in run
order, so the i-th line of each system within a scenario belongs to run i.
Absolute figures are medians over the runs; ratios are taken within each run
(the two systems ran back to back) and the median of those is printed, with
the worst run beside it: the lowest throughput and the highest latency or
cost of any run, and of the per-run ratios the one least favourable to
tallyq. server_cpu_us_per_msg is the server's CPU time (user + system, from
/proc) divided by the messages it stored in that run.
"""
import statistics
import sys

rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if not parts:
        continue
    f = dict(kv.split("=", 1) for kv in parts[1:])
    try:
        f["server_cpu_us_per_msg"] = str(float(f["server_cpu_s"]) * 1e6 / float(f["produced"]))
    except (KeyError, ValueError, ZeroDivisionError):
        f["server_cpu_us_per_msg"] = "-"
    rows.setdefault((parts[0], f["system"]), []).append(f)

# Higher is better for these; for every other metric lower is better.
HIGHER_IS_BETTER = {"msgs_per_sec", "mb_per_sec"}


def values(scenario, system, key):
    return [float(r[key]) if r.get(key, "-") != "-" else float("nan")
            for r in rows.get((scenario, system), [])]


def clean(vals):
    return [v for v in vals if v == v]


def median(vals):
    vals = clean(vals)
    return statistics.median(vals) if vals else float("nan")


def worst(vals, key):
    vals = clean(vals)
    if not vals:
        return float("nan")
    return min(vals) if key in HIGHER_IS_BETTER else max(vals)


def run_ratios(scenario, key, other):
    pairs = zip(values(scenario, "tallyq", key), values(scenario, other, key))
    return [t / o for t, o in pairs if o and o == o and t == t]


def num(x, digits=0):
    return f"{x:,.{digits}f}" if x == x else ""


def ratio(x):
    return f"{x:.2f}" if x == x else ""


half, half_tq, half_nats = sys.argv[2], sys.argv[3], sys.argv[4]
scenarios = sorted({s for s, _ in rows}, key=lambda s: (s[:2], len(s), s))
print("\nMessages of 1 KiB in batches of 100 from 4 producers (s1-s3, s5) or 256 B one per")
print("request (s4), loopback; figures are medians over the runs, ratios medians of the")
print("per-run ratios; 'worst' is the worst single run (lowest rate, highest latency or cost)\n")

consume_keys = ["msgs_per_sec", "deliver_p50_us", "deliver_p99_us", "ack_p99_us",
                "server_cpu_us_per_msg", "server_peak_rss_mb"]
produce_keys = ["msgs_per_sec", "mb_per_sec", "ack_p50_us", "ack_p99_us",
                "server_cpu_us_per_msg", "server_peak_rss_mb"]


def label_of(scenario):
    if scenario == "s1":
        return "durable produce, max rate", produce_keys
    if scenario == "s2":
        return f"produce + consume at {half} msg/s", consume_keys
    if scenario == "s3":
        return f"produce + consume at half of own max ({half_tq} / {half_nats} msg/s)", consume_keys
    if scenario == "s5":
        return f"scenario 3, repeated ({half_tq} / {half_nats} msg/s)", consume_keys
    if scenario.startswith("s4p"):
        return f"{scenario[3:]} producers, 1 x 256 B per request", produce_keys
    if scenario.startswith("s4s"):
        return f"{scenario[3:]} producers, 1 x 256 B at a time, one ProduceStream each", produce_keys
    return scenario, produce_keys


print("| scenario | runs | metric | tallyq (worst) | NATS default sync (worst) | tallyq / NATS (worst run) "
      "| NATS sync always (worst) | tallyq / NATS always (worst run) |")
print("|---|---|---|---|---|---|---|---|")
for scenario in scenarios:
    label, keys = label_of(scenario)
    n_runs = len(rows.get((scenario, "tallyq"), []))
    for key in keys:
        digits = 1 if key == "server_cpu_us_per_msg" else 0
        cells = []
        for system in ("tallyq", "nats"):
            v = values(scenario, system, key)
            cells.append(f"{num(median(v), digits)} ({num(worst(v, key), digits)})" if clean(v) else "")
        r = run_ratios(scenario, key, "nats")
        # The run least favourable to tallyq: lowest ratio for a rate, highest otherwise.
        r_cell = f"{ratio(median(r))} ({ratio(worst(r, key))})" if r else ""
        a = values(scenario, "nats-sync-always", key)
        a_cell = f"{num(median(a), digits)} ({num(worst(a, key), digits)})" if clean(a) else ""
        ra = run_ratios(scenario, key, "nats-sync-always")
        ra_cell = f"{ratio(median(ra))} ({ratio(worst(ra, key))})" if ra else ""
        print(f"| {label} | {n_runs} | {key} | {cells[0]} | {cells[1]} | {r_cell} | {a_cell} | {ra_cell} |")
