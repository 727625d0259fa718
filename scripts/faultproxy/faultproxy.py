#!/usr/bin/env python3
"""faultproxy — an HTTP/1.1 proxy on 127.0.0.1 that passes requests to a server and injects
faults by rule: error statuses, connection resets (before the answer, or after its headers),
stalls, truncated and slow bodies, and "lying" uploads that the server never (fully) received
but the client is told were stored. See README.md in this folder for rules and the control API.

It works both ways a client can be pointed at it:
- as a reverse proxy: the client uses the proxy's URL; origin-form requests ("GET /x HTTP/1.1")
  go to --upstream, with Host and Destination rewritten to the upstream's origin;
- as a forward proxy: the client keeps the server's URL and sets http_proxy; absolute-form
  requests ("GET http://127.0.0.1:8080/x HTTP/1.1") go to the host they name, which must be a
  loopback address. URLs the client sees (hrefs, Destination, catalog URLs) stay the server's.

Keep-alive holds on both sides (one upstream connection per client connection, reused while
both allow it); request and response bodies are relayed as framed (Content-Length, chunked,
until close). A client's `Expect: 100-continue` is answered by the proxy itself. Every run is
bounded: --max-runtime (default 1 hour), and every wait a fault makes ends after 120 s.

Standard library only.
"""

import argparse
import http
import ipaddress
import itertools
import json
import os
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpio  # noqa: E402
from rules import RuleSet  # noqa: E402

# Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1). Expect is answered
# by the proxy itself, so the server always receives the body right after the head.
HOP_BY_HOP = ("Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "Upgrade", "Expect")
# A client connection idle for this long between requests is closed, as is an upstream that
# sends nothing for this long; both far above the 30 s stall limit of the client under test.
IDLE_TIMEOUT = 300
# "lie" holds the whole PUT body in memory to decide what to forward; Nextcloud chunks are 10 MiB.
LIE_LIMIT = 256 * 1024 * 1024
CONTROL_PREFIX = "/__proxy/"


class Upstream:
    """Where origin-form requests go: scheme, host, port and a base path from --upstream."""

    def __init__(self, url, insecure=False):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("--upstream must be an http:// or https:// URL")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.netloc = u.netloc
        self.origin = "%s://%s" % (u.scheme, u.netloc)
        self.base = u.path.rstrip("/")
        self.insecure = insecure

    def key(self):
        return (self.host, self.port, self.tls)


class RequestLog:
    """One JSON object per request on its own line; plus counts per outcome for /__proxy/stats."""

    def __init__(self, path):
        self.lock = threading.Lock()  # guards the file and the counts
        self.file = open(path, "a", encoding="utf-8") if path else None
        self.counts = {}

    def write(self, record):
        with self.lock:
            kind = record.get("outcome", "?").split(":")[0]
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if self.file:
                self.file.write(json.dumps(record, sort_keys=True) + "\n")
                self.file.flush()

    def stats(self):
        with self.lock:
            return dict(self.counts)


class Upgone(Exception):
    """The upstream connection failed before a complete answer came back."""


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status %d" % status


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reset(sock):
    """Closes with RST instead of FIN: the peer sees ECONNRESET, as after a crashed proxy."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def dav_error_body(status, message):
    # Sabre's error document, as Nextcloud sends it; clients may show the message.
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">\n'
            '  <s:exception>Sabre\\DAV\\Exception</s:exception>\n'
            '  <s:message>%s</s:message>\n</d:error>\n' % message).encode("utf-8")


class Connection:
    """One client connection: reads its requests in turn and answers each, passing it on or
    applying the fault a rule picks. Runs on its own thread."""

    ids = itertools.count(1)

    def __init__(self, proxy, sock):
        self.proxy = proxy
        self.id = next(Connection.ids)
        self.csock = sock
        self.csock.settimeout(IDLE_TIMEOUT)
        self.cfile = sock.makefile("rb", buffering=65536)
        self.up = None       # (socket, reader, key) of the upstream connection, or None
        self.closed = False

    # ---- life cycle --------------------------------------------------------------
    def run(self):
        try:
            while not self.proxy.stopping.is_set():
                try:
                    head = httpio.read_head(self.cfile)
                except (OSError, httpio.ProtocolError):
                    break
                if head is None or not self.request(head):
                    break
        except OSError:
            pass  # the client went away mid-answer
        finally:
            self.drop_upstream()
            self.close_client()

    def close_client(self, rst=False):
        if self.closed:
            return
        self.closed = True
        try:
            self.cfile.close()
        except OSError:
            pass
        if rst:
            reset(self.csock)
            return
        # A lingering close: FIN first, then read what the client still sends (a body it had
        # started) for up to a second, because closing with unread bytes would send an RST that
        # can destroy the answer before the client reads it.
        try:
            self.csock.shutdown(socket.SHUT_WR)
            self.csock.settimeout(1)
            end = time.monotonic() + 1
            while time.monotonic() < end and self.csock.recv(65536):
                pass
        except OSError:
            pass
        self.csock.close()

    def drop_upstream(self):
        if self.up:
            sock, reader, _ = self.up
            self.up = None
            try:
                reader.close()
                sock.close()
            except OSError:
                pass

    def upstream(self, key, tls_insecure):
        """A connection to `key`: the kept-alive one if it is still usable, else a new one."""
        if self.up and self.up[2] == key:
            sock = self.up[0]
            # Readable while idle means the server closed it (or sent junk): do not reuse.
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            if pending or select.select([sock], [], [], 0)[0]:
                self.drop_upstream()
        elif self.up:
            self.drop_upstream()
        if not self.up:
            host, port, tls = key
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                ctx = ssl.create_default_context()
                if tls_insecure:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock, server_hostname=host)
            sock.settimeout(IDLE_TIMEOUT)
            self.up = (sock, sock.makefile("rb", buffering=65536), key)
            return self.up, False
        return self.up, True

    # ---- answers the proxy makes itself ------------------------------------------------------
    def send(self, data):
        self.csock.sendall(data)

    def answer(self, status, body=b"", headers=(), keep=True, content_type="text/plain; charset=utf-8"):
        h = httpio.Head("HTTP/1.1 %d %s" % (status, reason(status)), list(headers))
        if body:
            h.set("Content-Type", content_type)
        h.set("Content-Length", str(len(body)))
        if not keep:
            h.set("Connection", "close")
        self.send(h.encode() + body)
        return keep

    def answer_json(self, status, obj, keep):
        return self.answer(status, json.dumps(obj, indent=1).encode() + b"\n", keep=keep,
                           content_type="application/json")

    def wait(self, seconds, watch_client=False):
        """Sleeps up to `seconds`; returns early when the proxy stops or (watch_client) the client hangs up."""
        end = time.monotonic() + seconds
        while not self.proxy.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            if watch_client:
                if select.select([self.csock], [], [], min(left, 0.2))[0]:
                    try:
                        if not self.csock.recv(1, socket.MSG_PEEK):
                            return
                    except OSError:
                        return
                    time.sleep(min(left, 0.2))  # the client sent more (pipelining): keep stalling
            else:
                time.sleep(min(left, 0.2))

    # ---- one request ---------------------------------------------------------------
    def request(self, head):
        """Answers one request; returns whether the client connection stays open."""
        started = time.monotonic()
        parts = head.start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self.answer(400, b"faultproxy: not an HTTP/1.x request line\n", keep=False)
        method, target, version = parts
        if version == "HTTP/1.1":
            client_keep = not head.has_token("Connection", "close")
        else:
            client_keep = head.has_token("Connection", "keep-alive")
        try:
            framing = httpio.request_framing(head)
        except httpio.ProtocolError as e:
            return self.answer(400, ("faultproxy: %s\n" % e).encode(), keep=False)

        if target.startswith(CONTROL_PREFIX):
            return self.control(method, target, head, framing, client_keep)

        up = self.proxy.upstream
        if target.startswith("/"):
            if up is None:
                return self.answer(502, b"faultproxy: origin-form request and no --upstream\n", keep=False)
            key, path, reverse = up.key(), up.base + target, True
        elif target.lower().startswith("http://"):
            u = urllib.parse.urlsplit(target)
            if not u.hostname or not is_loopback(u.hostname):
                return self.answer(403, b"faultproxy: forwards to loopback addresses only\n", keep=False)
            path = (u.path or "/") + ("?" + u.query if u.query else "")
            key, reverse = (u.hostname, u.port or 80, False), False
        else:
            return self.answer(400, b"faultproxy: CONNECT and https:// targets are not supported\n", keep=False)

        hit = self.proxy.rules.pick(method, path)
        rec = {"t": round(time.time(), 3), "conn": self.id, "method": method, "path": path,
               "rule": hit.rule.id if hit else None, "action": hit.rule.action if hit else None}
        if hit and hit.rule.note:
            rec["note"] = hit.rule.note
        keep = False
        try:
            keep = self.apply(hit, method, path, head, framing, client_keep, key, reverse, rec)
            return keep
        except Upgone as e:
            rec.update(outcome="upstream error: %s" % e, status=502)
            try:
                return self.answer(502, ("faultproxy: upstream failed: %s\n" % e).encode(), keep=False)
            except OSError:
                return False
        except (OSError, httpio.ProtocolError) as e:
            rec.setdefault("outcome", "client error: %s" % e)
            return False
        finally:
            rec["ms"] = int((time.monotonic() - started) * 1000)
            rec.setdefault("outcome", "passed")
            self.proxy.log.write(rec)
            if not keep:
                self.drop_upstream()

    def apply(self, hit, method, path, head, framing, client_keep, key, reverse, rec):
        rule = hit.rule if hit else None
        action = rule.action if rule else None
        expects = framing[0] != "none" and head.has_token("Expect", "100-continue")

        if action is None:
            return self.forward(method, path, head, framing, client_keep, key, reverse, rec)
        if action == "delay":
            self.wait(rule.seconds)
            rec["delayed_s"] = rule.seconds
            return self.forward(method, path, head, framing, client_keep, key, reverse, rec)
        if action == "hold":
            rec["held_s"] = rule.seconds
            return self.forward(method, path, head, framing, client_keep, key, reverse, rec, shape=("hold", rule.seconds))
        if action == "status":
            status = hit.status
            if expects:
                client_keep = False  # the client may or may not send the body now: start afresh
            else:
                for _ in httpio.raw_body(self.cfile, framing):
                    pass
            retry_after = rule.retry_after
            if retry_after is None and status in (423, 429, 503):
                retry_after = 1
            headers = [("Retry-After", str(retry_after))] if retry_after is not None and retry_after >= 0 else []
            rec.update(outcome="injected %d" % status, status=status)
            body = dav_error_body(status, "Injected by faultproxy (rule %d)" % rule.id)
            return self.answer(status, body, headers, keep=client_keep, content_type="application/xml; charset=utf-8")
        if action in ("reset", "stall"):
            if rule.forward:
                self.forward(method, path, head, framing, False, key, reverse, rec, shape=("swallow", None))
                rec.pop("status", None)
            if action == "stall":
                began = time.monotonic()
                self.wait(rule.seconds, watch_client=True)
                rec["stalled_s"] = round(time.monotonic() - began, 1)
            rec["outcome"] = "%s%s" % ("stalled then reset" if action == "stall" else "reset before response",
                                      " (server got the request)" if rule.forward else "")
            self.close_client(rst=True)
            return False
        if action == "lie":
            return self.lie(rule, method, path, head, framing, client_keep, key, reverse, rec, expects)
        shape = {"truncate": ("truncate", rule.after_bytes),
                 "reset_after_headers": ("reset_after", rule.after_bytes or 0),
                 "slow": ("slow", (rule.rate, rule.seconds))}[action]
        return self.forward(method, path, head, framing, client_keep, key, reverse, rec, shape=shape)

    # ---- passing a request on ----------------------------------------------------------
    def outgoing_head(self, method, path, head, reverse, key):
        out = httpio.Head("%s %s HTTP/1.1" % (method, path), list(head.headers))
        named = [t.strip() for k, v in head.headers if k.lower() == "connection" for t in v.split(",")]
        out.remove(*HOP_BY_HOP, *[n for n in named if n])
        if reverse:
            up = self.proxy.upstream
            own = head.get("Host")
            out.set("Host", up.netloc)
            dest = head.get("Destination")
            if dest and own:
                # MOVE/COPY name the target by absolute URL: the proxy's own, which the server must not see.
                for scheme in ("http://", "https://"):
                    prefix = scheme + own
                    if dest.startswith(prefix):
                        rest = dest[len(prefix):]
                        out.set("Destination", up.origin + (up.base + rest if rest.startswith("/") else rest))
        elif head.get("Host") is None:
            out.set("Host", "%s:%d" % key[:2])
        return out

    def exchange(self, out_head, body_pieces, key, retryable):
        """Sends a request upstream and returns (reader, response head, status), skipping 1xx.
        A kept-alive connection that turns out dead is replaced once when nothing of a body had
        to be streamed (`retryable`)."""
        for attempt in (0, 1):
            try:
                (sock, reader, _), reused = self.upstream(key, self.proxy.upstream_insecure)
            except OSError as e:
                raise Upgone("connect %s:%d: %s" % (key[0], key[1], e))
            try:
                sock.sendall(out_head.encode())
                sent_ok = True
                for piece in body_pieces:
                    if sent_ok:
                        try:
                            sock.sendall(piece)
                        except OSError:
                            sent_ok = False  # the server answered early and closed; read the client's body to its end
                while True:
                    resp = httpio.read_head(reader)
                    if resp is None:
                        raise Upgone("closed without an answer")
                    status = int(resp.start.split(" ")[1])
                    if not 100 <= status < 200:
                        return reader, resp, status
            except (OSError, httpio.ProtocolError, ValueError, IndexError, Upgone) as e:
                self.drop_upstream()
                if attempt == 0 and reused and retryable:
                    continue
                raise Upgone(str(e) or type(e).__name__)

    def forward(self, method, path, head, framing, client_keep, key, reverse, rec, shape=None):
        out = self.outgoing_head(method, path, head, reverse, key)
        if framing[0] != "none" and head.has_token("Expect", "100-continue"):
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        counter = [0]

        def body():
            for piece in httpio.raw_body(self.cfile, framing):
                counter[0] += len(piece)
                yield piece

        reader, resp, status = self.exchange(out, body(), key, retryable=framing[0] == "none")
        rec["req_bytes"] = counter[0]
        rec["upstream_status"] = status
        rec["status"] = status
        rframing = httpio.response_framing(resp, method, status)
        upstream_keep = resp.start.startswith("HTTP/1.1") and not resp.has_token("Connection", "close") \
            and rframing[0] != "close"
        kind, arg = shape if shape else (None, None)

        if kind == "swallow":  # the server's answer is read and thrown away
            for _ in httpio.raw_body(reader, rframing):
                pass
            if not upstream_keep:
                self.drop_upstream()
            return False

        keep = client_keep and upstream_keep and kind in (None, "slow", "hold")
        out_resp = httpio.Head(resp.start, list(resp.headers))
        out_resp.remove("Connection", "Keep-Alive", "Proxy-Connection")
        if not keep:
            out_resp.headers.append(("Connection", "close"))
        total = rframing[1] if rframing[0] == "length" else None
        if kind == "truncate" and rframing[0] == "none":
            kind = None  # no body to cut: passed as is
            rec["note_truncate"] = "no body"
        cut = None
        if kind == "truncate":
            cut = arg if arg is not None else (total // 2 if total else 512)
            if total is not None:
                cut = min(cut, total - 1)
        elif kind == "reset_after":
            cut = arg
        if kind == "hold":  # the server has answered; the client hears of it later
            self.wait(arg)
        self.send(out_resp.encode())

        sent = 0
        slow_until = time.monotonic() + arg[1] if kind == "slow" else 0
        for piece in httpio.raw_body(reader, rframing):
            if cut is not None and sent + len(piece) >= cut:
                self.send(piece[:cut - sent])
                sent = cut
                break
            if kind == "slow" and time.monotonic() < slow_until:
                rate = arg[0]
                step = max(1, rate // 10)
                for i in range(0, len(piece), step):
                    self.send(piece[i:i + step])
                    if time.monotonic() < slow_until:
                        time.sleep(step / rate)
            else:
                self.send(piece)
            sent += len(piece)
        rec["resp_bytes"] = sent
        if kind in ("truncate", "reset_after"):
            self.drop_upstream()  # its answer was not read to the end
            if kind == "truncate":
                rec["outcome"] = "truncated: %d of %s body bytes, then closed" % (sent, total if total is not None else rframing[0])
                self.close_client()
            else:
                rec["outcome"] = "reset after headers: %d body bytes" % sent
                self.close_client(rst=True)
            return False
        if kind == "slow":
            rec["outcome"] = "slowed: %d B/s for up to %g s" % arg
        if not upstream_keep:
            self.drop_upstream()
        return keep

    def lie(self, rule, method, path, head, framing, client_keep, key, reverse, rec, expects):
        """Takes the whole body, lets `forward_bytes` of it (or nothing) reach the server, and
        tells the client it was stored."""
        if expects:
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        data = httpio.decoded_body(self.cfile, framing, LIE_LIMIT)
        rec["req_bytes"] = len(data)
        tag = '"faultproxy-%x"' % int(time.time() * 1e6)
        fake = [("ETag", tag), ("OC-ETag", tag)]
        if head.get("X-OC-Mtime"):
            fake.append(("X-OC-MTime", "accepted"))  # as Nextcloud says when it kept the sent mtime
        if rule.forward_bytes is None:
            rec.update(outcome="lied: 0 of %d bytes, request not forwarded" % len(data), status=201)
            return self.answer(201, b"", fake, keep=client_keep)
        n = min(rule.forward_bytes, len(data))
        out = self.outgoing_head(method, path, head, reverse, key)
        out.remove("Transfer-Encoding", "Content-Length")
        out.set("Content-Length", str(n))
        reader, resp, status = self.exchange(out, [data[:n]], key, retryable=True)
        rframing = httpio.response_framing(resp, method, status)
        body = b"".join(httpio.raw_body(reader, rframing))
        if not resp.start.startswith("HTTP/1.1") or resp.has_token("Connection", "close") or rframing[0] == "close":
            self.drop_upstream()
        rec["upstream_status"] = status
        rec["outcome"] = "lied: %d of %d bytes reached the server (it answered %d)" % (n, len(data), status)
        if 200 <= status < 300:
            out_resp = httpio.Head(resp.start, list(resp.headers))
            out_resp.remove("Connection", "Keep-Alive")
            if not client_keep:
                out_resp.headers.append(("Connection", "close"))
            rec["status"] = status
            self.send(out_resp.encode() + body)
            return client_keep
        rec["status"] = 201
        return self.answer(201, b"", fake, keep=client_keep)

    # ---- control API -------------------------------------------------------------
    def control(self, method, target, head, framing, client_keep):
        try:
            body = httpio.decoded_body(self.cfile, framing, 1 << 20)
        except httpio.ProtocolError as e:
            return self.answer(400, ("%s\n" % e).encode(), keep=False)
        route = target.split("?", 1)[0].rstrip("/")
        rules = self.proxy.rules
        try:
            spec = json.loads(body) if body.strip() else None
            if route == "/__proxy/rules" and method == "GET":
                return self.answer_json(200, {"rules": rules.describe()}, client_keep)
            if route == "/__proxy/rules" and method in ("POST", "PUT"):
                return self.answer_json(200, {"rules": rules.replace(spec if spec is not None else [])}, client_keep)
            if route == "/__proxy/rules/add" and method == "POST":
                return self.answer_json(200, {"rules": rules.add(spec if spec is not None else [])}, client_keep)
            if route == "/__proxy/rules" and method == "DELETE":
                rules.replace([])
                return self.answer_json(200, {"rules": []}, client_keep)
            if route == "/__proxy/stats" and method == "GET":
                return self.answer_json(200, {"outcomes": self.proxy.log.stats(), "rules": rules.describe()}, client_keep)
            if route == "/__proxy/health":
                return self.answer_json(200, {"ok": True, "upstream": self.proxy.upstream.origin if self.proxy.upstream else None}, client_keep)
        except (ValueError, TypeError) as e:  # json.JSONDecodeError and re.error are ValueErrors
            return self.answer_json(400, {"error": str(e)}, client_keep)
        return self.answer_json(404, {"error": "no such control route: %s %s" % (method, route)}, client_keep)


class Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port, upstream, upstream_insecure, log_path):
        self.upstream = upstream
        self.upstream_insecure = upstream_insecure
        self.rules = RuleSet()
        self.log = RequestLog(log_path)
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Connection(self.server, self.request).run()

    def finish(self):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", help="server URL for origin-form requests (reverse-proxy use), e.g. http://127.0.0.1:8080")
    ap.add_argument("--upstream-insecure", action="store_true", help="do not verify an https upstream's certificate")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    ap.add_argument("--port-file", help="write the chosen port here (temp file + rename)")
    ap.add_argument("--log", help="request/outcome log, one JSON object per line")
    ap.add_argument("--rules", help="JSON file: a rule, a list of rules or {\"rules\": [...]}")
    ap.add_argument("--rule", action="append", default=[], help="one rule as JSON (repeatable; after --rules)")
    ap.add_argument("--max-runtime", type=float, default=3600, help="exit after this many seconds (default 3600)")
    args = ap.parse_args(argv)

    try:
        upstream = Upstream(args.upstream, args.upstream_insecure) if args.upstream else None
        proxy = Proxy(args.port, upstream, args.upstream_insecure, args.log)
        if args.rules:
            with open(args.rules, encoding="utf-8") as f:
                proxy.rules.add(json.load(f))
        for text in args.rule:
            proxy.rules.add(json.loads(text))
    except (ValueError, OSError) as e:
        print("faultproxy: %s" % e, file=sys.stderr)
        return 2

    port = proxy.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("faultproxy listening on http://127.0.0.1:%d%s" % (port, " → " + upstream.origin if upstream else ""), flush=True)

    def stop(*_):
        proxy.stopping.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent may hand down a mask with these blocked (Foundation's Process does, from a
    # Swift test runner): then SIGTERM would wait for SIGKILL.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    worker = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    proxy.stopping.wait(args.max_runtime)
    proxy.stopping.set()
    proxy.shutdown()
    proxy.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
