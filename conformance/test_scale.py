"""Many connections (docs/DESIGN.md §1 promise 8): 10 000 idle connections at once,
all served and then closed cleanly, cheap while idle; and connection churn
with resets. STATS consistency after each (conftest).
"""

import resource
import socket

import pytest

from evltest import Client, assert_no_spin, linger0_close, san_env, wait_for


def _raise_nofile(need):
    """Raises this process's RLIMIT_NOFILE soft limit (and the hard one if
    it must and may) to at least need; returns the old limits. The server
    started afterwards inherits them."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft >= need:
        return old
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError) as e:
        # Not a skip: 10 000 connections at once is a promise of the suite
        # (conformance/README.md), and this machine's kind allows 20 000 fds.
        pytest.fail(f"cannot raise RLIMIT_NOFILE to {need} (limits {old}): {e}")
    return old


@pytest.fixture
def nofile_for_10k():
    """10 000 sockets plus a margin, for this process and the server (each
    holds one end of every connection; the server inherits the limit)."""
    old = _raise_nofile(10500)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_ten_thousand_idle_connections(nofile_for_10k, start_server):
    """10 000 connections open at once (the server inherits a raised fd
    limit): all are accepted, each is served a PING, then they sit idle:
    the server uses no CPU for them (no spin, no per-connection timers) and
    little memory (idle connections hold no buffers), and when all close
    the counters return to zero (conns == accepted - closed, nothing
    pending).
    Seed fault: none: memory per idle connection, no idle CPU."""
    n = 10000
    srv = start_server("--tick-ms", "1000")
    rss0 = srv.rss_kb()
    socks = []
    try:
        # In batches that fit the listen backlog (SOMAXCONN, 4096): a full
        # backlog drops SYNs and the client retries after a second.
        for start in range(0, n, 1000):
            for _ in range(1000):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(("127.0.0.1", srv.port))
                socks.append(s)
            want = len(socks)
            wait_for(lambda: srv.stats()["accepted"] >= want, timeout=20,
                     what=f"{want} connections accepted")
        st = srv.stats()
        assert st["conns"] == n + 1 and st["accepted"] - st["closed"] == st["conns"], st

        for s in socks:
            s.sendall(b"PING\n")
        for i, s in enumerate(socks):
            got = b""
            while not got.endswith(b"\n"):
                data = s.recv(64)
                assert data, f"connection {i} closed"
                got += data
            assert got == b"PONG\n", f"connection {i}: {got!r}"

        st = srv.stats()
        assert st["wbuf_bytes"] == 0 and st["rbuf_bytes"] == 0, st
        per_conn = (srv.rss_kb() - rss0) * 1024 / n
        # An idle connection is a struct, its handler state and an fdtab
        # slot: a few hundred bytes, about 1 KiB with ASan's redzones.
        # Measured (VmRSS from /proc, ASan server): 979 bytes per connection,
        # the same in 3 runs. 2 KiB is 2x that: any buffer kept while idle
        # (a 4 KiB page each) passes it.
        assert per_conn < 2048, f"{per_conn:.0f} bytes of RSS per idle connection"
        assert_no_spin(srv, f"with {n} idle connections")
    finally:
        for s in socks:
            s.close()
    st = srv.settled_stats(timeout=30)  # 10 000 EOFs: well under a second
    assert st["accepted"] >= n and st["closed"] >= n, st
    c = srv.connect()
    assert c.cmd("PING") == "PONG"


def test_connection_churn_with_resets(start_server):
    """Connection churn: 1 500 connections one after another, each served a
    PING then closed, every third with a reset (SO_LINGER 0) and every
    fifth reset with a BLAST pending. The counters match the connections
    made, and memory does not grow with the churn (the second half costs
    about what the first did: nothing kept per closed connection).
    Seed fault: 8 and 9 (fds closed and reused all the time)."""
    # Without ASan's quarantine (which keeps freed memory on purpose, to
    # catch use-after-free) RSS shows what the server keeps.
    srv = start_server("--sndbuf", "65536",
                       env={"ASAN_OPTIONS": san_env()["ASAN_OPTIONS"] + ":quarantine_size_mb=0"})

    def churn(count):
        for i in range(count):
            c = Client.tcp(srv.port, rcvbuf=65536)
            if i % 5 == 0:
                c.send(f"BLAST {1 << 30} {i}\nPING\n")
                c.read_exact(1000)
            else:
                assert c.cmd("PING") == "PONG"
            if i % 3 == 0 or i % 5 == 0:
                linger0_close(c)
            else:
                c.close()

    churn(500)
    wait_for(lambda: srv.stats()["conns"] == 1, timeout=10, what="the churned connections closed")
    rss1 = srv.rss_kb()
    churn(1000)
    st = srv.settled_stats()
    # The allocator's caches and page granularity only: measured (4 runs,
    # ASan, /proc VmRSS) 1.0-1.7 MiB; a kept 64 KiB buffer per connection
    # would add 64 MB, a 4 KiB one 4 MB. Bound 5 MiB (~3x; it was 16 MiB).
    grown = srv.rss_kb() - rss1
    assert grown < 5 << 10, f"RSS grew by {grown} KiB over 1000 connections"
    # 1500 churned + the STATS connections, all but the last closed.
    assert st["accepted"] >= 1500 and st["accepted"] - st["closed"] == 1, st
