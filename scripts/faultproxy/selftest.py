#!/usr/bin/env python3
"""Self-test of faultproxy: a small in-process HTTP/1.1 server as the upstream, the proxy as a
real subprocess, and every action checked from the client's side and the server's.
Standard library only; runs in a few seconds. Exit status 0 when every check passes."""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def payload(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


class Upstream(http.server.BaseHTTPRequestHandler):
    """GET /bytes/N (Content-Length), GET /chunked/N (chunked), PUT/GET /store/NAME, and a
    request count per method + path."""
    protocol_version = "HTTP/1.1"
    store = {}
    seen = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status, data=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def note(self):
        with Upstream.lock:
            Upstream.seen.append((self.command, self.path, self.headers.get("Host"), self.headers.get("Destination")))

    def do_GET(self):
        self.note()
        parts = self.path.split("/")
        if parts[1] == "bytes":
            return self.reply(200, payload(int(parts[2])))
        if parts[1] == "chunked":
            data = payload(int(parts[2]))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 1000):
                piece = data[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if parts[1] == "store" and self.path in Upstream.store:
            return self.reply(200, Upstream.store[self.path])
        self.reply(404)

    def do_PUT(self):
        self.note()
        data = self.body()
        with Upstream.lock:
            Upstream.store[self.path] = data
        self.reply(201, headers=[("ETag", '"e%d"' % len(data))])

    def do_MOVE(self):
        self.note()
        self.reply(201, (self.headers.get("Destination") or "").encode())


def seen(method, path):
    with Upstream.lock:
        return sum(1 for m, p, _, _ in Upstream.seen if m == method and p == path)


class Proxy:
    def __init__(self, upstream_port, tmp, extra=()):
        self.port_file = os.path.join(tmp, "port-%d" % id(self))
        self.log = os.path.join(tmp, "log-%d.jsonl" % id(self))
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "faultproxy.py"),
                                      "--upstream", "http://127.0.0.1:%d" % upstream_port,
                                      "--port-file", self.port_file, "--log", self.log, "--max-runtime", "120", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.time() + 10
        while time.time() < end and not os.path.exists(self.port_file):
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())

    def control(self, method, route, obj=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request(method, "/__proxy/" + route, body=json.dumps(obj) if obj is not None else None)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def rules(self, rules):
        status, _ = self.control("POST", "rules", rules)
        assert status == 200, status

    def records(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(10)


def get(port, path, timeout=5, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read(), dict(r.getheaders())


def raw(port, data, timeout=5):
    """Sends raw bytes, returns everything read until the peer closes (or the error)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            out += piece
    except OSError as e:
        return out, e
    finally:
        s.close()
    return out, None


def main():
    started = time.time()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.handle_error = lambda *args: None  # clients the proxy cut off on purpose are not errors
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = server.server_address[1]
    tmp = tempfile.mkdtemp(prefix="faultproxy-selftest-")
    proxy = Proxy(up, tmp)
    p = proxy.port
    try:
        # --- pass-through, keep-alive, chunked both ways, forward-proxy form, Destination
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("GET", "/bytes/100000")
        r = c.getresponse()
        check(r.status == 200 and r.read() == payload(100000), "GET passes through byte for byte")
        c.request("GET", "/chunked/25000")
        r = c.getresponse()
        check(r.getheader("Transfer-Encoding") == "chunked" and r.read() == payload(25000),
              "a chunked response stays chunked and complete, on the same connection")
        c.request("PUT", "/store/chunked", body=iter([payload(3000), payload(5000)]), encode_chunked=True)
        r = c.getresponse()
        r.read()
        check(r.status == 201 and Upstream.store.get("/store/chunked") == payload(3000) + payload(5000),
              "a chunked PUT body arrives whole")
        c.close()
        # The proxy logs a request once its answer has gone out: give the third line a moment.
        deadline = time.monotonic() + 3
        recs = proxy.records()
        while len(recs) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
            recs = proxy.records()
        check(len({x["conn"] for x in recs}) == 1 and len(recs) == 3, "three requests, one client connection (keep-alive)")

        s = socket.create_connection(("127.0.0.1", p), timeout=5)
        s.sendall(b"PUT /store/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        first = s.recv(100)
        s.sendall(b"hello")
        rest = s.recv(1000)
        s.close()
        check(first == b"HTTP/1.1 100 Continue\r\n\r\n" and rest.startswith(b"HTTP/1.1 201")
              and Upstream.store.get("/store/expect") == b"hello", "Expect: 100-continue is answered by the proxy, then the body goes on")
        out, _ = raw(p, b"GET http://127.0.0.1:%d/bytes/10 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (up, up))
        check(out.startswith(b"HTTP/1.1 200") and out.endswith(payload(10)), "absolute-form (forward-proxy) request to a loopback host")
        out, _ = raw(p, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        check(out.startswith(b"HTTP/1.1 403"), "a non-loopback target is refused")
        out, _ = raw(p, b"MOVE /store/a HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nDestination: http://127.0.0.1:%d/store/b\r\nConnection: close\r\n\r\n" % (p, p))
        check(out.endswith(b"http://127.0.0.1:%d/store/b" % up), "Destination is rewritten to the upstream's origin")

        # --- status faults: count, after, method/path, Retry-After, seeded status lists
        proxy.rules([{"method": "GET", "path": "^/bytes/1$", "status": 503, "count": 2, "after": 1}])
        got = [get(p, "/bytes/1") for _ in range(4)]
        check([g[0] for g in got] == [200, 503, 503, 200], "after 1, count 2: pass, 503, 503, pass (got %s)" % [g[0] for g in got])
        check(got[1][2].get("Retry-After") == "1" and b"Injected by faultproxy" in got[1][1], "503 carries Retry-After and a DAV error body")
        check(seen("GET", "/bytes/1") == 2, "injected answers never reach the server")
        proxy.rules([{"status": [500, 502, 503, 507, 423, 429], "probability": 0.5, "seed": 11, "count": -1, "path": "/bytes/2"}])
        first = [get(p, "/bytes/2")[0] for _ in range(30)]
        proxy.rules([{"status": [500, 502, 503, 507, 423, 429], "probability": 0.5, "seed": 11, "count": -1, "path": "/bytes/2"}])
        second = [get(p, "/bytes/2")[0] for _ in range(30)]
        check(first == second and 5 < sum(s != 200 for s in first) < 25 and len(set(first)) > 3,
              "seeded probability and status list: same sequence twice (%s)" % first[:10])
        _, desc = proxy.control("GET", "rules")
        check(desc["rules"][0]["hits"] + desc["rules"][0]["passed"] == 30, "rule counters readable over the control API")
        status, err = proxy.control("POST", "rules", [{"action": "explode"}])
        check(status == 400 and "unknown action" in err["error"], "a bad rule is refused with 400")
        proxy.rules([{"method": "PUT", "status": 507}])
        out, _ = raw(p, b"PUT /store/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        check(out.startswith(b"HTTP/1.1 507") and b"Retry-After" not in out, "with Expect, the injected status comes before the body")
        proxy.rules([])

        # --- resets
        proxy.rules([{"method": "PUT", "action": "reset"}])
        try:
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
            c.request("PUT", "/store/r1", body=b"abc")
            c.getresponse()
            check(False, "reset before the response")
        except (ConnectionError, http.client.RemoteDisconnected):
            check("/store/r1" not in Upstream.store, "reset before the response (request not forwarded)")
        proxy.rules([{"method": "PUT", "action": "reset", "forward": True}])
        try:
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
            c.request("PUT", "/store/r2", body=b"abcd")
            c.getresponse()
            check(False, "reset after forwarding")
        except (ConnectionError, http.client.RemoteDisconnected):
            check(Upstream.store.get("/store/r2") == b"abcd", "reset with forward: the server stored it, the answer was lost")
        proxy.rules([{"action": "reset_after_headers", "after_bytes": 100}])
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("GET", "/bytes/10000")
        r = c.getresponse()
        try:
            r.read()
            check(False, "reset after headers")
        except (ConnectionError, http.client.IncompleteRead) as e:
            partial = getattr(e, "partial", b"")
            check(r.status == 200, "reset after headers: status arrived, then the reset (%s, %d bytes)" % (type(e).__name__, len(partial)))

        # --- truncated and slow bodies
        proxy.rules([{"action": "truncate", "after_bytes": 4000}])
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("GET", "/bytes/10000")
        r = c.getresponse()
        try:
            r.read()
            check(False, "truncated body")
        except http.client.IncompleteRead as e:
            check(r.getheader("Content-Length") == "10000" and e.partial == payload(10000)[:4000],
                  "truncate: Content-Length 10000, 4000 bytes, then close")
        proxy.rules([{"action": "truncate"}])
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("GET", "/chunked/10000")
        r = c.getresponse()
        try:
            r.read()
            check(False, "truncated chunked body")
        except http.client.IncompleteRead:
            check(True, "truncate of a chunked body: no terminating chunk")
        proxy.rules([{"action": "slow", "rate": 40000, "seconds": 5}])
        t0 = time.time()
        status, body, _ = get(p, "/bytes/20000")
        took = time.time() - t0
        check(status == 200 and body == payload(20000) and 0.35 < took < 3, "slow: 20000 bytes at 40000 B/s took %.2f s, intact" % took)

        # --- stalls
        proxy.rules([{"action": "stall", "seconds": 1}])
        t0 = time.time()
        try:
            get(p, "/bytes/10")
            check(False, "stall")
        except (ConnectionError, http.client.RemoteDisconnected):
            took = time.time() - t0
            check(0.9 < took < 3, "stall 1 s, then reset (%.2f s)" % took)
        proxy.rules([{"action": "stall", "seconds": 30}])
        t0 = time.time()
        try:
            get(p, "/bytes/10", timeout=0.5)
        except socket.timeout:
            pass
        time.sleep(0.5)
        recs = proxy.records()
        check(recs[-1]["outcome"].startswith("stalled") and recs[-1]["stalled_s"] < 2,
              "a stall ends when its client hangs up (%.1f s)" % recs[-1]["stalled_s"])

        # --- lying uploads
        proxy.rules([{"method": "PUT", "action": "lie"}])
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("PUT", "/store/lie1", body=payload(5000))
        r = c.getresponse()
        r.read()
        check(r.status == 201 and "/store/lie1" not in Upstream.store, "lie: 201 for a PUT the server never saw")
        proxy.rules([{"method": "PUT", "action": "lie", "forward_bytes": 10}])
        c.request("PUT", "/store/lie2", body=iter([payload(3000)]), encode_chunked=True)
        r = c.getresponse()
        r.read()
        check(r.status == 201 and Upstream.store.get("/store/lie2") == payload(3000)[:10],
              "lie with forward_bytes 10: the server stored 10 of 3000 bytes, the client got 201")
        c.request("GET", "/bytes/5")
        r = c.getresponse()
        check(r.read() == payload(5), "the connection stays usable after a lie")
        c.close()
        recs = proxy.records()
        check(any(x["outcome"].startswith("lied: 10 of 3000") for x in recs), "the log names the lie")
        proxy.rules([{"action": "delay", "seconds": 0.3}])
        t0 = time.time()
        status, body, _ = get(p, "/bytes/7")
        check(status == 200 and body == payload(7) and time.time() - t0 >= 0.3, "delay, then passed")
        proxy.rules([{"action": "hold", "seconds": 0.3}])
        t0 = time.time()
        status, body, _ = get(p, "/bytes/8")
        check(status == 200 and body == payload(8) and time.time() - t0 >= 0.3, "hold: the answer after the wait")
        check(any(x.get("held_s") == 0.3 for x in proxy.records()), "the log names the hold")
        proxy.rules([])

        # --- log and stats, shutdown, run-time bound
        recs = proxy.records()
        check(all({"method", "path", "outcome", "ms", "conn"} <= set(x) for x in recs), "every log line has method, path, outcome, ms, conn")
        _, stats = proxy.control("GET", "stats")
        check(stats["outcomes"].get("injected 503", 0) >= 2 and stats["outcomes"].get("passed", 0) > 10, "stats count outcomes")
        check(proxy.stop() == 0, "SIGTERM: exit 0")
        short = Proxy(up, tmp, ["--max-runtime", "0.5"])
        try:
            short.proc.wait(5)
            check(short.proc.returncode == 0, "--max-runtime ends the proxy")
        except subprocess.TimeoutExpired:
            short.proc.kill()
            check(False, "--max-runtime ends the proxy")
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
            proxy.proc.wait()
        server.shutdown()
    print("%d checks failed; %.1f s" % (len(FAILURES), time.time() - started))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
