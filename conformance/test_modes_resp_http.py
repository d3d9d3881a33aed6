"""evl-testsrv --mode resp and --mode http (docs/PROTOCOL.md §6).

resp: inline and multibulk PING and ECHO, pipelined, an unknown command is an
error reply on an open connection, malformed input an error reply and a
close; redis-benchmark drives it. http: keep-alive, pipelining, GET
/bytes/<n> streamed (every byte checked, and not all buffered at once),
Connection: close and HTTP/1.0, malformed requests answered with their status
and closed; wrk drives it. Each test starts its own server; the fixture stops
it with SIGTERM and requires exit code 0 (sanitizer reports and leaks fail).
"""

import re
import shutil
import subprocess
import time

import pytest

from evltest import check_pattern


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- resp ---------------------------------------------------------------------

@pytest.fixture
def resp(start_server):
    return start_server("--mode", "resp")


def bulk(s):
    return b"$%d\r\n%s\r\n" % (len(s), s)


def test_resp_ping_inline(resp):
    c = resp.connect()
    c.send(b"PING\r\n")
    assert c.read_exact(7) == b"+PONG\r\n"
    c.send(b"ping hello\n")  # case-insensitive; a bare LF ends an inline line
    assert c.read_exact(11) == bulk(b"hello")


def test_resp_ping_multibulk(resp):
    c = resp.connect()
    c.send(b"*1\r\n$4\r\nPING\r\n")  # what redis-benchmark's ping_mbulk sends
    assert c.read_exact(7) == b"+PONG\r\n"
    c.send(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n")
    assert c.read_exact(8) == bulk(b"hi")


def test_resp_echo(resp):
    c = resp.connect()
    payload = b"a\r\nb\x00c" * 1000  # binary-safe, CRLF inside
    c.send(b"*2\r\n$4\r\nECHO\r\n" + bulk(payload))
    want = bulk(payload)
    assert c.read_exact(len(want)) == want
    c.send(b"ECHO hello\r\n")
    assert c.read_exact(11) == bulk(b"hello")
    c.send(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n")
    assert c.read_exact(6) == b"$0\r\n\r\n"


def test_resp_pipelined_in_order(resp):
    c = resp.connect()
    reqs, want = [], []
    for i in range(300):
        word = b"w%d" % i
        if i % 3 == 0:
            reqs.append(b"PING\r\n")
            want.append(b"+PONG\r\n")
        elif i % 3 == 1:
            reqs.append(b"*2\r\n$4\r\nECHO\r\n" + bulk(word))
            want.append(bulk(word))
        else:
            reqs.append(b"ECHO " + word + b"\r\n")
            want.append(bulk(word))
    c.send(b"".join(reqs))  # all in one segment: none may be stranded
    want = b"".join(want)
    assert c.read_exact(len(want)) == want


def test_resp_byte_by_byte(resp):
    c = resp.connect()
    req = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\nPING\r\n"
    for i in range(len(req)):
        c.send(req[i:i + 1])
        time.sleep(0.002)
    want = bulk(b"hello") + b"+PONG\r\n"
    assert c.read_exact(len(want)) == want


def test_resp_unknown_and_arity_keep_the_connection(resp):
    c = resp.connect()
    c.send(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n")
    assert c.readline() == "-ERR unknown command 'CONFIG'\r"
    c.send(b"ECHO\r\n")
    assert c.readline() == "-ERR wrong number of arguments for 'echo' command\r"
    c.send(b"PING a b\r\n")
    assert c.readline().startswith("-ERR wrong number of arguments")
    c.send(b"\r\nPING\r\n")  # an empty line is ignored, as Redis does
    assert c.read_exact(7) == b"+PONG\r\n"


@pytest.mark.parametrize("bad", [b"*x\r\n", b"*1\r\nX\r\n", b"*1\r\n$-5\r\n", b"*99\r\n",
                                 b"*1\r\n$4\r\nPINGxx", b"A" * 70000])
def test_resp_malformed_error_then_close(resp, bad):
    c = resp.connect()
    c.send(b"PING\r\n" + bad)
    data = c.read_eof()
    assert data.startswith(b"+PONG\r\n-ERR Protocol error: "), data[:80]
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == 2


def test_resp_redis_benchmark(resp):
    assert shutil.which("redis-benchmark"), "redis-benchmark not installed: run tools/deps.sh conformance"
    for extra in ([], ["-P", "16"]):
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(resp.port),
                              "-t", "ping_inline,ping_mbulk", "-n", "2000", "-q"] + extra,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        text = out.stdout.replace("\r", "\n")
        for t in ("PING_INLINE", "PING_MBULK"):
            # "inf": every request answered within the benchmark's 1 ms clock
            # resolution (seen in a fresh-check run); a rate, not a failure
            m = re.search(t + r": ([0-9.]+|inf) requests per second", text)
            assert m and float(m.group(1)) > 0, text[-500:]


# ---- http ---------------------------------------------------------------------

@pytest.fixture
def http(start_server):
    return start_server("--mode", "http")


def get(path="/", version="1.1", headers=("Host: t",)):
    return ("GET %s HTTP/%s\r\n%s\r\n" % (path, version, "".join(h + "\r\n" for h in headers))).encode()


def read_response(c):
    """(status, headers with lower-case names, body) of one response."""
    status = c.readline()
    assert status.startswith("HTTP/1.1 "), status
    code = int(status.split()[1])
    headers = {}
    while True:
        line = c.readline()
        assert line.endswith("\r"), f"header line without CR: {line!r}"
        line = line[:-1]
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = c.read_exact(int(headers["content-length"]))
    return code, headers, body


def test_http_keep_alive(http):
    c = http.connect()
    for _ in range(3):
        c.send(get())
        code, h, body = read_response(c)
        assert (code, body) == (200, b"hello, world\n")
        assert "connection" not in h  # HTTP/1.1: kept open by default
    assert not c.closed_by_peer(0.2)


def test_http_pipelined_in_order(http):
    c = http.connect()
    c.send(b"".join(get("/bytes/%d" % (i % 5)) if i % 2 else get() for i in range(40)))
    for i in range(40):
        code, _, body = read_response(c)
        assert code == 200
        if i % 2:
            check_pattern(body, 0)
            assert len(body) == i % 5
        else:
            assert body == b"hello, world\n"


@pytest.mark.parametrize("n", [0, 1, 100000, 3 * 65536 + 17])
def test_http_bytes_verified(http, n):
    c = http.connect()
    c.send(get("/bytes/%d" % n) + get())  # the next request waits for the stream
    code, h, body = read_response(c)
    assert code == 200 and h["content-type"] == "application/octet-stream"
    check_pattern(body, 0)
    assert read_response(c)[2] == b"hello, world\n"


def test_http_bytes_streamed_not_buffered(http):
    n = 64 << 20
    c = http.connect(rcvbuf=65536)
    base = rss_kb(http.pid)
    c.send(get("/bytes/%d" % n))
    time.sleep(0.5)  # a reader that does not read: the server must wait, not buffer
    grown = rss_kb(http.pid) - base
    assert grown < 24 << 10, f"server RSS grew {grown} kB for a stalled {n}-byte body"
    code, _, body = read_response(c)
    assert code == 200 and len(body) == n
    check_pattern(body, 0)


def test_http_connection_close(http):
    c = http.connect()
    c.send(get(headers=("Host: t", "Connection: close")) + get())
    code, h, body = read_response(c)
    assert code == 200 and h["connection"] == "close" and body == b"hello, world\n"
    assert c.read_eof() == b""  # the pipelined request after it is not served


def test_http_10(http):
    c = http.connect()
    c.send(get(version="1.0", headers=("Connection: keep-alive",)))
    code, h, _ = read_response(c)
    assert code == 200 and h["connection"] == "keep-alive"
    c.send(get(version="1.0", headers=()))
    code, h, _ = read_response(c)
    assert code == 200 and h["connection"] == "close"
    assert c.read_eof() == b""


@pytest.mark.parametrize("req,code", [
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405),
    (b"\x16\x03\x01\x02\x00", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 9000, 431),
    (b"GET /bytes/x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
])
def test_http_malformed_error_then_close(http, req, code):
    c = http.connect()
    c.send(get() + req)
    assert read_response(c)[0] == 200
    got, h, _ = read_response(c)
    assert got == code and h["connection"] == "close"
    assert c.read_eof() == b""


def test_http_wrk(http):
    assert shutil.which("wrk"), "wrk not installed: run tools/deps.sh conformance"
    out = subprocess.run(["wrk", "-t", "1", "-c", "4", "-d", "2",
                          "http://127.0.0.1:%d/" % http.port],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Socket errors" not in out.stdout and "Non-2xx" not in out.stdout, out.stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out.stdout)
    assert m and float(m.group(1)) > 0, out.stdout
