#!/usr/bin/python3
"""bench/report.py: medians, ratios and goals from bench/run.sh's raw results.

Reads results.tsv (row, server, repetition, value; "nan" for a failed run),
meta.json (date, load, sizes) and instr.tsv (callgrind totals), and writes
bench.md (tables for people), bench.json (everything, runs included) and a
tab-separated chart table for bench/chart.gp. Only the standard library.
"""
import argparse
import json
import math
import statistics

ECHO_PEERS = ["libuv", "libevent", "libev"]
ECHO_SERVERS = ["evloop"] + ECHO_PEERS + ["raw"]

# id, title, unit, better, group ("echo", or the reference server's name)
ROWS = [
    ("pp1", "ping-pong, 1 conn, 64 B", "msg/s", "higher", "echo"),
    ("pp100", "ping-pong, 100 conns, 64 B", "msg/s", "higher", "echo"),
    ("pipe16", "pipelined ping-pong, 10 conns x depth 16, 64 B", "msg/s", "higher", "echo"),
    ("pump", "pump, 1 conn, 64 KiB writes, 4 MiB window", "MB/s", "higher", "echo"),
    ("idle", "memory per idle connection", "B/conn", "lower", "echo"),
    ("instr", "instructions per echoed message (callgrind)", "Ir/msg", "lower", "echo"),
    ("rb_inline_p1", "redis-benchmark PING_INLINE, 50 clients", "req/s", "higher", "redis"),
    ("rb_mbulk_p1", "redis-benchmark PING_MBULK, 50 clients", "req/s", "higher", "redis"),
    ("rb_inline_p16", "redis-benchmark PING_INLINE, 50 clients, -P 16", "req/s", "higher", "redis"),
    ("rb_mbulk_p16", "redis-benchmark PING_MBULK, 50 clients, -P 16", "req/s", "higher", "redis"),
    ("http", "wrk GET /, 1 thread, 50 conns", "req/s", "higher", "nginx"),
    ("timers", "a million timers armed and fired (CPU time)", "ms", "lower", "libuv"),
]


def median(vals):
    good = [v for v in vals if not math.isnan(v)]
    return statistics.median(good) if good else None


def spread(vals):
    """(max - min) / median of the good runs, in percent: the noise."""
    good = [v for v in vals if not math.isnan(v)]
    if len(good) < 2 or not statistics.median(good):
        return None
    return 100.0 * (max(good) - min(good)) / statistics.median(good)


def fmt(v, unit):
    if v is None:
        return "fail"
    if unit in ("MB/s",):
        return f"{v:,.1f}"
    return f"{v:,.0f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def best(meds, names, better):
    have = [(meds[n], n) for n in names if meds.get(n) is not None]
    if not have:
        return None, None
    v, n = (max if better == "higher" else min)(have)
    return v, n


def judge(row_id, better, meds, r_best, r_raw, r_ref):
    """The issue's goal for this row, and whether this run met it."""
    if row_id in ("pp1", "pp100", "pipe16", "pump"):
        if r_best is None or r_raw is None:
            return "n/a"
        ok = r_best >= 1.0 and r_raw >= 0.9
        return ("met" if ok else "MISSED") + " (>=1.0x best peer, >=0.9x raw)"
    if row_id == "idle":
        if r_best is None:
            return "n/a"
        return ("met" if r_best <= 1.0 else "MISSED") + " (<= best peer)"
    if row_id == "instr":
        e = meds.get("evloop")
        uv, le = meds.get("libuv"), meds.get("libevent")
        if None in (e, uv, le):
            return "n/a"
        return ("met" if e < uv and e < le else "MISSED") + " (< libuv and < libevent)"
    if r_ref is None:
        return "n/a"
    if better == "lower":
        return ("met" if r_ref <= 1.0 else "MISSED") + " (<=1.0x)"
    return ("met" if r_ref >= 1.0 else "MISSED") + " (>=1.0x)"


def annotate(cg):
    """{function: Ir} from callgrind_annotate (exclusive counts)."""
    import re
    import subprocess
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", cg],
                         capture_output=True, text=True, check=True).stdout
    fns = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\S+)", line)
        if m and ":" in m.group(2):
            name = m.group(2).split(":", 1)[1]
            fns[name] = fns.get(name, 0) + int(m.group(1).replace(",", ""))
    return fns


def profile_table(cg0, cgn, n):
    """evloop's instructions per message by function: (Ir(N) - Ir(0)) / N,
    the functions that cost at least 1 Ir per message."""
    n = int(n)
    base, full = annotate(cg0), annotate(cgn)
    rows = sorted(((name, (full[name] - base.get(name, 0)) / n) for name in full),
                  key=lambda r: -r[1])
    md = ["", "### evloop's instructions per message, by function", "",
          "Exclusive counts (inlined code counts in its caller: the loop's hot path is "
          "inlined into `evl_run`).", "", "| function | Ir / msg |", "|---|--:|"]
    md += [f"| `{name}` | {per:.1f} |" for name, per in rows if per >= 1.0]
    return md


def main():
    ap = argparse.ArgumentParser()
    for a in ("--results", "--meta", "--instr", "--md", "--json", "--dat"):
        ap.add_argument(a, required=a != "--instr")
    ap.add_argument("--profile", nargs=3, metavar=("CG_0", "CG_N", "N"),
                    help="evloop's two callgrind files and N: a per-function table")
    args = ap.parse_args()

    runs = {}
    with open(args.results) as f:
        for line in f:
            row, srv, _rep, val = line.rstrip("\n").split("\t")
            runs.setdefault(row, {}).setdefault(srv, []).append(float(val))
    with open(args.meta) as f:
        meta = json.load(f)
    instr = []
    try:
        with open(args.instr) as f:
            for line in f:
                srv, base, full, msgs = line.split()
                instr.append({"server": srv, "ir_0_msgs": int(base), "ir_n_msgs": int(full),
                              "msgs": int(msgs)})
    except (OSError, TypeError):
        pass

    out_rows = []
    for row_id, title, unit, better, group in ROWS:
        if row_id not in runs:
            continue
        servers = ECHO_SERVERS if group == "echo" else ["evloop", group]
        meds = {s: median(runs[row_id].get(s, [])) for s in servers}
        e = meds["evloop"]
        rec = {"id": row_id, "title": title, "unit": unit, "better": better,
               "runs": runs[row_id], "median": meds,
               "spread_pct": {s: spread(runs[row_id].get(s, [])) for s in servers}}
        r_best = r_raw = r_ref = None
        if group == "echo":
            bv, bn = best(meds, ECHO_PEERS, better)
            r_best, r_raw = ratio(e, bv), ratio(e, meds["raw"])
            rec.update(best_peer=bn, ratio_best=r_best, ratio_raw=r_raw)
        else:
            r_ref = ratio(e, meds[group])
            rec.update(reference=group, ratio_ref=r_ref)
        rec["goal"] = judge(row_id, better, meds, r_best, r_raw, r_ref)
        out_rows.append(rec)

    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": out_rows, "callgrind": instr}, f, indent=1)

    def r2(x):
        return "fail" if x is None else f"{x:.2f}x"

    md = ["# evloop bench", ""]
    md.append(f"{meta['date']}, {'quick' if meta['quick'] else 'full'} run, "
              f"{meta['reps']} repetition(s), medians; {meta['cpus']} cpus "
              f"({meta['cpu_model']}), {meta['pinning']}; kernel {meta['kernel']}; "
              f"{meta['seconds']} s.")
    md.append(f"Machine load (1/5/15 min): {meta['load_before']} before, "
              f"{meta['load_after']} after. Other work on the machine makes the timed "
              f"rows noisy; 'spread' is the largest (max-min)/median of any server on the "
              f"row. Instructions (callgrind) do not depend on load.")
    md.append("")
    md.append("## Echo servers: evl-testsrv --mode echo against the peers in bench/peers/")
    md.append("")
    md.append("| row | unit | evloop | libuv | libevent | libev | raw epoll | evloop / best peer "
              "| evloop / raw | spread | goal |")
    md.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for r in out_rows:
        if r["id"] not in [x[0] for x in ROWS if x[4] == "echo"]:
            continue
        sp = [v for v in r["spread_pct"].values() if v is not None]
        title = r["title"] + (f" ({meta['durations']['idle_conns']})" if r["id"] == "idle" else "")
        bp = f" ({r['best_peer']})" if r.get("best_peer") else ""
        md.append(f"| {title} | {r['unit']} {'↑' if r['better'] == 'higher' else '↓'} | "
                  + " | ".join(fmt(r["median"][s], r["unit"]) for s in ECHO_SERVERS)
                  + f" | {r2(r['ratio_best'])}{bp} | {r2(r['ratio_raw'])} | "
                  + (f"{max(sp):.0f}%" if sp else "-") + f" | {r['goal']} |")
    md.append("")
    md.append("## Real clients: evl-testsrv --mode resp / --mode http against redis-server / nginx")
    md.append("")
    md.append("| row | unit | evloop | reference | reference value | evloop / reference | spread | goal |")
    md.append("|---|---|--:|---|--:|--:|--:|---|")
    for r in out_rows:
        if "reference" not in r:
            continue
        sp = [v for v in r["spread_pct"].values() if v is not None]
        md.append(f"| {r['title']} | {r['unit']} {'↑' if r['better'] == 'higher' else '↓'} | {fmt(r['median']['evloop'], r['unit'])} | "
                  f"{r['reference']} | {fmt(r['median'][r['reference']], r['unit'])} | "
                  f"{r2(r['ratio_ref'])} | " + (f"{max(sp):.0f}%" if sp else "-")
                  + f" | {r['goal']} |")
    if instr:
        md += ["", "## Instructions per echoed message (callgrind)", "",
               "Server run under `valgrind --tool=callgrind`: once with N ping-pong messages "
               "of 64 B on one connection, once with none (start, one accept, one close, "
               "SIGTERM). (Ir(N) - Ir(0)) / N is one echo's user-space instructions, the "
               "libraries and libc included, the kernel not.", "",
               "| server | Ir, 0 msgs | Ir, N msgs | N | Ir / msg |", "|---|--:|--:|--:|--:|"]
        for i in instr:
            per = (i["ir_n_msgs"] - i["ir_0_msgs"]) / i["msgs"]
            md.append(f"| {i['server']} | {i['ir_0_msgs']:,} | {i['ir_n_msgs']:,} | "
                      f"{i['msgs']:,} | {per:,.1f} |")
    if args.profile:
        md += profile_table(*args.profile)
    md += ["", "Chart: bench.png (each server relative to the best peer on the row, "
           "higher is better; for ↓ rows the inverse)."]
    with open(args.md, "w") as f:
        f.write("\n".join(md) + "\n")

    # Chart table: every server relative to the row's best peer (echo rows) or
    # reference server, turned so that higher is better.
    cols = ECHO_SERVERS + ["redis / nginx"]
    with open(args.dat, "w") as f:
        f.write("row\t" + "\t".join(cols) + "\n")
        for r in out_rows:
            meds = r["median"]
            base = meds.get(r.get("best_peer") or r.get("reference"))
            vals = []
            for c in cols:
                v = meds.get(r.get("reference")) if c == "redis / nginx" else meds.get(c)
                if c == "redis / nginx" and "reference" not in r:
                    v = None
                if c in ECHO_SERVERS[1:] and "reference" in r:
                    v = None
                if v is None or not base:
                    vals.append("-")
                else:
                    rel = v / base if r["better"] == "higher" else base / v
                    vals.append(f"{rel:.3f}")
            f.write(r["id"] + "\t" + "\t".join(vals) + "\n")


if __name__ == "__main__":
    main()
