"""Limits (docs/DESIGN.md §1, lib/evloop.h options): what rbuf_max, wbuf_max, the close timeout,
the idle timeout and max_conns close, pause or refuse, and that each is
counted. (rbuf_max's and wbuf_high's own fault-6 scenarios, and fd
exhaustion under prlimit, are in test_faults.py.) STATS consistency is
checked after each by conftest.
"""

import json
import socket
import threading
import time
import zlib

from evltest import (assert_server_not_reading, check_pattern, push_until_blocked, ready,
                     wait_for)


def test_wbuf_max_closes_a_non_reader(start_server):
    """Fault 6 (bounded output). A client asks for 60 KB ECHO replies and
    reads none: once a reply would push its pending bytes past --wbuf-max
    128K, the connection is closed and counted in overflow_closed; pending
    never passed the cap (wbuf_peak), and what the client got before the
    close is a prefix of its replies.
    Seed fault: 6 (output, hard cap)."""
    srv = start_server("--wbuf-low", "16K", "--wbuf-high", "128K", "--wbuf-max", "128K",
                       "--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    text = "m" * 60000
    push_until_blocked(c, f"ECHO {text}\n".encode() * 40, seconds=3)
    # Kernel buffers may have taken every request at once: the client must
    # not read (and so drain the server) before the server has caught up.
    wait_for(lambda: srv.stats()["overflow_closed"] == 1, timeout=10,
             what="the non-reader closed at wbuf_max")
    got = c.read_eof(10)
    reply = (text + "\n").encode()
    assert (reply * 40).startswith(got), "bytes before the close are not a prefix of the replies"
    assert len(got) < len(reply) * 40, "every reply arrived: nothing was capped"
    st = srv.stats()
    assert st["overflow_closed"] == 1, st
    assert st["wbuf_peak"] <= 128 << 10, st


def test_rbuf_max_caps_unconsumed_input_only(start_server):
    """rbuf_max bounds input that is not consumed, not the traffic: with
    --rbuf-max 4K, 100 KB of pipelined PINGs in one send are all answered,
    a 1 MiB SINK streams through, and a 3 KB line sent in two halves is
    served; nothing is closed as overflowed.
    Seed fault: 6 (the input cap must not misfire)."""
    srv = start_server("--rbuf-max", "4K")
    c = srv.connect()
    c.send("PING\n" * 20000)
    assert c.read_exact(5 * 20000, timeout=30) == b"PONG\n" * 20000
    payload = bytes(range(256)) * 4096
    c.send(f"SINK {len(payload)}\n".encode() + payload)
    assert c.readline(10) == f"SUNK {len(payload)} {zlib.crc32(payload):08x}"
    half = "h" * 1500
    c.send("ECHO " + half)
    time.sleep(0.05)
    c.send(half + "\n")
    assert c.readline() == half + half
    assert srv.stats()["overflow_closed"] == 0


def test_close_timeout_aborts_a_stalled_graceful_close(start_server):
    """A graceful close (QUIT) to a client that reads nothing: the server
    flushes for at most --close-timeout 300 ms, then aborts and counts it
    (close_timeouts) instead of holding the connection forever.
    Seed fault: none: a graceful close is bounded in time."""
    srv = start_server("--close-timeout", "300", "--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    c.send(("ECHO " + "q" * 59995 + "\n") * 10 + "QUIT\n")  # 600 KB of replies, unread
    wait_for(lambda: srv.stats()["close_timeouts"] == 1, timeout=5,
             what="the close timeout to abort the stalled QUIT")
    st = srv.stats()
    assert st["conns"] == 1, st  # only the STATS connection
    assert c.closed_by_peer(5)


def test_idle_timeout_closes_and_counts(start_server):
    """--idle-timeout 400: connections with no progress in either direction
    are closed within twice the timeout and counted (idle_closed): three
    idle clients and one whose BLAST is stalled (bytes pending do not count
    as progress). A client sending a PING every 100 ms and one reading its
    BLAST slowly (4 KiB per 100 ms) make progress and stay open.
    Seed fault: none: the idle timeout."""
    # Small kernel buffers (--sndbuf 4096, rcvbuf 4096): with 128 KB in
    # between, a reader at 40 KiB/s would free room for the server's next
    # send only every second or so, and be idle in the library's sense.
    srv = start_server("--idle-timeout", "400", "--sndbuf", "4096")
    idle = ready(srv, 3)
    stalled = srv.connect(rcvbuf=4096)
    stalled.send(f"BLAST {1 << 30} 1\n")
    active = srv.connect()
    slow = srv.connect(rcvbuf=4096)
    slow.send(f"BLAST {1 << 30} 2\n")
    stop = threading.Event()
    errors = []
    slow_got = bytearray()

    def keep_busy():
        try:
            while not stop.is_set():
                assert active.cmd("PING", timeout=2) == "PONG"
                slow_got.extend(slow.sock.recv(4096))
                time.sleep(0.1)
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        # All four made their last progress before this point; twice the
        # timeout is 0.8 s, 2 s leaves room for ASan and a busy machine.
        # (Reading the stalled one would be progress: only STATS tells.)
        wait_for(lambda: srv.stats()["idle_closed"] >= 4, timeout=2.0,
                 what="4 idle connections closed within 2 s (timeout 0.4 s)")
        for c in idle + [stalled]:
            assert c.closed_by_peer(5)
        time.sleep(0.5)  # the busy ones pass a whole timeout more
        st = srv.stats()
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    assert st["idle_closed"] == 4, st
    assert st["conns"] == 3, st  # active, slow, STATS
    check_pattern(bytes(slow_got), 2)
    assert active.cmd("PING") == "PONG"


def test_max_conns_rejects_and_counts(start_server):
    """--max-conns 5: beyond five open connections new ones are accepted by
    the kernel and closed at once by the server, never reaching on_accept
    (accepted does not move), counted in rejected; once some close, new
    ones are served again.
    Seed fault: none: max_conns."""
    srv = start_server("--max-conns", "5")
    cs = ready(srv, 5)
    extra = [srv.connect() for _ in range(10)]
    for e in extra:
        try:
            e.send("PING\n")
        except OSError:
            pass  # already reset
        assert e.read_eof(5) == b"", "a connection beyond --max-conns was served"
    st = json.loads(cs[0].cmd("STATS"))
    assert st["rejected"] == 10 and st["conns"] == 5 and st["accepted"] == 5, st
    cs[3].close()
    cs[4].close()
    wait_for(lambda: json.loads(cs[0].cmd("STATS"))["conns"] == 3, what="two closes")
    more = ready(srv, 2)
    st = json.loads(more[0].cmd("STATS"))
    assert st["accepted"] == 7 and st["rejected"] == 10 and st["conns"] == 5, st


def test_wbuf_high_pause_does_not_starve_others(start_server):
    """Fault 6 and fairness: a client paused at --wbuf-high 64K (it reads
    nothing) keeps its unread requests, while other clients are served at
    once; when it reads, its remaining requests are served in order.
    Seed fault: 6 (output) and fairness."""
    srv = start_server("--wbuf-high", "64K", "--wbuf-low", "16K", "--sndbuf", "65536")
    hog = srv.connect(rcvbuf=65536)
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    line = "ECHO " + "h" * 1995 + "\n"
    sent = push_until_blocked(hog, (line * 2000).encode(), seconds=3, quiet=0.3)
    assert_server_not_reading(srv, hog, what="the hog paused at wbuf_high")
    n = sent // len(line)
    others = ready(srv, 5)
    for o in others:
        assert o.cmd("ECHO quick") == "quick"
    st = srv.stats()
    assert st["wbuf_peak"] <= (64 << 10) + 2 * len(line), st
    assert hog.read_exact(1996 * n, timeout=30) == (b"h" * 1995 + b"\n") * n
