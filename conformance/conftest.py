"""Fixtures for the conformance suite: each test starts its own evl-testsrv.

The server binary is $SERVER (default build/asan/evl-testsrv, relative paths
from the repository root). Run:

    make conformance                      # builds the ASan server, then this
    SERVER=build/evl-testsrv /usr/bin/python3 -m pytest -q conformance

Fixtures
    start_server(*flags, expect_listen=True) -> Server
        Starts a server with flags (plus "--port 0" unless the flags name a
        --port, --listen or --unix), waits for its LISTENING line and returns
        a Server, which unpacks as (port, pid, process) and offers
        connect(), stats(), cpu_seconds(), send_signal(), stop(), wait().
        At teardown, for every server that listened and is still running,
        STATS must settle first (Server.settled_stats: the test's clients
        from connect() are closed, then conns == accepted - closed ==
        server.expect_conns, default 0, besides the STATS connection, and
        wbuf_bytes == rbuf_bytes == outbox_bytes == 0 within 10 s; a test
        that means to leave connections open sets server.expect_conns, and
        servers without STATS (--mode echo|resp|http) skip it: check_stats).
        Then its fds, seen in /proc/PID/fd, must be back to those it had at
        start plus one per connection left open (Server.settled_fds: an fd
        leak that the library's counters cannot show).
        Then it gets SIGTERM by its PID and must exit with code
        server.expect_exit (0 unless a test says otherwise) within 15 s; one
        that does not is killed, and the test errors. A server the test already stopped or waited for (stop(),
        wait()), or started with expect_listen=False (bad flags...), is the
        test's to check: it is only killed at teardown if still running.
    server
        start_server() with no flags.

    start_server(..., wrapper=[cmd, args...], env={...}) runs the server under
        a wrapper (strace, fiu-run); pid is still the server's own.

Helpers (import from evltest): Client, Server, pattern, check_pattern,
pattern_byte, cpu_seconds, cpu_used, wait_for, ready, linger0_close,
push_until_blocked, ping_rtts, proc_state, san_env. See evltest.py.
"""

import pytest

from evltest import Server


@pytest.fixture
def start_server():
    started = []

    def start(*flags, expect_listen=True, wrapper=(), env=None):
        srv = Server(flags, wrapper=wrapper, env=env)
        srv.expect_exit = 0
        started.append(srv)
        return srv.start(expect_listen=expect_listen)

    yield start

    problems = []
    for srv in started:
        listened = srv.port is not None or srv.path is not None
        if not listened or srv.waited:
            srv.close()
            continue
        if srv.check_stats and srv.alive():
            try:
                srv.settled_stats()
                srv.settled_fds()
            except AssertionError as e:
                problems.append(f"server {srv.flags}: {e}")
        rc = srv.stop()
        if rc != srv.expect_exit:
            what = "did not exit after SIGTERM (killed)" if rc is None else f"exited with {rc}"
            problems.append(f"server {srv.flags} {what}, want {srv.expect_exit}; "
                            f"stderr:\n{srv.stderr()[-3000:]}")
        srv.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server(start_server):
    return start_server()
