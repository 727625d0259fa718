"""HTTP/1.1 framing for the fault proxy: reading a message head, and walking a body exactly as
it is framed (Content-Length, chunked, or "until the connection closes").

The proxy relays bodies as raw bytes (chunk-size lines included), so a chunked message leaves
it byte for byte as it came in; only the faults that must know the payload (a lying PUT)
decode it. Limits guard against a peer that never ends a line: 64 KiB per head, 8 KiB per line.
"""

MAX_LINE = 8192
MAX_HEAD = 64 * 1024
PIECE = 256 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 as the proxy understands it."""


class Head:
    """A request or status line plus headers, in their original order and spelling."""

    def __init__(self, start, headers):
        self.start = start
        self.headers = headers

    def get(self, name):
        name = name.lower()
        for k, v in reversed(self.headers):
            if k.lower() == name:
                return v
        return None

    def has_token(self, name, token):
        """True when a comma-separated header (Connection, Transfer-Encoding, Expect) names `token`."""
        token = token.lower()
        for k, v in self.headers:
            if k.lower() == name.lower() and token in (t.strip().lower() for t in v.split(",")):
                return True
        return False

    def remove(self, *names):
        drop = {n.lower() for n in names}
        self.headers = [(k, v) for k, v in self.headers if k.lower() not in drop]

    def set(self, name, value):
        self.remove(name)
        self.headers.append((name, value))

    def encode(self):
        lines = [self.start] + ["%s: %s" % kv for kv in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(rfile):
    """The next head from a buffered reader, or None on a clean end of stream before its first
    byte. Empty lines before a request line are skipped (RFC 9112 §2.2 allows them)."""
    total = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise ProtocolError("line too long")
        if line not in (b"\r\n", b"\n"):
            break
    start = line.rstrip(b"\r\n").decode("latin-1")
    headers = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        total += len(line)
        if not line:
            raise ProtocolError("connection closed inside a head")
        if len(line) > MAX_LINE or total > MAX_HEAD:
            raise ProtocolError("head too large")
        if line in (b"\r\n", b"\n"):
            return Head(start, headers)
        text = line.rstrip(b"\r\n").decode("latin-1")
        if text[:1] in (" ", "\t") and headers:  # obsolete line folding: join to the previous value
            k, v = headers[-1]
            headers[-1] = (k, v + " " + text.strip())
            continue
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("bad header line %r" % text[:80])
        headers.append((name, value.strip()))


def request_framing(head):
    """("chunked", None), ("length", n) or ("none", 0) for a request body (RFC 9112 §6.3)."""
    if head.get("Transfer-Encoding") is not None:
        if not head.has_token("Transfer-Encoding", "chunked"):
            raise ProtocolError("request Transfer-Encoding without chunked")
        return ("chunked", None)
    length = head.get("Content-Length")
    if length is None:
        return ("none", 0)
    if not length.strip().isdigit():
        raise ProtocolError("bad Content-Length %r" % length)
    n = int(length)
    return ("length", n) if n > 0 else ("none", 0)


def response_framing(head, method, status):
    """How a response body ends: ("none", 0), ("length", n), ("chunked", None) or ("close", None)."""
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return ("none", 0)
    if head.get("Transfer-Encoding") is not None:
        return ("chunked", None) if head.has_token("Transfer-Encoding", "chunked") else ("close", None)
    length = head.get("Content-Length")
    if length is not None:
        if not length.strip().isdigit():
            raise ProtocolError("bad Content-Length %r" % length)
        n = int(length)
        return ("length", n) if n > 0 else ("none", 0)
    return ("close", None)


def raw_body(rfile, framing):
    """Yields a body's bytes as they are on the wire (chunk-size lines and trailers included) and
    stops exactly at its end. Raises ProtocolError if the stream ends early (except for a body
    framed by the connection's close)."""
    kind, n = framing
    if kind == "none":
        return
    if kind == "length":
        left = n
        while left > 0:
            piece = rfile.read1(min(left, PIECE))
            if not piece:
                raise ProtocolError("body ended %d bytes early" % left)
            left -= len(piece)
            yield piece
        return
    if kind == "close":
        while True:
            piece = rfile.read1(PIECE)
            if not piece:
                return
            yield piece
    # chunked
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line or not line.endswith(b"\n"):
            raise ProtocolError("chunked body ended inside a size line")
        yield line
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size %r" % line[:40])
        if size == 0:
            while True:  # trailers, then the empty line
                t = rfile.readline(MAX_LINE + 1)
                if not t:
                    raise ProtocolError("chunked body ended inside its trailers")
                yield t
                if t in (b"\r\n", b"\n"):
                    return
        left = size + 2  # the data and its CRLF
        while left > 0:
            piece = rfile.read1(min(left, PIECE))
            if not piece:
                raise ProtocolError("chunked body ended inside a chunk")
            left -= len(piece)
            yield piece


def decoded_body(rfile, framing, limit):
    """The payload of a request body (chunked encoding removed), at most `limit` bytes."""
    kind, n = framing
    if kind == "none":
        return b""
    if kind == "length":
        if n > limit:
            raise ProtocolError("body of %d bytes is over the %d-byte limit" % (n, limit))
        data = rfile.read(n)
        if len(data) != n:
            raise ProtocolError("body ended %d bytes early" % (n - len(data)))
        return data
    out = bytearray()
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise ProtocolError("chunked body ended inside a size line")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        if len(out) + size > limit:
            raise ProtocolError("chunked body over the %d-byte limit" % limit)
        out += rfile.read(size)
        rfile.readline(MAX_LINE + 1)
