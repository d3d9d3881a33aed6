#!/usr/bin/python3
"""The coverage gate: applies the listed exclusions to gcovr's JSON report,
writes one line per file, and fails below the floor.

  check.py --json build/reports/coverage-full.json --floor ci/coverage-floor
           --exclusions ci/coverage-exclusions.md --out build/reports/coverage.txt

Exclusions live in ci/coverage-exclusions.md, one table row each:

  | lib/buf.c:121 | `if (errno == EAGAIN || errno == EWOULDBLOCK)` | branches | why |

kind is `line` (the line and its branches leave the count) or `branches`
(only its branches do). A row names its line by file and exact code text;
the line number is checked too, and a row whose number drifted (lib/ was
edited) is reported with the number to write, but it still applies. The gate
fails when a row's code is not in the file, when a row has no reason, and when
an excluded line or branch is covered after all (the exclusion is stale).

The floor file holds `lines N` and `branches N` (percent, after exclusions).
Exit 0 at or above the floor, 1 below it or on a bad exclusion, 2 on usage.
"""
import argparse
import json
import re
import sys

ROW = re.compile(r"^\|\s*([^|:\s]+):(\d+)\s*\|\s*`(.+?)`\s*\|\s*(line|branches)\s*\|(.*)\|\s*$")


def read_floor(path):
    floor = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            key, _, val = line.partition(" ")
            if key not in ("lines", "branches"):
                raise ValueError(f"{path}: unknown key {key!r}")
            floor[key] = float(val)
    if set(floor) != {"lines", "branches"}:
        raise ValueError(f"{path}: needs 'lines N' and 'branches N'")
    return floor


def read_exclusions(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            m = ROW.match(raw.rstrip("\n"))
            if m:
                rows.append({"file": m[1], "line": int(m[2]), "code": m[3].strip(),
                             "kind": m[4], "reason": m[5].strip(), "row": n})
    return rows


def locate(rows, sources, problems, notes, excl_path):
    """Maps each row to its line number now: (file, line) -> kind."""
    where = {}
    for r in rows:
        src = sources.get(r["file"])
        if src is None:
            problems.append(f"{excl_path}:{r['row']}: {r['file']} is not in the report")
            continue
        if not r["reason"]:
            problems.append(f"{excl_path}:{r['row']}: no reason given")
        hits = [i + 1 for i, text in enumerate(src) if text.strip() == r["code"]]
        if not hits:
            problems.append(f"{excl_path}:{r['row']}: `{r['code']}` is not a line of {r['file']}")
            continue
        # Several identical lines: the one nearest the listed number.
        line = min(hits, key=lambda h: abs(h - r["line"]))
        if line != r["line"]:
            notes.append(f"{excl_path}:{r['row']}: {r['file']}:{r['line']} is now line {line}")
        where[(r["file"], line)] = r["kind"]
    return where


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True, help="gcovr --json report")
    ap.add_argument("--floor", required=True)
    ap.add_argument("--exclusions", required=True)
    ap.add_argument("--out", required=True, help="text summary, one line per file")
    try:
        a = ap.parse_args()
    except SystemExit as e:
        sys.exit(2 if e.code else 0)

    floor = read_floor(a.floor)
    with open(a.json, encoding="utf-8") as f:
        report = json.load(f)
    sources = {}
    for fr in report["files"]:
        with open(fr["file"], encoding="utf-8") as f:
            sources[fr["file"]] = f.read().split("\n")

    problems, notes = [], []
    where = locate(read_exclusions(a.exclusions), sources, problems, notes, a.exclusions)

    out = []
    tot = {"l": 0, "lc": 0, "b": 0, "bc": 0, "xl": 0, "xb": 0, "xlc": 0, "xbc": 0}
    out.append(f"{'file':<16} {'lines':>13} {'%':>6} {'branches':>11} {'%':>6} {'excluded':>9}  missing")
    for fr in sorted(report["files"], key=lambda x: x["file"]):
        name = fr["file"]
        s = {"l": 0, "lc": 0, "b": 0, "bc": 0, "xl": 0, "xb": 0, "xlc": 0, "xbc": 0}
        missing = []
        for ln in fr["lines"]:
            if ln.get("gcovr/noncode") or ln.get("gcovr/excluded"):
                continue
            no = ln["line_number"]
            kind = where.get((name, no))
            br = ln["branches"]
            taken = sum(1 for b in br if b["count"] > 0)
            if kind == "line":
                if ln["count"] > 0 and (not br or taken == len(br)):
                    problems.append(f"{name}:{no}: excluded line is covered: remove its exclusion")
                s["xl"] += 1
                s["xlc"] += ln["count"] > 0
                s["xb"] += len(br)
                s["xbc"] += taken
                continue
            s["l"] += 1
            if ln["count"] > 0:
                s["lc"] += 1
            else:
                missing.append(f"{no}")
            if kind == "branches":
                if taken == len(br):
                    problems.append(f"{name}:{no}: excluded branches are all taken: remove the exclusion")
                s["xb"] += len(br)
                s["xbc"] += taken
                continue
            s["b"] += len(br)
            s["bc"] += taken
            if ln["count"] > 0 and taken < len(br):
                missing.append(f"{no}b")
        for k in tot:
            tot[k] += s[k]
        out.append(line_for(name, s, missing))
    out.append(line_for("TOTAL", tot, []))
    raw_l = pct(tot["lc"] + tot["xlc"], tot["l"] + tot["xl"])
    raw_b = pct(tot["bc"] + tot["xbc"], tot["b"] + tot["xb"])
    out.append(f"without the exclusions: lines {raw_l:.1f}% branches {raw_b:.1f}%")
    pct_l, pct_b = pct(tot["lc"], tot["l"]), pct(tot["bc"], tot["b"])
    verdict = (f"floor: lines {floor['lines']:g}% branches {floor['branches']:g}%; "
               f"after exclusions: lines {pct_l:.1f}% branches {pct_b:.1f}%")
    out.append(verdict)
    text = "\n".join(out) + "\n"
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    for n in notes:
        print("note:", n)
    below = []
    if pct_l + 1e-9 < floor["lines"]:
        below.append("lines")
    if pct_b + 1e-9 < floor["branches"]:
        below.append("branches")
    for p in problems:
        print("coverage: exclusion problem:", p)
    if below:
        print(f"coverage: below the floor ({', '.join(below)}); "
              "missing: line numbers, and NNb for a line with an untaken branch")
    sys.exit(1 if below or problems else 0)


def pct(n, d):
    return 100.0 * n / d if d else 100.0


def line_for(name, s, missing):
    return (f"{name:<16} {s['lc']:>6}/{s['l']:<6} {pct(s['lc'], s['l']):>6.1f} "
            f"{s['bc']:>5}/{s['b']:<5} {pct(s['bc'], s['b']):>6.1f} "
            f"{s['xl']:>4}l {s['xb']:>3}b  {','.join(missing)}")


if __name__ == "__main__":
    main()
