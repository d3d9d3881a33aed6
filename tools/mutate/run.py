#!/usr/bin/python3
"""Mutation testing of lib/*.c: `make mutants` (tools/mutate/mutate.mk).

  run.py --n 300 --seed 1 [--conformance] [--only ID...] [--list]

Generates every single-point mutant of the library (tools/mutate/gen.py),
samples N with the seed, and for each one: writes the mutated file into a
private copy of lib/ (build/mutants/lib), compiles that one object with the
unit stage's compiler and flags (clang ASan+UBSan), relinks, and runs the fast
stages in order until one fails (the mutant is killed):
  1. the unit programs, fastest first (as measured by the control run);
  2. every fuzz target's corpus, replayed (tools/coverage/replay.c);
  3. with --conformance, the pytest suite against a test server built on the
     mutant (only for mutants that 1 and 2 left alive).
A stage that outlives its timeout (5x its control time, at least 10 s) kills
the mutant "by timeout". A mutant that does not compile is skipped; one whose
machine code (.text) is identical to the original's is equivalent by
construction and counted apart. A control run of the unmutated library goes
first: when it fails, nothing is scored.

Writes build/reports/mutants.md: the score (killed / (run - equivalent)), where
equivalent = same code + listed in conformance/mutants/equivalent.md, and
every survivor with its file:line and diff. Exit 0 when the run completed
(whatever the score), 1 when the control run failed, 2 on usage.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402


CURRENT = []  # the running child, whose process group a signal takes down


def sh(cmd, timeout=None, env=None, cwd=None):
    """Runs cmd (a list) in its own process group; returns (rc, seconds,
    output tail). rc None = timeout, after which the whole group is killed
    (a test server that a pytest run started goes with it)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, cwd=cwd, start_new_session=True)
    CURRENT[:] = [p]
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, _ = p.communicate()
        rc = None
    finally:
        CURRENT[:] = []
    return rc, time.monotonic() - t0, out.decode(errors="replace")[-2000:]


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def on_signal(signum, _frame):
    for p in CURRENT:
        kill_group(p)
    sys.exit(128 + signum)


class Build:
    def __init__(self, a):
        self.a = a
        self.dir = a.build
        self.lib = os.path.join(self.dir, "lib")
        self.cc = shlex.split(a.cc)
        self.cflags = shlex.split(a.cflags)
        self.cflags = [f for f in self.cflags if not f.startswith("-I")] + ["-I" + self.lib]
        self.ldlibs = shlex.split(a.ldlibs)
        self.ldflags = {}
        for spec in a.ldflags:
            name, _, flags = spec.partition("=")
            self.ldflags[name] = shlex.split(flags)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def compile(self, src, obj, extra=()):
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        rc, _, out = sh(self.cc + self.cflags + list(extra) + ["-c", src, "-o", obj])
        return rc == 0, out

    def text_hash(self, obj):
        tmp = obj + ".text"
        rc, _, _ = sh(["objcopy", "-O", "binary", "--only-section=.text", obj, tmp])
        if rc != 0:
            return None
        with open(tmp, "rb") as f:
            h = hashlib.sha1(f.read()).hexdigest()
        os.unlink(tmp)
        return h

    def setup(self, lib_src, unit_srcs, util, fuzz):
        shutil.rmtree(self.lib, ignore_errors=True)
        os.makedirs(self.lib)
        for name in os.listdir(lib_src):
            if name.endswith((".c", ".h")):
                shutil.copy(os.path.join(lib_src, name), self.lib)
        self.lib_files = sorted(n for n in os.listdir(self.lib) if n.endswith(".c"))
        self.objs, self.hash = {}, {}
        for n in self.lib_files:
            obj = self.path("obj", n[:-2] + ".o")
            ok, out = self.compile(os.path.join(self.lib, n), obj)
            if not ok:
                sys.exit(f"mutants: cannot build {n}:\n{out}")
            self.objs[n] = obj
            self.hash[n] = self.text_hash(obj)
        self.progs = []  # (name, [objects besides the library], ldflags)
        ok, out = self.compile(util, self.path("tobj", "testutil.o"))
        if not ok:
            sys.exit(out)
        for src in unit_srcs:
            name = os.path.basename(src)[:-2]
            obj = self.path("tobj", name + ".o")
            ok, out = self.compile(src, obj)
            if not ok:
                sys.exit(out)
            wraps = self.ldflags.get(name)
            if wraps is None:  # as the coverage build: --wrap=X per __wrap_X
                wraps = shlex.split(subprocess.run(
                    ["tools/coverage/unit-wraps.sh", src], check=True,
                    stdout=subprocess.PIPE, text=True).stdout)
            self.progs.append(("unit", name, [obj, self.path("tobj", "testutil.o")],
                               wraps + self.ldlibs, []))
        replay = self.path("tobj", "replay.o")
        ok, out = self.compile("tools/coverage/replay.c", replay)
        if not ok:
            sys.exit(out)
        for spec in fuzz:
            parts = spec.split(":")
            name, srcs = parts[0], [s for s in parts[1:] if s]
            objs = [replay]
            for s in [f"fuzz/{name}.c"] + srcs:
                obj = self.path("fobj", name, os.path.basename(s)[:-2] + ".o")
                ok, out = self.compile(s, obj)
                if not ok:
                    sys.exit(out)
                objs.append(obj)
            self.progs.append(("fuzz", name, objs, [], [f"fuzz/corpus/{name}"]))

    def link(self, prog, lib_objs):
        kind, name, objs, ldf, _ = prog
        exe = self.path("bin", name)
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        rc, _, out = sh(self.cc + self.cflags + objs + lib_objs + ldf + ["-o", exe])
        return exe if rc == 0 else None, out


def run_prog(exe, args, timeout):
    rc, dt, out = sh([exe] + args, timeout=timeout)
    return rc, dt, out


def conformance(b, lib_objs, a):
    """Links the test server on lib_objs and runs the suite: (rc, out)."""
    exe = b.path("bin", "evl-testsrv")
    objs = []
    for s in sorted(os.listdir("tools/testsrv")):
        if s.endswith(".c"):
            obj = b.path("sobj", s[:-2] + ".o")
            if not os.path.exists(obj):
                ok, out = b.compile(os.path.join("tools/testsrv", s), obj)
                if not ok:
                    return 1, out
            objs.append(obj)
    rc, _, out = sh(b.cc + b.cflags + objs + lib_objs + ["-lz", "-o", exe])
    if rc != 0:
        return 1, out
    env = dict(os.environ, SERVER=os.path.abspath(exe))
    rc, _, out = sh([a.python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "conformance"],
                    timeout=a.conformance_timeout, env=env)
    return rc, out


def load_equivalent(path):
    ids = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"^##+\s+(m[0-9a-f]{8})\b(.*)", line)
                if m:
                    ids[m[1]] = m[2].strip(" -:")
    return ids


def main():
    ap = argparse.ArgumentParser(description="mutation testing of lib/*.c")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lib", default="lib")
    ap.add_argument("--build", default="build/mutants")
    ap.add_argument("--out", default="build/reports/mutants.md")
    ap.add_argument("--equivalent", default="conformance/mutants/equivalent.md")
    ap.add_argument("--cc", default="clang")
    ap.add_argument("--cflags", default="")
    ap.add_argument("--ldlibs", default="-lcmocka")
    ap.add_argument("--ldflags", action="append", default=[], help="PROGRAM=FLAGS (repeatable)")
    ap.add_argument("--unit", nargs="*", default=[])
    ap.add_argument("--util", default="lib/test/testutil.c")
    ap.add_argument("--fuzz", nargs="*", default=[], help="target[:extra.c...]")
    ap.add_argument("--conformance", action="store_true")
    ap.add_argument("--conformance-timeout", type=int, default=300)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--only", nargs="*", default=[], help="run these mutant ids only")
    ap.add_argument("--list", action="store_true", help="print the sample and exit")
    ap.add_argument("--survivors", metavar="JSON",
                    help="re-run only the survivors of an earlier run (its mutants.json), "
                         "after tests were added; the other results are kept")
    try:
        a = ap.parse_args()
    except SystemExit as e:
        sys.exit(2 if e.code else 0)
    if a.n <= 0:
        print("run.py: --n must be positive", file=sys.stderr)
        sys.exit(2)

    files = sorted(os.path.join(a.lib, n) for n in os.listdir(a.lib) if n.endswith(".c"))
    every = gen.generate(files)
    if a.only:
        sample = [m for m in every if m["id"] in set(a.only)]
    else:
        sample = random.Random(a.seed).sample(every, min(a.n, len(every)))
        sample.sort(key=lambda m: (m["file"], m["line"], m["id"]))
    kept = []
    if a.survivors:
        with open(a.survivors, encoding="utf-8") as f:
            before = json.load(f)
        again = {r["id"] for r in before if r["status"] in ("survived", "equivalent")}
        kept = [r for r in before if r["id"] not in again]
        sample = [m for m in every if m["id"] in again]
        gone = again - {m["id"] for m in sample}
        for mid in sorted(gone):  # the line changed since: not this mutant any more
            print(f"mutants: {mid} no longer exists (its line changed); dropped", file=sys.stderr)
    if a.list:
        for m in sample:
            print(f"{m['id']} {m['file']}:{m['line']} {m['op']}: {m['new'].strip()}")
        return

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t_start = time.monotonic()
    b = Build(a)
    b.setup(a.lib, a.unit, a.util, a.fuzz)
    base = [b.objs[n] for n in b.lib_files]

    # Control run: every program must pass on the unmutated library; its
    # times order the programs (fastest first) and set their timeouts.
    control = []
    for prog in b.progs:
        exe, out = b.link(prog, base)
        if not exe:
            sys.exit(f"mutants: control link of {prog[1]} failed:\n{out}")
        rc, dt, out = run_prog(exe, prog[4], 600)
        if rc != 0:
            print(f"mutants: control run of {prog[1]} failed (rc {rc}):\n{out}", file=sys.stderr)
            sys.exit(1)
        control.append((prog, dt))
        print(f"control {prog[1]:<14} {dt:6.1f} s", flush=True)
    units = sorted([c for c in control if c[0][0] == "unit"], key=lambda c: c[1])
    fuzzes = sorted([c for c in control if c[0][0] == "fuzz"], key=lambda c: c[1])
    order = units + fuzzes
    if a.conformance:
        rc, out = conformance(b, base, a)
        if rc != 0:
            print(f"mutants: control conformance run failed:\n{out}", file=sys.stderr)
            sys.exit(1)

    equivalent = load_equivalent(a.equivalent)
    results = []
    for i, m in enumerate(sample, 1):
        fname = os.path.basename(m["file"])
        src = os.path.join(b.lib, fname)
        with open(src, encoding="utf-8") as f:
            orig_text = f.read()
        lines = orig_text.split("\n")
        assert lines[m["line"] - 1] == m["orig"]
        lines[m["line"] - 1] = m["new"]
        with open(src, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        t0 = time.monotonic()
        r = dict(m, status="", by="", detail="")
        try:
            mobj = b.path("obj", "mutant-" + fname[:-2] + ".o")
            ok, out = b.compile(src, mobj)
            if not ok:
                r["status"] = "nocompile"
            elif b.text_hash(mobj) == b.hash[fname]:
                r["status"] = "samecode"
            else:
                objs = [mobj if n == fname else b.objs[n] for n in b.lib_files]
                r["status"] = "survived"
                for prog, dt in order:
                    exe, out = b.link(prog, objs)
                    if not exe:
                        r.update(status="nocompile", detail=out[-300:])
                        break
                    rc, _, out = run_prog(exe, prog[4], max(10.0, 5 * dt))
                    if rc is None:
                        r.update(status="killed", by=prog[1] + " (timeout)")
                        break
                    if rc != 0:
                        r.update(status="killed", by=prog[1], detail=out[-300:])
                        break
                if r["status"] == "survived" and a.conformance:
                    rc, out = conformance(b, objs, a)
                    if rc is None:
                        r.update(status="killed", by="conformance (timeout)")
                    elif rc != 0:
                        r.update(status="killed", by="conformance", detail=out[-300:])
        finally:
            with open(src, "w", encoding="utf-8") as f:
                f.write(orig_text)
        if r["status"] == "survived" and m["id"] in equivalent:
            r["status"] = "equivalent"
            r["detail"] = equivalent[m["id"]]
        r["seconds"] = round(time.monotonic() - t0, 1)
        results.append(r)
        print(f"[{i}/{len(sample)}] {m['id']} {m['file']}:{m['line']} {m['op']:<5} "
              f"{r['status']:<10} {r['by']:<22} {r['seconds']:5.1f} s", flush=True)

    if kept:
        results = sorted(kept + results, key=lambda r: (r["file"], r["line"], r["id"]))
    write_report(a, results, len(every), time.monotonic() - t_start, equivalent)


def write_report(a, results, generated, secs, equivalent):
    count = {}
    for r in results:
        count[r["status"]] = count.get(r["status"], 0) + 1
    killed = count.get("killed", 0)
    survived = count.get("survived", 0)
    scored = killed + survived
    score = 100.0 * killed / scored if scored else 100.0
    timeouts = sum(1 for r in results if r["by"].endswith("(timeout)"))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("# Mutation testing of lib/\n\n")
        cmd = f"make mutants MUTANTS_N={a.n} MUTANTS_SEED={a.seed}"
        if a.only:
            cmd = "tools/mutate/run.py --only " + " ".join(a.only)
        if a.survivors:
            cmd += f" MUTANTS_SURVIVORS={a.survivors} (survivors re-run, the rest kept)"
        f.write(f"`{cmd}`: {len(results)} of {generated} generated mutants, "
                f"{secs / 60:.1f} min, stages: unit, fuzz corpora"
                f"{', conformance (survivors)' if a.conformance else ''}.\n\n")
        f.write(f"**Mutation score: {score:.1f}%** ({killed} killed of {scored} "
                f"non-equivalent mutants that compiled).\n\n")
        f.write("| outcome | mutants |\n|---|---|\n")
        for k, what in [("killed", "killed"), ("survived", "survived"),
                        ("equivalent", "equivalent (conformance/mutants/equivalent.md)"),
                        ("samecode", "equivalent: same machine code as the original"),
                        ("nocompile", "did not compile (skipped)")]:
            f.write(f"| {what} | {count.get(k, 0)} |\n")
        f.write(f"| of the killed: by timeout (a hang) | {timeouts} |\n\n")
        by_op = {}
        for r in results:
            if r["status"] in ("killed", "survived"):
                k, s = by_op.get(r["op"], (0, 0))
                by_op[r["op"]] = (k + (r["status"] == "killed"), s + (r["status"] == "survived"))
        f.write("| operator | killed | survived |\n|---|---|---|\n")
        for op in sorted(by_op):
            f.write(f"| {op} | {by_op[op][0]} | {by_op[op][1]} |\n")
        killers = {}
        for r in results:
            if r["status"] == "killed":
                k = r["by"].split(" ")[0]
                killers[k] = killers.get(k, 0) + 1
        f.write("\n| killed first by | mutants |\n|---|---|\n")
        for k in sorted(killers, key=lambda x: -killers[x]):
            f.write(f"| {k} | {killers[k]} |\n")
        f.write("\n## Survivors\n\nEach needs a test that kills it, or an entry "
                "`## <id>` in conformance/mutants/equivalent.md saying why no test can.\n\n")
        for r in results:
            if r["status"] == "survived":
                f.write(f"### {r['id']} {r['file']}:{r['line']} ({r['op']})\n\n```diff\n"
                        f"-{r['orig']}\n+{r['new']}\n```\n\n")
        f.write("## Equivalent (listed)\n\n")
        for r in results:
            if r["status"] == "equivalent":
                f.write(f"- {r['id']} {r['file']}:{r['line']}: `{r['new'].strip()}`: {r['detail']}\n")
        f.write("\n## All mutants\n\n| id | where | op | outcome | by | s |\n|---|---|---|---|---|---|\n")
        for r in results:
            f.write(f"| {r['id']} | {r['file']}:{r['line']} | {r['op']} | {r['status']} | "
                    f"{r['by']} | {r['seconds']} |\n")
    with open(os.path.splitext(a.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print(f"mutants: score {score:.1f}% ({killed}/{scored}), {survived} survived, "
          f"{count.get('equivalent', 0)} listed equivalent, {count.get('samecode', 0)} same code, "
          f"{count.get('nocompile', 0)} did not compile; {a.out}")


if __name__ == "__main__":
    main()
