"""Scenarios under injected faults (issue 4): the same workload runs on a
server whose system calls fail now and then in ways a correct loop must
absorb: epoll_wait interrupted (EINTR, seed fault 2), sends refused
(EAGAIN: the socket looks full, so bytes must be queued and sent later in
order), reads interrupted or cut short. The replies must be the same and
nothing may be lost or reordered; STATS must settle as usual (conftest).

strace injects in the kernel interface (-e inject=SYSCALL:error=E:when=
FIRST+STEP). It is attached to the running server (-p PID), so its counts
start after the server's start-up (the loader's and ASan's reads stay
untouched), and detached before the server stops: LeakSanitizer, which
cannot run under ptrace (hence the usual detect_leaks=0), still checks
the exit. libfiu (fiu-run -x) injects in libc's send, sendmsg
and read, with a probability, and can shorten reads. Each test also checks
that injections really happened (strace's log, or a live fault point).
"""

import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import zlib


from evltest import check_pattern, server_recv_q, wait_for

# strace and fiu-run come from tools/deps.sh (make conformance installs them):
# a missing tool fails these tests rather than skipping them.
def test_fault_tools_installed():
    """The injection tools exist (tools/deps.sh conformance group); without
    them the scenarios below would prove nothing."""
    assert shutil.which("strace"), "strace not installed: run tools/deps.sh conformance"
    assert shutil.which("fiu-run"), "fiu-run not installed: run tools/deps.sh conformance"


def workload(srv):
    """A fixed script over five connections; asserts every reply."""
    a = srv.connect()
    sink = os.urandom(200000)
    echoes = "".join(f"ECHO {i} {'e' * (i % 50)}\n" for i in range(500))
    a.send(f"PING\nECHO a  b\nBLAST 300000 5\nSINK {len(sink)}\n".encode() + sink
           + b"PING\n" + echoes.encode())
    assert a.readline() == "PONG"
    assert a.readline() == "a  b"
    check_pattern(a.read_exact(300000), 5)
    assert a.readline() == f"SUNK {len(sink)} {zlib.crc32(sink):08x}"
    assert a.readline() == "PONG"
    want = "".join(f"{i} {'e' * (i % 50)}\n" for i in range(500)).encode()
    assert a.read_exact(len(want), timeout=20) == want

    b, c = srv.connect(), srv.connect()
    assert b.cmd("PING") == "PONG" and c.cmd("PING") == "PONG"
    for i in range(20):
        b.send(f"BCAST news {i}\n")
    for i in range(20):
        assert b.readline() == f"MSG news {i}"
        assert c.readline() == f"MSG news {i}"

    d = srv.connect()
    d.send("ECHO before eof\nBLAST 100000 9\nPING\nECHO cut")
    d.sock.shutdown(socket.SHUT_WR)
    assert d.readline() == "before eof"
    check_pattern(d.read_exact(100000), 9)
    assert d.read_eof(graceful=True) == b"PONG\n"

    e = srv.connect(rcvbuf=65536)
    n = 4 << 20
    got = bytearray()

    def read_all():
        while len(got) < n:
            data = e.sock.recv(65536)
            if not data:
                return
            got.extend(data)

    e.send(f"BLAST {n} 11\nECHO done\n")
    t = threading.Thread(target=read_all)
    t.start()
    t.join(30)
    assert len(got) >= n, f"{len(got)} of {n} BLAST bytes"
    check_pattern(bytes(got[:n]), 11)
    e.buf = bytes(got[n:])
    assert e.readline() == "done"


class Strace:
    """strace attached (-p) to a running server, injecting faults: counts
    (when=FIRST+STEP) start at the attach, after the server's start-up, so
    the loader's and the sanitizer's own reads are left alone. detach()
    ends it (SIGINT to strace's PID) before the server stops, so that
    LeakSanitizer, which cannot run under ptrace, still checks the exit."""

    def __init__(self, srv, tmp_path, *injects):
        self.srv = srv
        self.log = str(tmp_path / "strace.log")
        trace = sorted({i.split(":")[0] for i in injects} | {"epoll_wait"})
        args = ["strace", "-qq", "-f", "-p", str(srv.pid), "-o", self.log,
                "-e", "trace=" + ",".join(trace)]
        for i in injects:
            args += ["-e", "inject=" + i]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self.tracer() == self.proc.pid or self.proc.poll() is not None,
                 timeout=10, what="strace to attach")
        assert self.proc.poll() is None, f"strace failed: {self.proc.stderr.read().decode()}"

    def tracer(self):
        with open(f"/proc/{self.srv.pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
        return 0

    def detach(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        if self.srv.alive():
            wait_for(lambda: self.tracer() == 0, timeout=5, what="strace to detach")

    def injected(self):
        with open(self.log, errors="replace") as f:
            return sum(1 for line in f if "(INJECTED)" in line)


def _stop_ok(srv):
    rc = srv.stop()
    assert rc == 0, f"the server exited with {rc}; stderr:\n{srv.stderr()[-3000:]}"


def _with_strace(srv, tmp_path, *injects):
    """Runs the workload on srv with strace attached; returns the number of
    injected failures."""
    st = Strace(srv, tmp_path, *injects)
    try:
        workload(srv)
        srv.settled_stats()
    finally:
        st.detach()
    n = st.injected()
    return n


def test_injected_eintr_epoll_wait(start_server, tmp_path):
    """Fault 2 by injection: epoll_wait fails with EINTR on its 2nd call and
    every 3rd after (strace inject=epoll_wait:error=EINTR:when=2+3). The
    workload's replies are all right; the server exits 0 on SIGTERM.
    Seed fault: 2."""
    srv = start_server()
    n = _with_strace(srv, tmp_path, "epoll_wait:error=EINTR:when=2+3")
    assert n >= 10, f"strace injected {n} failures"
    _stop_ok(srv)


def test_injected_eagain_on_send(start_server, tmp_path):
    """Sends refused: sendto and sendmsg fail with EAGAIN on the 2nd call
    and every 2nd after (strace inject=sendto:error=EAGAIN:when=2+2, the
    same for sendmsg), so half the direct writes must queue and go out on
    EPOLLOUT, in order. Same replies, nothing lost; exit 0.
    Seed fault: none: the write path's queueing, order and no loss."""
    srv = start_server()
    n = _with_strace(srv, tmp_path, "sendto:error=EAGAIN:when=2+2", "sendmsg:error=EAGAIN:when=2+2")
    assert n >= 10, f"strace injected {n} failures"
    _stop_ok(srv)


def test_injected_eintr_on_read_and_send(start_server, tmp_path):
    """Reads and sends interrupted: read fails with EINTR on the 2nd call
    and every 2nd after, sendto on the 3rd and every 3rd (strace). EINTR is
    neither an error nor an EOF: same replies, nothing lost; exit 0.
    Seed fault: 1 (an EINTR is not an EOF) and 2."""
    srv = start_server()
    n = _with_strace(srv, tmp_path, "read:error=EINTR:when=2+2", "sendto:error=EINTR:when=3+3")
    assert n >= 10, f"strace injected {n} failures"
    _stop_ok(srv)


def _fiu(*commands):
    args = ["fiu-run", "-x", "-f", ""]
    for c in commands:
        args += ["-c", c]
    return args


def test_injected_fiu_send_eagain_and_short_reads(start_server, tmp_path):
    """libfiu: libc's send and sendmsg fail with EAGAIN 30% of the time and
    reads are cut short 50% of the time (fiu-run -x, posix/io/net/send,
    posix/io/net/sendmsg with failinfo EAGAIN, posix/io/rw/read/reduce):
    same replies, nothing lost; exit 0. First, a server whose every send
    fails shows that the fault points are live: its PING is never
    answered.
    Seed fault: none: queueing, order, reassembly of short reads."""
    eagain = str(errno.EAGAIN)  # libfiu's failinfo is the errno to set
    # fiu-run's preload keeps a strdup'd string for the process's life.
    supp = tmp_path / "lsan.supp"
    supp.write_text("leak:fiu_run_preload.so\n")
    env = {"LSAN_OPTIONS": f"suppressions={supp}"}
    dead = start_server("--close-timeout", "200", env=env, wrapper=_fiu(
        f"enable name=posix/io/net/send,failinfo={eagain}",
        f"enable name=posix/io/net/sendmsg,failinfo={eagain}"))
    dead.check_stats = False  # it cannot answer STATS, by design
    c = dead.connect()
    c.send("PING\n")
    assert not c.closed_by_peer(0.3) and c.buf == b"", "libfiu's send point is not live"
    # Positive proof, not only a reply missing for 0.3 s: the server did read
    # the PING (its receive queue is empty again, the connection open), so
    # the PONG it owes was refused by the injected send failures.
    assert server_recv_q(dead, c) == 0, "the server did not read the PING: fiu proves nothing"
    c.close()
    _stop_ok(dead)

    srv = start_server(env=env, wrapper=_fiu(
        f"enable_random name=posix/io/net/send,probability=0.3,failinfo={eagain}",
        f"enable_random name=posix/io/net/sendmsg,probability=0.3,failinfo={eagain}",
        "enable_random name=posix/io/rw/read/reduce,probability=0.5"))
    maps = open(f"/proc/{srv.pid}/maps").read()
    assert "fiu_posix_preload" in maps, "the server runs without libfiu"
    workload(srv)
    srv.settled_stats()
    _stop_ok(srv)
