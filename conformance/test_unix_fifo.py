"""Unix sockets, BCAST to stalled readers, and FIFO input (docs/PROTOCOL.md §4, §7).

BCAST policy (tools/testsrv/README.md): a receiver whose pending bytes
would pass --wbuf-max is closed by the library (overflow_closed, and
bcast_overflow in the server); one running a BLAST gets its MSG lines after
the BLAST, held in an outbox that is dropped past the cap (bcast_dropped).
STATS consistency after each scenario (conftest).
"""

import errno
import json
import os
import select
import socket
import threading
import time
import zlib

from evltest import (PING_P90_BESIDE_MAX, assert_no_spin, assert_prompt, check_pattern,
                     ping_rtts, ready, wait_for)

# The 90th percentile of BCAST round trips allowed (32 KB to 8 connections,
# 4 of them stalled). Measured over 5 runs on this shared 2-core machine:
# p50 0.15-0.20 ms, p90 0.30-0.95 ms, worst 1.8-4.9 ms. The bound is ~3x the
# worst p90 (it was 250 ms on the single worst BCAST).
BCAST_P90_MAX = 0.003


def _collect_lines(client, count, out, errors, timeout=30):
    try:
        for _ in range(count):
            out.append(client.readline(timeout))
    except AssertionError as e:
        errors.append(e)


class FifoWriter:
    """A writer on the server's FIFO that never blocks the test: opened
    O_NONBLOCK (ENXIO while no reader has it open: retried), each write
    bounded by a deadline (a server that stops reading fails the test
    instead of hanging it)."""

    def __init__(self, path, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise AssertionError(f"cannot open the FIFO for writing: {e}") from None
                time.sleep(0.01)

    def write(self, data, timeout=10.0):
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            assert left > 0, f"the server stopped reading its FIFO ({len(view)} bytes unwritten)"
            select.select([], [self.fd], [], left)
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- unix sockets -------------------------------------------------------------------

def test_unix_pipelining_and_half_close(start_server, tmp_path):
    """Fault 1 and 4 on a unix socket: 2 000 pipelined commands, a BLAST and
    a SINK in one write, then shutdown(SHUT_WR): every reply in order, the
    stream intact, then EOF.
    Seed fault: 1 and 4."""
    srv = start_server("--unix", str(tmp_path / "s.sock"))
    c = srv.connect()
    payload = os.urandom(100000)
    c.send("".join(f"ECHO {i}\n" for i in range(2000)).encode() + b"BLAST 300000 8\n"
           + f"SINK {len(payload)}\n".encode() + payload + b"PING\nECHO partial")
    c.sock.shutdown(socket.SHUT_WR)
    want = "".join(f"{i}\n" for i in range(2000)).encode()
    assert c.read_exact(len(want), timeout=20) == want
    check_pattern(c.read_exact(300000), 8)
    assert c.read_eof(10, graceful=True) == f"SUNK {len(payload)} {zlib.crc32(payload):08x}\nPONG\n".encode()


def test_unix_hup_data_delivered(start_server, tmp_path):
    """Fault 5 on a unix socket, where a peer's close() shows as EPOLLHUP:
    with the server stopped (SIGSTOP), a client writes a BCAST and closes;
    on SIGCONT the data and the hang-up come in one event, and the BCAST
    must still reach the watcher. Five times.
    Seed fault: 5."""
    srv = start_server("--unix", str(tmp_path / "s.sock"))
    (watcher,) = ready(srv, 1)
    for i in range(5):
        c = srv.connect()
        assert c.cmd("PING") == "PONG"
        with srv.stopped():
            c.send(f"BCAST bye {i}\n")
            c.close()
        assert watcher.readline(5) == f"MSG bye {i}", "data before a hang-up was dropped"


def test_unix_stalled_reader_beside_fast_client(start_server, tmp_path):
    """The no-blocking promise on unix sockets: a client stalls on a 1 GiB
    BLAST (--sndbuf 64K bounds what the kernel holds for it), and another
    client's PINGs stay prompt (p90 < PING_P90_MAX); the server's pending
    bytes stay bounded, and the stalled client, reading at last, gets the
    pattern.
    Seed fault: none directly: the no-blocking promise (and 6)."""
    srv = start_server("--unix", str(tmp_path / "s.sock"), "--sndbuf", "65536")
    fast = srv.connect()
    stalled = srv.connect()
    stalled.send(f"BLAST {1 << 30} 6\n")
    time.sleep(0.2)
    rtts = ping_rtts(fast, seconds=1.0)
    assert_prompt(rtts, "beside a stalled unix reader", PING_P90_BESIDE_MAX)
    assert srv.stats()["wbuf_peak"] <= 1 << 20
    check_pattern(stalled.read_exact(4 << 20, timeout=20), 6)


# ---- BCAST to stalled readers ---------------------------------------------------------------

def test_bcast_to_stalled_readers(start_server):
    """BCAST with receivers that do not read (fault 6: bounded per
    receiver): 4 stalled receivers, 1 stalled inside a BLAST, 2 fast ones.
    The sender BCASTs 100 lines of 32 KB (3.2 MB per receiver): the fast
    receivers get all 100 in order, the sender's own MSG replies come
    promptly, the 4 stalled receivers are closed once past --wbuf-max 1M
    (overflow_closed and bcast_overflow 4), the BLASTing one's outbox is
    dropped past the cap (bcast_dropped 1), and no connection ever held
    more than the cap.
    Seed fault: 6 (per-receiver bound)."""
    srv = start_server("--wbuf-max", "1M", "--sndbuf", "65536")
    stalled = ready(srv, 4, rcvbuf=65536)
    blasting = srv.connect(rcvbuf=65536)
    blasting.send(f"BLAST {1 << 40} 3\n")
    fast = ready(srv, 2)
    sender = srv.connect()
    assert sender.cmd("PING") == "PONG"
    time.sleep(0.2)  # the BLAST has stalled
    got = [[], []]
    errors = []
    readers = [threading.Thread(target=_collect_lines, args=(f, 100, got[k], errors))
               for k, f in enumerate(fast)]
    for t in readers:
        t.start()
    times = []
    for i in range(100):
        # The fast receivers may lag a few lines, never by the cap (see
        # test_fifo_lines_to_a_stalled_receiver).
        wait_for(lambda: min(len(got[0]), len(got[1])) >= i - 8 or errors, timeout=10,
                 interval=0.002, what=f"the fast receivers at line {i - 8}")
        t0 = time.monotonic()
        text = f"{i:03d} " + "x" * 32000
        assert sender.cmd("BCAST " + text, timeout=5) == "MSG " + text
        times.append(time.monotonic() - t0)
    for t in readers:
        t.join(30)
    assert not errors, errors
    for k in range(2):
        assert [g[4:7] for g in got[k]] == [f"{i:03d}" for i in range(100)], f"fast receiver {k}"
    # A BCAST writes 32 KB to 8 connections. Measured (5 runs): see
    # BCAST_P90_MAX; the worst single BCAST is reported, not judged.
    assert_prompt(times, "per BCAST of 32 KB to 8 connections", BCAST_P90_MAX)
    st = json.loads(sender.cmd("STATS"))
    assert st["bcast_overflow"] == 4 and st["overflow_closed"] == 4, st
    assert st["bcast_dropped"] == 1 and st["outbox_bytes"] == 0, st
    assert st["wbuf_peak"] <= 1 << 20, st
    for c in stalled + [blasting]:
        assert c.closed_by_peer(5)


# ---- FIFO input ------------------------------------------------------------------------------

def test_fifo_writers_come_and_go_no_spin(start_server, tmp_path):
    """--fifo: 10 writers one after another, each writing two lines and
    closing; every line reaches both clients as MSG, in order. When the
    last writer has closed, and while a writer holds the FIFO open without
    writing, the server's CPU time stays flat (a hung-up FIFO is
    level-triggered readable forever); a later writer's line still
    arrives.
    Seed fault: 1 (a FIFO's EOF: no spin)."""
    path = str(tmp_path / "in.fifo")
    srv = start_server("--fifo", path)
    a, b = ready(srv, 2)
    for i in range(10):
        with FifoWriter(path) as w:
            w.write(f"line {i}a\nline {i}b\n".encode())
        for c in (a, b):
            assert c.readline(5) == f"MSG line {i}a"
            assert c.readline(5) == f"MSG line {i}b"
        # The next writer starts a new stream only once this EOF was seen.
        wait_for(lambda: srv.stats()["fifo_reopens"] >= i + 1, what=f"writer {i}'s EOF")
    assert_no_spin(srv, "after the FIFO's writers left")
    with FifoWriter(path) as w:
        assert_no_spin(srv, "with a silent FIFO writer")
        w.write(b"late\n")
        assert a.readline(5) == "MSG late"
        assert b.readline(5) == "MSG late"
    st = srv.stats()
    assert st["fifo_lines"] == 21 and st["bcast_msgs"] == 21, st


def test_fifo_lines_to_a_stalled_receiver(start_server, tmp_path):
    """FIFO lines follow the BCAST policy: 100 lines of 16 KB written into
    the FIFO reach a reading client in full, while a client that reads
    nothing is closed once past --wbuf-max 256K (bcast_overflow 1).
    Seed fault: 6 (per-receiver bound)."""
    path = str(tmp_path / "in.fifo")
    srv = start_server("--fifo", path, "--wbuf-high", "256K", "--wbuf-max", "256K",
                       "--sndbuf", "65536")
    (stalled,) = ready(srv, 1, rcvbuf=65536)
    (reader,) = ready(srv, 1)
    got, errors = [], []
    t = threading.Thread(target=_collect_lines, args=(reader, 100, got, errors))
    t.start()
    with FifoWriter(path) as w:
        for i in range(100):
            # The reader may lag a few lines, never by the cap: a Python
            # thread can fall behind a producer that does not wait.
            wait_for(lambda: len(got) >= i - 4 or errors, timeout=10, interval=0.002,
                     what=f"the reader at line {i - 4}")
            w.write(f"{i:03d} {'y' * 16000}\n".encode())
    t.join(30)
    assert not errors, errors
    assert [g[4:7] for g in got] == [f"{i:03d}" for i in range(100)]
    st = srv.stats()
    assert st["bcast_overflow"] == 1 and st["fifo_lines"] == 100, st
    assert stalled.closed_by_peer(5)
