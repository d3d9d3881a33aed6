"""Flow scenarios (conformance/README.md): pipelining, half-close (shutdown and socat),
peer resets with writes pending, and slow or stalled readers beside a fast
client. The STATS consistency check runs after each (conftest).

Latency bounds: a PING round trip to an ASan server on loopback takes well
under 1 ms when the loop is free. Beside slow and stalled readers the 90th
percentile of a fast client's round trips must stay under
evltest.PING_P90_MAX (measured values there); the single worst sample is
reported, not judged. A loop that blocks on a stalled socket, or serves a
whole stream before anything else, delays nearly every PING by far
(forever, or seconds).
"""

import random
import socket
import subprocess
import threading
import time
import zlib

import pytest

from evltest import (PING_P90_BESIDE_MAX, assert_prompt, assert_server_not_reading,
                     check_pattern, linger0_close, pattern, ping_rtts, push_until_blocked,
                     ready)


def _slow_reader(sock, rate_bytes, step, seconds, out):
    """Reads at most rate_bytes every step seconds for `seconds`, into out."""
    deadline = time.monotonic() + seconds
    sock.settimeout(step)
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            data = sock.recv(rate_bytes)
        except socket.timeout:
            continue
        if not data:
            break
        out.append(data)
        time.sleep(max(0.0, step - (time.monotonic() - t0)))


# ---- slow and stalled readers ----------------------------------------------------

def test_stalled_reader_beside_fast_client(start_server):
    """A stalled reader must not block the loop (the core promise: no write
    ever blocks). One client asks for a 1 GiB BLAST and another for 8 MB of
    ECHO replies, and neither reads (--sndbuf 64K so the server meets
    EAGAIN at once); meanwhile a fast client's PINGs stay prompt (p100 <
    PING_P90_MAX). Then the stalled clients read and get their bytes intact.
    (The ECHO client's requests stop being read at wbuf_high: it sends
    until the server stops taking them.)
    Guards the blocking-write mutant and seed fault 6 (bounded buffers).
    Seed fault: none directly: the no-blocking promise (and 6, bounded buffers)."""
    srv = start_server("--sndbuf", "65536")
    fast = srv.connect()
    blaster = srv.connect(rcvbuf=65536)
    blaster.send(f"BLAST {1 << 30} 9\n")
    echoer = srv.connect(rcvbuf=65536)
    # A small send buffer: kernel buffers alone must not take all 8 MB.
    echoer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    line = "ECHO " + "e" * 795 + "\n"
    # Up to 8 MB of replies asked for; the server stops reading at wbuf_high.
    sent = push_until_blocked(echoer, (line * 10000).encode(), seconds=3, quiet=0.3)
    nlines = sent // len(line)
    assert nlines < 10000, "the server served a non-reader without bound"
    assert_server_not_reading(srv, echoer, what="the ECHO client paused at wbuf_high")
    rtts = ping_rtts(fast, seconds=1.0)
    assert_prompt(rtts, "beside stalled readers", PING_P90_BESIDE_MAX)
    st = srv.stats()
    assert st["wbuf_peak"] <= (1 << 20) + 2 * len(line), st
    check_pattern(blaster.read_exact(4 << 20, timeout=20), 9)
    assert echoer.read_exact(796 * nlines, timeout=30) == (b"e" * 795 + b"\n") * nlines


def test_slow_reader_beside_fast_client(start_server):
    """Slow readers must not delay a fast client. Two read a BLAST slowly:
    one through socat with a tiny receive buffer (rcvbuf=4096) whose output
    the test drains at ~16 KiB/s, one a socket read at ~20 KiB/s; beside
    them a fast client's PINGs stay prompt (p90 < PING_P90_MAX). Every byte
    the slow readers got is the BLAST pattern, in order (a write path that
    sends new bytes before queued ones shows here).
    Seed fault: none: fairness and write order."""
    srv = start_server("--sndbuf", "65536")
    fast = srv.connect()
    assert fast.cmd("PING") == "PONG"
    n = 64 << 20
    socat = subprocess.Popen(["socat", "-b", "4096", "-", f"TCP:127.0.0.1:{srv.port},rcvbuf=4096"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        socat.stdin.write(f"BLAST {n} 33\n".encode())
        socat.stdin.flush()
        slow = srv.connect(rcvbuf=4096)
        slow.send(f"BLAST {n} 34\n")
        got_socat, got_slow = [], []

        def drain_socat():
            deadline = time.monotonic() + 1.6
            while time.monotonic() < deadline:
                got_socat.append(socat.stdout.read1(4096))
                time.sleep(0.25)

        threads = [threading.Thread(target=drain_socat),
                   threading.Thread(target=_slow_reader,
                                    args=(slow.sock, 2048, 0.1, 1.6, got_slow))]
        for t in threads:
            t.start()
        time.sleep(0.1)
        rtts = ping_rtts(fast, seconds=1.2)
        for t in threads:
            t.join(10)
        assert_prompt(rtts, "beside slow readers", PING_P90_BESIDE_MAX)
        a, b = b"".join(got_socat), b"".join(got_slow)
        assert len(a) > 4096 and len(b) > 4096, (len(a), len(b))
        assert len(a) < n and len(b) < n, "the slow readers were not slow"
        check_pattern(a, 33)
        check_pattern(b, 34)
        # The stream goes on where the slow reader left it.
        check_pattern(slow.read_exact(1 << 20, timeout=20), 34, len(b))
    finally:
        socat.kill()
        socat.wait(10)
        for f in (socat.stdin, socat.stdout, socat.stderr):
            f.close()


# ---- pipelining ------------------------------------------------------------------------

def test_pipelining_many_commands_one_segment(start_server):
    """Fault 4 and write ordering. 3 000 commands of every kind in ONE send
    of < 64 KB (one loopback segment): every reply, in order. Then 4 000
    numbered ECHOs with 400-byte payloads in one send to a server with a
    small --sndbuf while the client reads slowly, so replies queue in the
    server's buffer: each reply must come after all older ones (a write that
    bypasses queued bytes reorders them).
    Seed fault: 4 (and write order)."""
    srv = start_server("--sndbuf", "8192")
    c = srv.connect()
    cmds, want = [], []
    rnd = random.Random(4)
    for i in range(3000):
        k = rnd.randrange(4)
        if k == 0:
            cmds.append("PING"), want.append("PONG")
        elif k == 1:
            cmds.append(f"ECHO {i}"), want.append(str(i))
        elif k == 2:
            cmds.append("NOPE"), want.append("ERR unknown")
        else:
            cmds.append("BLAST x 1"), want.append("ERR syntax")
    payload = ("\n".join(cmds) + "\n").encode()
    assert len(payload) < 65000
    c.send(payload)
    got = c.read_exact(len("\n".join(want)) + 1, timeout=30).decode().split("\n")[:-1]
    assert got == want

    d = srv.connect(rcvbuf=8192)
    pad = "p" * 400
    # One send of 1.6 MB, from a thread: the server stops reading at
    # wbuf_high while this test has not read the replies yet.
    sender = threading.Thread(target=d.send, args=("".join(f"ECHO {i} {pad}\n" for i in range(4000)),))
    sender.start()
    try:
        for i in range(4000):
            line = d.readline(10)
            assert line == f"{i} {pad}", f"reply {i} out of order: {line[:20]!r}"
            if i % 200 == 0:
                time.sleep(0.01)  # let the server's buffer fill meanwhile
    finally:
        sender.join(20)


def test_pipelining_one_byte_per_segment(server):
    """Fault 4's opposite: commands split one byte per segment (TCP_NODELAY,
    a pause after each byte) are reassembled; every reply arrives and none
    comes early.
    Seed fault: 4 (its opposite: input in pieces)."""
    c = server.connect()
    script = "PING\nECHO split up\nSINK 3\nabcBLAST 10 2\nPING\n"
    for ch in script.encode():
        c.send(bytes([ch]))
        time.sleep(0.002)  # pacing, so that each byte is its own segment
    assert c.readline() == "PONG"
    assert c.readline() == "split up"
    assert c.readline() == f"SUNK 3 {zlib.crc32(b'abc'):08x}"
    check_pattern(c.read_exact(10), 2)
    assert c.readline() == "PONG"


def test_pipelines_of_many_clients_stay_separate(start_server):
    """20 clients each pipeline 500 numbered ECHOs at the same time: each
    gets exactly its own replies, in its own order (per-connection buffers,
    fair dispatch).
    Seed fault: none: per-connection order and fairness."""
    srv = start_server()
    clients = [srv.connect() for _ in range(20)]
    for k, c in enumerate(clients):
        c.send("".join(f"ECHO {k}:{i}\n" for i in range(500)))
    for k, c in enumerate(clients):
        got = c.read_exact(sum(len(f"{k}:{i}\n") for i in range(500)), timeout=30)
        assert got.decode() == "".join(f"{k}:{i}\n" for i in range(500)), f"client {k}"


# ---- half-close ------------------------------------------------------------------------

def test_half_close_shutdown_wr(start_server):
    """Fault 1 (EOF handling). After shutdown(SHUT_WR) the server still
    serves every complete command sent before it (a BLAST of 3 MiB, a SINK,
    ECHOs), flushes all replies, drops the partial last line, then closes.
    A BCAST from another client afterwards must not touch the closed
    connection (its on_close ran).
    Seed fault: 1 (and a skipped on_close after EOF)."""
    srv = start_server("--sndbuf", "65536")
    other = srv.connect()
    assert other.cmd("PING") == "PONG"
    c = srv.connect(rcvbuf=65536)
    n = 3 << 20
    c.send(f"ECHO first\nBLAST {n} 7\nSINK 4\nwxyzECHO last\nECHO never")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.readline() == "first"
    check_pattern(c.read_exact(n, timeout=30), 7)
    assert c.read_eof(10, graceful=True) == f"SUNK 4 {zlib.crc32(b'wxyz'):08x}\nlast\n".encode()
    assert other.cmd("BCAST after the close") == "MSG after the close"
    srv.settled_stats(conns=1, close_clients=False)


@pytest.mark.parametrize("shut,t", [("shut-down", "10"), ("shut-none", "1"), ("shut-down", "0")])
def test_half_close_socat(start_server, shut, t):
    """Half-close through socat (guards fault 1). socat sends the commands
    from stdin and, at stdin's EOF, shuts the socket as its address option
    says: shut-down = shutdown(SHUT_WR), then wait (-t 10) for the rest:
    every reply arrives and the server's close ends socat long before the
    10 s; shut-none = no half-close, socat closes after -t 1: the replies
    still arrive; shut-down with -t 0: socat closes right after its FIN, so
    replies meet a closed socket (RST) and the server must survive it.
    (socat 1.7.4's shut-close fails by itself: xiopoll on a closed fd.)
    Seed fault: 1."""
    srv = start_server()
    n = 200000
    script = f"PING\nECHO via socat\nBLAST {n} 12\nPING\n".encode()
    t0 = time.monotonic()
    p = subprocess.run(["socat", "-t", t, "-", f"TCP:127.0.0.1:{srv.port},{shut}"],
                       input=script, capture_output=True, timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout
    want = b"PONG\nvia socat\n" + pattern(n, 12) + b"PONG\n"
    if t == "0":
        assert want.startswith(out), "what arrived before the close is not a prefix of the replies"
    else:
        assert len(out) == len(want), f"{len(out)} bytes, want {len(want)}"
        assert out == want
    if t == "10":
        # The server closes right after its replies; 5 s is half of -t.
        assert took < 5, f"socat waited {took:.1f} s: the server did not close after EOF"
    assert srv.connect().cmd("PING") == "PONG"


# ---- resets ---------------------------------------------------------------------------

@pytest.mark.parametrize("pending", ["blast", "half-closed-blast", "echo-replies", "mid-sink",
                                     "mid-line"])
def test_peer_reset_with_writes_pending_repeated(start_server, pending):
    """Peer resets (SO_LINGER 0) with the server in five states, 25 times
    each: a BLAST pending; the same after the peer's FIN (the server's
    socket in CLOSE_WAIT: its next send fails with EPIPE, the SIGPIPE case);
    2 MB of ECHO replies pending; a SINK half fed; a partial command line. The server survives (fault 8: no SIGPIPE), every
    reset connection is closed and counted, and nothing stays pending
    (STATS settle). A probe client is served between rounds.
    Seed fault: 8 (and 5: resets with data unread)."""
    srv = start_server("--sndbuf", "65536")
    (probe,) = ready(srv, 1)
    for i in range(25):
        c = srv.connect(rcvbuf=65536)
        if pending.endswith("blast"):
            c.send(f"BLAST {1 << 30} {i}\n")
            if pending == "half-closed-blast":
                c.sock.shutdown(socket.SHUT_WR)
            # more than the buffers in between hold: the server wrote since
            check_pattern(c.read_exact(1 << 20), i)
        elif pending == "echo-replies":
            c.send(("ECHO " + "r" * 995 + "\n") * 2000)
            assert c.read_exact(996)[:5] == b"rrrrr"
        elif pending == "mid-sink":
            c.send("SINK 1000000\n" + "s" * 500000)
        else:
            c.send("ECHO unfinished li")
        time.sleep(0.01)
        linger0_close(c)
        assert probe.cmd("PING") == "PONG"
    st = srv.settled_stats(conns=1, close_clients=False)
    assert st["closed"] >= 25
    assert srv.stop() == 0


def test_client_closes_with_replies_unread(server):
    """A client that pipelines 2 000 commands and closes without reading
    (its kernel answers the replies with an RST): the server survives,
    counts the close, and serves the next client.
    Seed fault: 8."""
    for _ in range(10):
        c = server.connect()
        c.send("PING\n" * 1000 + "BLAST 1000000 1\n" + "ECHO x\n" * 1000)
        c.close()
    assert server.connect().cmd("PING") == "PONG"
