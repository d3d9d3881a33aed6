#!/usr/bin/python3
"""Shows that each test of test_promises.c can fail: one hand-made mutant of
lib/ per test (a broken promise of evloop.h), test_promises built on a
mutated copy (make LIB=... BUILD=...), and the test named for the mutant run
alone (TU_FILTER); it must fail. Prints one line per mutant; exits 1 if any
survived or did not apply/build.
    lib/test/promise_mutants.py [mutant-name...]
"""
import os
import shutil
import subprocess
import sys
import tempfile

top = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
work = tempfile.mkdtemp(prefix="evl-promise-mutants.")
bad = 0
# (name, file in lib/, text, replacement, the test that must fail)
M = [
 ("on_close_inside_failing_write", "conn.c",
  "    set_broken(c);\n    evl__conn_kill(c);\n    errno = err;",
  "    set_broken(c);\n    evl__conn_kill(c);\n    if (c->loop->h.on_close) c->loop->h.on_close(c);\n    errno = err;",
  "test_failing_write_in_callback_defers_on_close"),
 ("null_on_accept_rejects", "loop.c",
  "if (l->h.on_accept && !l->h.on_accept(c)) {", "if (!l->h.on_accept || !l->h.on_accept(c)) {",
  "test_null_on_accept_accepts_everything"),
 ("null_on_read_consumes", "conn.c",
  "        if (l->h.on_read)\n            l->h.on_read(c);",
  "        if (l->h.on_read)\n            l->h.on_read(c);\n        else\n            evl_consume(c, before);",
  "test_null_on_read_ends_in_rbuf_max_close"),
 ("on_fd_only_on_epollin", "loop.c",
  "        if (l->h.on_fd)\n            l->h.on_fd(l, io->fd);",
  "        if (l->h.on_fd && !(ev->events & EPOLLERR))\n            l->h.on_fd(l, io->fd);",
  "test_on_fd_called_on_error"),
 ("null_on_fd_left_watched", "loop.c",
  "            remove_io(l, io); /* nobody reads it: level triggering would spin */",
  "            (void)io; /* MUTANT: left watched */",
  "test_null_on_fd_does_not_spin_or_close"),
 ("null_on_fd_closes_it", "loop.c",
  "            remove_io(l, io); /* nobody reads it: level triggering would spin */",
  "            { int fd_ = io->fd; remove_io(l, io); close(fd_); } /* MUTANT */",
  "test_null_on_fd_does_not_spin_or_close"),
 ("free_closes_extra_fds", "loop.c",
  "    for (size_t fd = 0; fd < l->fdtab_len; fd++)\n        if (l->fdtab[fd])\n            remove_io(l, l->fdtab[fd]);",
  "    for (size_t fd = 0; fd < l->fdtab_len; fd++)\n        if (l->fdtab[fd]) {\n            remove_io(l, l->fdtab[fd]);\n            close((int)fd);\n        }",
  "test_free_does_not_close_extra_fds_or_listeners"),
 ("eintr_is_fatal", "loop.c",
  "    if (n < 0 && err != EINTR) {", "    if (n < 0) {",
  "test_run_once_returns_0_on_eintr"),
 ("stop_flag_not_cleared", "loop.c",
  "    l->stop_requested = 0;\n    l->stopping = 0;\n    errno = err;",
  "    l->stopping = 0;\n    errno = err;",
  "test_run_again_after_stop"),
 ("one_listener_only", "loop.c",
  "    l->listeners[l->nlisteners++] = io;",
  "    if (l->nlisteners) remove_io(l, l->listeners[0]);\n    l->listeners[0] = io;\n    l->nlisteners = 1;",
  "test_tcp_and_unix_listeners_side_by_side"),
 ("progress_stretches_close", "conn.c",
  "    if (c->closing || c->killed)\n        return;\n    c->stamp = l->now;",
  "    if (c->killed)\n        return;\n    if (c->closing) {\n        c->stamp = l->now + (uint64_t)l->o.close_timeout_ms;\n        return;\n    }\n    c->stamp = l->now;",
  "test_slow_reader_does_not_stretch_close_deadline"),
]
only = sys.argv[1:]
for name, f, old, new, test in M:
    if only and name not in only: continue
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(f"{top}/lib", f"{d}/lib", ignore=shutil.ignore_patterns("test"))
    p = f"{d}/lib/{f}"; s = open(p).read()
    if old not in s:
        print(name, "NOAPPLY"); bad += 1; continue
    open(p, "w").write(s.replace(old, new, 1))
    b = subprocess.run(["make", "-s", "-C", top, f"LIB={d}/lib", f"BUILD={d}/build", f"{d}/build/asan/test/test_promises"], capture_output=True, text=True)
    if b.returncode:
        print(name, "NOBUILD", b.stderr[-500:]); bad += 1; continue
    env = dict(os.environ, TU_FILTER=test)
    r = subprocess.run([f"{d}/build/asan/test/test_promises"], env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    msg = [l for l in out.splitlines() if "FAIL" in l or "not true" in l or "ERROR" in l or "error" in l.lower()][:3]
    bad += r.returncode == 0
    print(f"{name:32s} {test}: {'FAILED (caught)' if r.returncode else 'passed (SURVIVED)'}", "|", " / ".join(msg)[:300])
    shutil.rmtree(d, ignore_errors=True)
shutil.rmtree(work, ignore_errors=True)
sys.exit(1 if bad else 0)
