"""evl-testsrv --mode proxy: backpressure across two sockets.

Each scenario runs an upstream test server (--mode cmd) and a proxy in
front of it; the client speaks the command protocol through the proxy. The
proxy is the classic way a "no write blocks" loop fails in production: a
fast upstream, a slow downstream, and a loop that buffers the difference
without bound (or blocks). Here the proxy must stop reading the upstream
while the client's pending output is at wbuf_high, so its memory stays
bounded by the watermarks while the upstream waits, and every byte still
arrives in order.
"""

import os
import socket
import time

import pytest

from evltest import Client, check_pattern, linger0_close, wait_for


def proxy(start_server, upstream, *flags):
    where = upstream.path if upstream.path else f"127.0.0.1:{upstream.port}"
    return start_server("--mode", "proxy", "--upstream", where, *flags)


def settled_upstream(up):
    """The upstream is at rest with only the STATS connection: the proxy
    closed its side of every pair (nothing leaked upstream)."""
    return up.settled_stats(conns=0, close_clients=False)


def test_proxy_forwards_both_ways(start_server):
    up = start_server()
    px = proxy(start_server, up)
    c = px.connect()
    assert c.cmd("PING") == "PONG"
    assert c.cmd("ECHO through the proxy") == "through the proxy"
    c.send("BLAST 100000 3\n")
    check_pattern(c.read_exact(100000), 3)
    assert up.stats()["conns"] == 2  # our pair's upstream side + STATS
    c.close()
    settled_upstream(up)


def test_proxy_over_unix_upstream(start_server, tmp_path):
    up = start_server("--unix", str(tmp_path / "up.sock"))
    px = proxy(start_server, up)
    c = px.connect()
    assert c.cmd("PING") == "PONG"
    c.close()
    settled_upstream(up)


BLAST = 256 << 20  # bytes the upstream streams at the slow client
WBUF_HIGH = 1 << 20


def test_proxy_slow_client_bounds_memory_and_pauses_upstream(start_server):
    """The client reads nothing for 2 s while the upstream BLASTs 256 MiB:
    the proxy's RSS grows by no more than a few wbuf_high (both sides'
    buffers plus the allocator's slack), the upstream is left holding the
    rest (its pending output does not drain and it has sent only a few MiB),
    then the client reads everything, in order."""
    up = start_server()
    px = proxy(start_server, up, "--wbuf-high", str(WBUF_HIGH))
    c = Client.tcp(px.port, rcvbuf=4096)
    assert c.cmd("PING") == "PONG"
    rss0 = px.rss_kb()
    c.send(f"BLAST {BLAST} 5\n")
    time.sleep(2.0)
    st1 = up.stats()
    time.sleep(0.5)
    st2 = up.stats()
    grown = px.rss_kb() - rss0
    # measured: ~2.3 MiB with wbuf_high 1 MiB (two 1 MiB buffers at most)
    assert grown < 6 * 1024, f"proxy RSS grew {grown} KiB with a stalled client"
    # the upstream is paused: bytes wait in its own buffer, and stay there
    assert st2["wbuf_bytes"] > 0 and st1["wbuf_bytes"] > 0, (st1, st2)
    assert st2["blast_yields"] >= 1
    # now read it all: every byte, in order
    got = 0
    while got < BLAST:
        n = min(8 << 20, BLAST - got)
        check_pattern(c.read_exact(n, timeout=60), 5, offset=got)
        got += n
    assert c.cmd("PING") == "PONG"
    c.close()
    settled_upstream(up)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_proxy_upstream_refused_closes_the_client(start_server):
    px = start_server("--mode", "proxy", "--upstream", f"127.0.0.1:{closed_port()}")
    time.sleep(0.3)  # the loop runs: its signalfd is open
    fds = px.fd_count()
    for _ in range(20):
        c = Client.tcp(px.port)
        c.send("PING\n")
        t0 = time.monotonic()
        assert c.read_eof(timeout=5) == b""  # closed, nothing forwarded back
        assert time.monotonic() - t0 < 3
        c.close()
    wait_for(lambda: px.fd_count() == fds, timeout=5, what="the proxy's fds back to the start")


def test_proxy_upstream_connect_timeout_closes_the_client(start_server):
    """An upstream whose accept queue is full drops our SYN: the proxy's
    connect times out (5 s) and the client is closed."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    time.sleep(0.2)
    try:
        px = start_server("--mode", "proxy", "--upstream", f"127.0.0.1:{port}")
        time.sleep(0.3)  # the loop runs: its signalfd is open
        fds = px.fd_count()
        c = Client.tcp(px.port)
        t0 = time.monotonic()
        assert c.read_eof(timeout=15) == b""
        took = time.monotonic() - t0
        assert 4.0 < took < 12.0, f"closed after {took:.1f} s, want the 5 s connect timeout"
        c.close()
        wait_for(lambda: px.fd_count() == fds, timeout=5, what="the proxy's fds back")
    finally:
        for s in fill:
            s.close()
        ls.close()


def test_proxy_half_close_from_the_client(start_server):
    """The client sends a command and shuts its write side: the upstream
    still answers through the proxy, then both sides close cleanly."""
    up = start_server()
    px = proxy(start_server, up)
    c = px.connect()
    c.send("PING\nECHO last words\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_eof(timeout=5) == b"PONG\nlast words\n"
    settled_upstream(up)


def test_proxy_half_close_from_the_upstream(start_server):
    """QUIT makes the upstream say BYE and shut its write side: the client
    gets BYE then EOF, while its own write side stays open; once it closes
    too, the upstream's side goes."""
    up = start_server()
    px = proxy(start_server, up)
    c = px.connect()
    c.send("QUIT\n")
    assert c.read_eof(timeout=5) == b"BYE\n"
    assert up.stats()["conns"] == 2  # upstream side lingers: our FIN not sent yet
    c.sock.shutdown(socket.SHUT_WR)
    settled_upstream(up)
    c.close()


def test_proxy_client_reset_aborts_the_upstream_side(start_server):
    up = start_server()
    px = proxy(start_server, up)
    c = Client.tcp(px.port, rcvbuf=4096)
    c.send(f"BLAST {64 << 20} 9\n")
    c.read_exact(1000)
    linger0_close(c.sock)
    settled_upstream(up)  # the upstream side was closed, its BLAST dropped
    d = px.connect()
    assert d.cmd("PING") == "PONG"  # the proxy still serves
    d.close()


def test_proxy_upstream_abort_closes_the_client(start_server):
    up = start_server()
    px = proxy(start_server, up)
    c = px.connect()
    assert c.cmd("PING") == "PONG"
    c.send("CLOSE\n")
    c.read_eof(timeout=5)
    settled_upstream(up)


@pytest.mark.parametrize("flags", [
    ["--mode", "proxy"],
    ["--upstream", "127.0.0.1:1"],
    ["--mode", "proxy", "--upstream", "localhost:80"],
    ["--mode", "proxy", "--upstream", "127.0.0.1:0"],
    ["--mode", "proxy", "--upstream", "127.0.0.1"],
])
def test_proxy_bad_flags_exit_2(start_server, flags):
    srv = start_server(*flags, expect_listen=False)
    assert srv.wait() == 2
    assert "usage" in srv.stderr()
