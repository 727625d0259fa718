"""HTTP request handler: routing, WebDAV methods, trash bin, uploads, OCS, control API."""

import base64
import gzip
import hashlib
import http
import json
import os
import random
import re
import secrets
import shutil
import socket
import struct
import sys
import threading
import time
import traceback
import unicodedata
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from http.server import BaseHTTPRequestHandler

import ncdav as dav
from ncdav import D, NC, OC, DavError
from ncstore import Node

BLOCK = 1 << 20
MAX_XML_BODY = 16 << 20
UPLOAD_META = ".ncserver-upload.json"
DAV_ROOT = "/remote.php/dav"
LEGACY_ROOT = "/remote.php/webdav"
PUBLIC_ROOT = "/public.php/dav/files"
TOKEN_CHARS = "abcdefgijkmnopqrstwxyzABCDEFGHJKLMNPQRSTWXYZ23456789"
VERSION = {"major": 32, "minor": 0, "micro": 1, "string": "32.0.1", "edition": "",
           "extendedSupport": False}


class ClientGone(Exception):
    """The connection is unusable (client vanished or we reset it on purpose)."""


class ShortBody(Exception):
    def __init__(self, received):
        super().__init__("short body")
        self.received = received


class NotModified(Exception):
    def __init__(self, etag):
        super().__init__("not modified")
        self.etag = etag


# --------------------------------------------------------------------- state
class Fault:
    def __init__(self, spec, seq):
        self.seq = seq
        self.method = str(spec.get("method", "*")).upper()
        self.path_contains = spec.get("path_contains", "") or ""
        self.status = int(spec.get("status", 503))
        self.count = int(spec.get("count", 1))
        self.action = spec.get("action", "status")
        self.seconds = float(spec.get("seconds", 0) or 0)
        self.after_bytes = int(spec.get("after_bytes", 0) or 0)
        self.message = spec.get("message")
        # Method "BULK-PART" matches one part of a bulk upload by its X-File-Path: "status"
        # makes that part's entry an error (with "message"), "md5" makes its hash mismatch
        # (the request stops there with 400). Faults a real server cannot be made to show.
        if self.action not in ("status", "reset", "delay", "stall", "md5"):
            raise ValueError("unknown action %r" % self.action)
        if self.count < -1:
            raise ValueError("count must be -1 (unlimited) or positive")
        # "probability": each matching request is hit with this chance (0 < p <= 1); a request
        # that is not hit is served normally and does not use up the count. "seed" makes the
        # draws reproducible: the same seed and the same request sequence hit the same requests.
        p = spec.get("probability", 1)
        try:
            self.probability = float(p)
        except (TypeError, ValueError):
            raise ValueError("probability must be a number")
        if not 0 < self.probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        self.seed = spec.get("seed")
        self.rng = random.Random(self.seed)
        self.hits = 0
        self.passed = 0

    def matches(self, method, raw, decoded):
        if self.method not in ("*", method):
            return False
        pc = self.path_contains
        return (not pc) or pc in raw or pc in decoded

    def describe(self):
        return {"id": self.seq, "method": self.method, "path_contains": self.path_contains,
                "status": self.status, "count": self.count, "action": self.action,
                "seconds": self.seconds, "after_bytes": self.after_bytes, "probability": self.probability,
                "seed": self.seed, "hits": self.hits, "passed": self.passed}


class FaultList:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []
        self.seq = 0

    def add(self, spec):
        with self.lock:
            self.seq += 1
            f = Fault(spec, self.seq)
            if f.count != 0:
                self.items.append(f)
            return f

    def clear(self):
        with self.lock:
            self.items = []

    def take(self, method, raw, decoded):
        """Consume one use of the oldest matching fault. A fault with a probability draws once per
        matching request; a request it does not pick goes on to the next matching fault (and is
        served normally if none picks it). count -1 never runs out."""
        with self.lock:
            for f in self.items:
                if f.matches(method, raw, decoded):
                    if f.probability < 1 and f.rng.random() >= f.probability:
                        f.passed += 1
                        continue
                    f.hits += 1
                    if f.count > 0:
                        f.count -= 1
                        if f.count == 0:
                            self.items.remove(f)
                    return f
        return None


class RequestLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8") if path else None

    def write(self, entry):
        if self.f is None:
            return
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()


class State:
    def __init__(self, store, user, password, generic, control, log_path,
                 verify_checksums=False, login_password=None, display_name=None):
        self.store = store
        self.user = user
        self.password = password
        self.login_password = login_password
        self.display_name = display_name or user.capitalize()
        self.generic = generic
        self.control = control
        self.verify_checksums = verify_checksums
        self.log = RequestLog(log_path)
        self.faults = FaultList()
        self.maintenance = False
        self.port = 0
        self.scheme = "http"      # "https" with --tls-cert
        self.stats_lock = threading.Lock()
        self.requests = 0
        self.by_method = {}
        self.stopping = threading.Event()

    def count(self, method):
        with self.stats_lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1


# ------------------------------------------------------------------- helpers
def fmt_fileid(fileid, instanceid):
    return "%08d%s" % (fileid, instanceid)


def sanitize_mtime(value):
    """Nextcloud's MtimeSanitizer: numeric, not hex, > one day.  Returns (int, error)."""
    v = value.strip()
    if re.match(r"^0[xX]", v):
        return None, "X-OC-MTime header must be an integer (unix timestamp)."
    try:
        f = float(v)
    except ValueError:
        return None, "X-OC-MTime header must be an integer (unix timestamp)."
    if f != f or f in (float("inf"), float("-inf")):
        return None, "X-OC-MTime header must be an integer (unix timestamp)."
    if int(f) <= 86400:
        return None, "X-OC-MTime header must be a valid positive integer"
    return int(f), None


def parse_etag_list(value):
    return [t.strip() for t in value.split(",") if t.strip()]


def perms_string(isdir, mask):
    s = ""
    if mask & 16:
        s += "R"
    if mask & 1:
        s += "G"
    if mask & 8:
        s += "D"
    if mask & 2:
        s += "NV"
    if isdir:
        if mask & 4:
            s += "CK"
    elif mask & 2:
        s += "W"
    return s


def parse_xml(body):
    try:
        return ET.fromstring(body)
    except ET.ParseError as e:
        raise dav.BadRequest("The request body had an invalid XML body. (message: %s)" % e)


def text_of(elem):
    return "".join(elem.itertext()) if elem is not None else ""


def _name_key(n):
    return n.name


class BodyReader:
    """readline()/copy_to() on top of Handler.iter_body() (for multipart parsing)."""

    def __init__(self, it):
        self.it = it
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        try:
            self.buf += next(self.it)
        except StopIteration:
            self.eof = True

    def readline(self, limit=65536):
        while b"\n" not in self.buf and not self.eof and len(self.buf) < limit:
            self._fill()
        i = self.buf.find(b"\n")
        n = len(self.buf) if i < 0 else i + 1
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def copy_to(self, out, length, hasher=None):
        left = length
        while left > 0:
            if not self.buf:
                if self.eof:
                    break
                self._fill()
                continue
            take = min(left, len(self.buf))
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            out.write(piece)
            if hasher is not None:
                hasher.update(piece)
            left -= take
        return length - left

    def rest(self):
        self.buf.clear()
        for d in self.it:
            yield d


class UploadEntry:
    """Light node-like object for the uploads collection (never indexed)."""
    __slots__ = ("name", "isdir", "size", "mtime", "etag", "fileid", "children", "checksum",
                 "ctime", "utime", "fav", "props", "tinfo", "parent")

    def __init__(self, name, isdir, size, mtime):
        self.name = name
        self.isdir = isdir
        self.size = size
        self.mtime = int(mtime)
        self.etag = "%x%x" % (int(mtime * 1000), size)
        self.fileid = None
        self.children = None
        self.checksum = ""
        self.ctime = 0
        self.utime = 0
        self.fav = 0
        self.props = None
        self.tinfo = None
        self.parent = None


# ------------------------------------------------------------ property logic
class PropCtx:
    """Computes property values for one kind of collection."""

    def __init__(self, h, kind, share=None, search=False):
        st = h.state
        self.store = st.store
        self.user = st.user
        self.display = st.display_name
        self.generic = st.generic
        self.kind = kind            # files | trash | uploads | public
        self.share = share
        self.search = search
        self.instanceid = st.store.instanceid
        self.free = st.store.free()
        self.shared_ids = {s["fileid"] for s in st.store.shares.values()}
        self.getters = self._build()

    def _build(self):
        g = {}
        s = self

        def etag(n):
            return "&quot;%s&quot;" % n.etag

        g[D("getetag")] = etag
        g[D("getlastmodified")] = lambda n: dav.http_date(n.mtime)
        g[D("getcontentlength")] = lambda n: None if n.isdir else str(n.size)
        if self.search:
            g[D("getcontenttype")] = lambda n: "httpd/unix-directory" if n.isdir else dav.guess_mime(n.name)
        else:
            g[D("getcontenttype")] = lambda n: None if n.isdir else dav.guess_mime(n.name)
        g[D("resourcetype")] = lambda n: "<d:collection/>" if n.isdir else ""
        g[D("displayname")] = lambda n: dav.xml_escape(n.name)
        g[D("creationdate")] = lambda n: dav.iso_date(n.ctime)
        if self.kind == "files" and not self.generic:
            g[D("quota-used-bytes")] = lambda n: str(n.size) if n.isdir else None
            g[D("quota-available-bytes")] = lambda n: (str(s.free) if s.free is not None else "-3") if n.isdir else None
        if self.generic:
            return g
        if self.kind in ("files", "public"):
            pub = self.kind == "public"
            mask = self.share["permissions"] if pub else 31
            g[OC("fileid")] = lambda n: str(n.fileid)
            g[OC("id")] = lambda n: fmt_fileid(n.fileid, s.instanceid)
            g[OC("size")] = lambda n: str(n.size)
            if pub:
                g[OC("permissions")] = lambda n: perms_string(n.isdir, mask)
            else:
                g[OC("permissions")] = lambda n: "RGDNVCK" if n.isdir else "RGDNVW"
            g[OC("checksums")] = lambda n: ("<oc:checksum>%s</oc:checksum>" % dav.xml_escape(n.checksum)) if n.checksum and not n.isdir else None
            g[OC("favorite")] = lambda n: str(n.fav)
            g[OC("owner-id")] = lambda n: s.user
            g[OC("owner-display-name")] = lambda n: dav.xml_escape(s.display)
            g[OC("share-types")] = lambda n: "<oc:share-type>3</oc:share-type>" if n.fileid in s.shared_ids else ""
            g[OC("data-fingerprint")] = lambda n: ""
            g[NC("has-preview")] = lambda n: "false"
            g[NC("mount-type")] = lambda n: ""
            g[NC("is-mount-root")] = lambda n: "false"
            g[NC("is-federated")] = lambda n: "false"
            g[NC("hidden")] = lambda n: "false"
            g[NC("creation_time")] = lambda n: str(n.ctime)
            g[NC("upload_time")] = lambda n: str(n.utime)
            g[NC("contained-file-count")] = lambda n: str(sum(1 for c in n.children.values() if not c.isdir)) if n.isdir else None
            g[NC("contained-folder-count")] = lambda n: str(sum(1 for c in n.children.values() if c.isdir)) if n.isdir else None
            g[NC("sharees")] = lambda n: ""
            g["{%s}share-permissions" % dav.NS_OCS] = lambda n: str((mask if pub else 31) & (31 if n.isdir else 19))
            g["{%s}share-permissions" % dav.NS_OCM] = lambda n: '["share","read","write"]' if not pub else '["read"]'
        elif self.kind == "trash":
            st = self.store

            def tr_top(n):
                return st.trash_item_root(n)

            g[D("getetag")] = lambda n: (str(tr_top(n).tinfo.deleted) if tr_top(n) else None)
            g[D("displayname")] = lambda n: dav.xml_escape(st.trash_original_name(n)) if tr_top(n) else "trash"
            g[OC("fileid")] = lambda n: str(n.fileid) if n.fileid else None
            g[OC("id")] = lambda n: str(n.fileid) if n.fileid else None
            g[OC("size")] = lambda n: str(n.size)
            g[OC("permissions")] = lambda n: "GD" if n.fileid else None
            g[NC("has-preview")] = lambda n: "false" if n.fileid else None
            g[NC("mount-type")] = lambda n: "" if n.fileid else None
            g[NC("trashbin-filename")] = lambda n: dav.xml_escape(st.trash_original_name(n)) if tr_top(n) else None
            g[NC("trashbin-title")] = g[NC("trashbin-filename")]
            g[NC("trashbin-original-location")] = lambda n: dav.xml_escape(st.trash_original_path(n)) if tr_top(n) else None
            g[NC("trashbin-deletion-time")] = lambda n: str(tr_top(n).tinfo.deleted) if tr_top(n) else None
            g[NC("trashbin-deleted-by-id")] = lambda n: s.user if tr_top(n) else None
            g[NC("trashbin-deleted-by-display-name")] = lambda n: dav.xml_escape(s.display) if tr_top(n) else None
            g[NC("trashbin-backend")] = lambda n: "OCA\\Files_Trashbin\\Trash\\LegacyTrashBackend" if tr_top(n) else None
        elif self.kind == "uploads":
            g[OC("size")] = lambda n: str(n.size)
        return g

    def get(self, node, clark):
        f = self.getters.get(clark)
        if f is not None:
            return f(node)
        if node.props and clark in node.props:
            return dav.xml_escape(node.props[clark])
        return None

    def allprop_names(self, node):
        names = [c for c in dav.ALLPROP_DEFAULT]
        if node.props:
            names.extend(k for k in node.props if k not in names)
        return names

    def propname_names(self, node):
        names = list(self.getters)
        if node.props:
            names.extend(k for k in node.props if k not in names)
        return names


def parse_propfind(body):
    if not body.strip():
        return "allprop", []
    root = parse_xml(body)
    if root.tag != D("propfind"):
        raise dav.BadRequest("The root element of a PROPFIND request must be {DAV:}propfind")
    mode, props = "allprop", []
    for child in root:
        if child.tag == D("prop"):
            mode = "prop"
            seen = set()
            for c in child:
                if isinstance(c.tag, str) and c.tag not in seen:
                    seen.add(c.tag)
                    props.append(c.tag)
        elif child.tag == D("allprop"):
            mode = "allprop"
        elif child.tag == D("propname"):
            mode = "propname"
        elif child.tag == D("include"):
            props.extend(c.tag for c in child if isinstance(c.tag, str))
    return mode, props


def render_entries(ctx, entries, mode, props, minimal):
    """Render a multistatus for [(node, href)].

    mode "prop": exactly the requested props, unknown ones in a 404 propstat.
    mode "allprop": Sabre's default set plus dead props (404s dropped), plus any
    <d:include> props (whose 404s are reported).  mode "propname": names only.
    """
    pm = dav.PrefixMap()
    out = []
    get = ctx.get
    include = set(props) if mode == "allprop" else ()
    for node, href in entries:
        found = []
        nf = []
        if mode == "prop":
            names = props
        elif mode == "allprop":
            names = ctx.allprop_names(node)
            names = names + [p for p in props if p not in names]
        else:
            names = ctx.propname_names(node)
        for clark in names:
            v = get(node, clark)
            if v is None:
                if mode == "prop" or clark in include:
                    nf.append(clark)
            else:
                found.append((clark, "" if mode == "propname" else v))
        out.append(dav.render_response(href, found, [] if minimal else nf, pm))
    return dav.multistatus(out, pm)


# ---------------------------------------------------------------- the handler
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ncserver/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300
    state = None            # set by the server factory

    # ---- plumbing -----------------------------------------------------------
    def log_message(self, fmt, *args):
        pass

    def handle_expect_100(self):
        # 100 Continue is sent lazily, when the handler starts reading the body, so
        # early errors (401, 409, 412, 507...) are answered without inviting the upload.
        self._expect_pending = True
        return True

    def handle_one_request(self):
        self._expect_pending = False
        self._linger = False
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (OSError, ValueError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        self.dispatch()
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def dispatch(self):
        st = self.state
        self.t0 = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.status = None
        self.bulk_stored = None
        self.headers_sent = False
        self.stream_fault = None
        self.extra_headers = []
        self.is_dav = False
        raw = self.path
        if raw.startswith("http://") or raw.startswith("https://"):
            raw = urllib.parse.urlsplit(raw).path or "/"
        rawpath, _, query = raw.partition("?")
        self.rawpath = rawpath
        self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
        self.decoded = rawpath
        self._init_body()
        is_control = rawpath.startswith("/__control/") or rawpath == "/__control"
        try:
            try:
                self.decoded = unicodedata.normalize(
                    "NFC", urllib.parse.unquote(rawpath, errors="strict"))
            except UnicodeDecodeError:
                raise dav.BadRequest("The request path is not valid UTF-8")
            if not is_control:
                st.count(self.command)
                fault = st.faults.take(self.command, rawpath, self.decoded)
                if fault is not None and self.apply_fault(fault):
                    return
            self.route()
        except DavError as e:
            self.send_dav_error(e)
        except NotModified as e:
            self.send_full(304, [("ETag", '"%s"' % e.etag)] if e.etag else [], b"", head_only=True)
        except ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # never let a handler bug kill the connection thread silently
            sys.stderr.write("ncserver: error handling %s %s\n" % (self.command, self.path))
            traceback.print_exc()
            if not self.headers_sent:
                try:
                    self.send_dav_error(dav.InternalError("%s: %s" % (type(e).__name__, e)))
                except Exception:
                    self.close_connection = True
            else:
                self.close_connection = True
        finally:
            if not is_control:
                self.write_log()

    def write_log(self):
        self.state.log.write({
            "t": round(self.t0, 6),
            "method": self.command,
            "path": self.rawpath,
            "status": self.status if self.status is not None else 0,
            "depth": self.headers.get("Depth"),
            "range": self.headers.get("Range"),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "user_agent": self.headers.get("User-Agent"),
            # A bulk upload's stored parts (X-File-Path as sent): what one POST wrote.
            "stored": self.bulk_stored,
        })

    # ---- request bodies ----------------------------------------------------
    def _init_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        self.body_chunked = "chunked" in te
        cl = self.headers.get("Content-Length")
        self.body_length = None
        if not self.body_chunked and cl is not None:
            try:
                self.body_length = int(cl.strip())
                if self.body_length < 0:
                    raise ValueError
            except ValueError:
                self.body_length = 0
                self.close_connection = True
        self.body_done = not self.body_chunked and not self.body_length
        self.has_body = not self.body_done

    def _send_continue(self):
        if self._expect_pending:
            self._expect_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def iter_body(self, bs=BLOCK):
        if self.body_done:
            return
        self._send_continue()
        rf = self.rfile
        received = 0
        try:
            if self.body_chunked:
                while True:
                    line = rf.readline(1024)
                    if not line:
                        raise ShortBody(received)
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        self.close_connection = True
                        raise dav.BadRequest("Invalid chunked transfer encoding")
                    if size == 0:
                        while True:
                            t = rf.readline(1024)
                            if t in (b"\r\n", b"\n", b""):
                                break
                        break
                    left = size
                    while left:
                        d = rf.read(min(bs, left))
                        if not d:
                            raise ShortBody(received)
                        left -= len(d)
                        received += len(d)
                        self.bytes_in += len(d)
                        yield d
                    rf.readline(16)
            else:
                left = self.body_length
                while left > 0:
                    d = rf.read(min(bs, left))
                    if not d:
                        raise ShortBody(received)
                    left -= len(d)
                    received += len(d)
                    self.bytes_in += len(d)
                    yield d
        except (OSError, ValueError):
            self.close_connection = True
            raise ShortBody(received)
        except ShortBody:
            self.close_connection = True
            raise
        self.body_done = True

    def read_body(self, limit=MAX_XML_BODY):
        parts = []
        n = 0
        try:
            for d in self.iter_body():
                n += len(d)
                if n > limit:
                    self.close_connection = True
                    raise DavError(413, "Sabre\\DAV\\Exception", "Request body too large")
                parts.append(d)
        except ShortBody:
            raise ClientGone()
        return b"".join(parts)

    def _settle_body(self):
        """Before answering: drain a small unread body, or plan to close the connection."""
        if self.body_done:
            return
        if (not self._expect_pending and not self.body_chunked and self.body_length is not None
                and self.body_length <= 256 * 1024):
            try:
                for _ in self.iter_body():
                    pass
                return
            except (ShortBody, DavError):
                pass
        self.close_connection = True
        self._linger = not self._expect_pending

    def finish(self):
        # Lingering close: when we answered before reading a body the client is still
        # sending, closing at once would turn into an RST that can destroy our response
        # before the client reads it.  Half-close and discard input for a while instead.
        if getattr(self, "_linger", False) and not getattr(self, "_was_reset", False):
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(0.5)
                deadline = time.time() + 5
                discarded = 0
                while time.time() < deadline and discarded < (1 << 30):
                    d = self.connection.recv(1 << 16)
                    if not d:
                        break
                    discarded += len(d)
            except OSError:
                pass
        try:
            super().finish()
        except OSError:
            pass

    # ---- responses ---------------------------------------------------------
    def head_bytes(self, status, headers, length):
        self._settle_body()
        reason = ""
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = ["HTTP/1.1 %d %s" % (status, reason),
                 "Date: " + self.date_time_string(),
                 "Server: " + self.server_version]
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        for k, v in self.extra_headers:
            lines.append("%s: %s" % (k, v))
        if self.is_dav and not self.state.generic:
            lines.append("X-Request-Id: " + secrets.token_hex(10))
            lines.append("Content-Security-Policy: default-src 'none';")
        if length is not None and status not in (204, 304) and not 100 <= status < 200:
            lines.append("Content-Length: %d" % length)
        if self.close_connection:
            lines.append("Connection: close")
        self.status = status
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def send_full(self, status, headers, body=b"", head_only=False):
        data = self.head_bytes(status, headers, len(body))
        self.headers_sent = True
        if head_only or status in (204, 304):
            self.wfile.write(data)
        else:
            self.wfile.write(data + body)
            self.bytes_out += len(body)

    def send_dav_error(self, e):
        if self.state.generic and self.is_dav:
            body = dav.apache_error_body(e.status, http.HTTPStatus(e.status).phrase if e.status in
                                         http.HTTPStatus._value2member_map_ else "Error", e.message)
            ctype = "text/html; charset=iso-8859-1"
        else:
            body = dav.sabre_error_body(e)
            ctype = "application/xml; charset=utf-8"
        if e.status >= 500 and e.status not in (503, 507):
            pass
        self.send_full(e.status, [("Content-Type", ctype)] + list(e.headers), body,
                       head_only=self.command == "HEAD")

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode("utf-8")
        self.send_full(status, [("Content-Type", "application/json; charset=utf-8")] + list(headers), body)

    def send_xml(self, status, body, headers=()):
        h = [("Content-Type", "application/xml; charset=utf-8")] + list(headers)
        ae = self.headers.get("Accept-Encoding") or ""
        if len(body) > 256 and re.search(r"(^|[\s,])gzip(\s*;\s*q=(?!0(\.0*)?\s*($|,))[\d.]+)?\s*($|,)", ae):
            body = gzip.compress(body, compresslevel=1)
            h.append(("Content-Encoding", "gzip"))
            h.append(("Vary", "Accept-Encoding"))
        self.send_full(status, h, body)

    # ---- faults ------------------------------------------------------------
    def apply_fault(self, f):
        """Returns True when the request was fully handled by the fault."""
        if f.action == "delay":
            self._sleep(min(f.seconds, 600))
            return False
        if f.action == "reset":
            if f.after_bytes > 0 and self.command == "GET":
                self.stream_fault = f
                return False
            self.reset_connection()
            raise ClientGone()
        if f.action == "stall":
            if self.command == "GET":
                self.stream_fault = f
                return False
            self._sleep(min(f.seconds or 120, 120))
            self.close_connection = True
            raise ClientGone()
        # status
        self.is_dav = True
        if self.rawpath.startswith("/ocs/"):
            self.send_json(f.status, {"ocs": {"meta": {"status": "failure", "statuscode": f.status,
                                                       "message": f.message or "Injected fault"},
                                              "data": []}})
        else:
            self.send_dav_error(dav.error_for_status(f.status, f.message))
        return True

    def _sleep(self, seconds):
        end = time.time() + seconds
        while not self.state.stopping.is_set():
            left = end - time.time()
            if left <= 0:
                break
            time.sleep(min(left, 0.1))

    def reset_connection(self):
        """Abort the TCP connection with an RST (SO_LINGER 0)."""
        self.close_connection = True
        self._was_reset = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    # ---- auth --------------------------------------------------------------
    def auth_user(self, required=True):
        h = self.headers.get("Authorization")
        st = self.state
        if not h or not h[:6].lower() == "basic ":
            if not required:
                return None
            raise dav.NotAuthenticated("No 'Authorization: Basic' header found. Either the client "
                                       "didn't send one, or the server is misconfigured")
        try:
            user, _, pw = base64.b64decode(h[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise dav.NotAuthenticated("Username or password was incorrect")
        if st.login_password is not None and user == st.user and pw == st.login_password:
            raise dav.NotAuthenticated("2FA challenge not passed.")
        if user != st.user or pw != st.password:
            raise dav.NotAuthenticated("Username or password was incorrect")
        return user

    # ---- routing -----------------------------------------------------------
    def route(self):
        p = self.decoded
        st = self.state
        if p.startswith("/__control/"):
            if not st.control:
                return self.send_full(404, [("Content-Type", "text/plain")], b"Not Found\n")
            return self.control(p[len("/__control/"):])
        if p == "/status.php":
            return self.status_php()
        if p.startswith("/ocs/v1.php/") or p.startswith("/ocs/v2.php/"):
            if st.generic:
                return self.send_full(404, [("Content-Type", "text/html")], b"<h1>Not Found</h1>\n")
            return self.ocs(1 if p.startswith("/ocs/v1") else 2, p[len("/ocs/v1.php"):])
        if p == DAV_ROOT or p.startswith(DAV_ROOT + "/"):
            self.is_dav = True
            if st.maintenance:
                raise dav.MaintenanceMode()
            return self.dav(p[len(DAV_ROOT):])
        if p == LEGACY_ROOT or p.startswith(LEGACY_ROOT + "/"):
            self.is_dav = True
            if st.maintenance:
                raise dav.MaintenanceMode()
            self.auth_user()
            return self.files(self.split(p[len(LEGACY_ROOT):]), LEGACY_ROOT)
        if p.startswith(PUBLIC_ROOT + "/"):
            self.is_dav = True
            if st.maintenance:
                raise dav.MaintenanceMode()
            if st.generic:
                raise dav.NotFound("Not found")
            return self.public_dav(p[len(PUBLIC_ROOT) + 1:])
        m = re.match(r"^(?:/index\.php)?/s/([A-Za-z0-9]+)/?$", p)
        if m and not st.generic and m.group(1) in st.store.shares:
            body = ("<!DOCTYPE html><html><head><title>Shared folder - Nextcloud</title></head>"
                    "<body><p>Public share %s (ncserver). Use /public.php/dav/files/%s/</p></body></html>\n"
                    % (m.group(1), m.group(1))).encode()
            return self.send_full(200, [("Content-Type", "text/html; charset=UTF-8")], body,
                                  head_only=self.command == "HEAD")
        return self.send_full(404, [("Content-Type", "text/html; charset=UTF-8")],
                              b"<html><body><h1>404 Not Found</h1></body></html>\n",
                              head_only=self.command == "HEAD")

    def split(self, rest):
        parts = [s for s in rest.split("/") if s != ""]
        for s in parts:
            if s in (".", ".."):
                raise dav.BadRequest("Path segments '.' and '..' are not allowed")
        return parts

    def files_base(self):
        return "%s/files/%s" % (DAV_ROOT, self.state.user)

    def dav(self, rest):
        st = self.state
        self.auth_user()
        segs = self.split(rest)
        if not segs:
            return self.dav_root()
        kind = segs[0]
        if kind == "files":
            if len(segs) < 2:
                if self.command == "PROPFIND":
                    raise dav.Forbidden("Listing users is not allowed")
                raise dav.NotFound("File with name files could not be located")
            if segs[1] != st.user:
                raise dav.NotFound("File with name %s could not be located" % segs[1])
            return self.files(segs[2:], "%s/files/%s" % (DAV_ROOT, segs[1]))
        if st.generic:
            raise dav.NotFound("File with name %s could not be located" % kind)
        if kind == "trashbin":
            return self.trashbin(segs[1:])
        if kind == "uploads":
            return self.uploads(segs[1:])
        if kind == "bulk" and len(segs) == 1:
            if self.command != "POST":
                raise dav.MethodNotAllowed("Only POST is allowed on the bulk endpoint")
            return self.bulk()
        raise dav.NotFound("File with name %s could not be located" % kind)

    # ---- DAV root: OPTIONS / PROPFIND / SEARCH -------------------------------
    def dav_root(self):
        m = self.command
        if m == "OPTIONS":
            return self.options(True)
        if m == "SEARCH" and not self.state.generic:
            return self.search()
        if m == "PROPFIND":
            self.read_body()
            pm = dav.PrefixMap()
            found = [(D("resourcetype"), "<d:collection/>"),
                     (D("current-user-principal"),
                      "<d:href>%s/principals/users/%s/</d:href>" % (DAV_ROOT, dav.quote_seg(self.state.user)))]
            body = dav.multistatus([dav.render_response(DAV_ROOT + "/", found, [], pm)], pm)
            return self.send_xml(207, body)
        raise dav.NotImplemented_("There was no plugin in the system that was willing to handle this %s method." % m)

    def options(self, exists):
        st = self.state
        allow = ("OPTIONS, GET, HEAD, DELETE, PROPFIND, PUT, PROPPATCH, COPY, MOVE, REPORT"
                 + ("" if st.generic else ", SEARCH")) if exists else "OPTIONS, MKCOL, PUT"
        hdrs = [("DAV", "1" if st.generic else "1, 3, extended-mkcol, nextcloud-checksum-update"),
                ("MS-Author-Via", "DAV"), ("Allow", allow), ("Accept-Ranges", "bytes")]
        self.read_body()
        self.send_full(200, hdrs, b"")

    # ---- /remote.php/dav/files/<user>/... -----------------------------------
    def files(self, parts, base):
        m = self.command
        if m in ("GET", "HEAD"):
            return self.do_get_file(parts, None, head=(m == "HEAD"))
        if m == "PROPFIND":
            return self.propfind(parts, base, "files")
        if m == "PUT":
            return self.put(parts)
        if m == "MKCOL":
            return self.mkcol(parts)
        if m == "DELETE":
            return self.delete(parts)
        if m in ("MOVE", "COPY"):
            return self.move_copy(parts, m == "MOVE")
        if m == "PROPPATCH":
            return self.proppatch(parts, base)
        if m == "OPTIONS":
            with self.state.store.lock:
                exists = self.state.store.lookup(parts) is not None
            return self.options(exists)
        if m == "PATCH" and not self.state.generic:
            return self.patch(parts)
        if m == "REPORT":
            self.read_body()
            raise DavError(403, "Sabre\\DAV\\Exception\\ReportNotSupported",
                           "The report you requested is not supported by ncserver",
                           "<d:supported-report/>")
        if m in ("LOCK", "UNLOCK") and self.state.generic:
            raise dav.MethodNotAllowed("Locking is not supported")
        raise dav.NotImplemented_("There was no plugin in the system that was willing to handle this %s method." % m)

    def not_found(self, parts):
        return dav.NotFound("File with name %s could not be located" % "/".join(parts))

    def node_etag(self, node):
        """ETag used in preconditions: Nextcloud gives collections none."""
        if node is None:
            return None
        if node.isdir and not self.state.generic:
            return None
        return '"%s"' % node.etag

    def check_upload_file_preconditions(self):
        im = (self.headers.get("If-Match") or "").strip()
        if im and im != "*":
            raise dav.PreconditionFailed("An If-Match header was specified, but none of the specified ETags matched.",
                                         "If-Match")
        if (self.headers.get("If-None-Match") or "").strip():
            raise dav.PreconditionFailed(
                "An If-None-Match header was specified, but the ETag matched (or * was specified).", "If-None-Match")

    def check_preconditions(self, node, is_get=False):
        h = self.headers
        etag = self.node_etag(node)
        im = h.get("If-Match")
        if im:
            if node is None:
                raise dav.PreconditionFailed("An If-Match header was specified and the resource did not exist",
                                             "If-Match")
            if im.strip() != "*":
                if etag is None or etag not in parse_etag_list(im):
                    raise dav.PreconditionFailed(
                        "An If-Match header was specified, but none of the specified ETags matched.",
                        "If-Match", [("ETag", etag)] if etag else None)
        inm = h.get("If-None-Match")
        if inm and node is not None:
            v = inm.strip()
            matched = v == "*" or (etag is not None and etag in parse_etag_list(v))
            if matched:
                if is_get:
                    raise NotModified(node.etag)
                raise dav.PreconditionFailed(
                    "An If-None-Match header was specified, but the ETag matched (or * was specified).",
                    "If-None-Match")
        if not inm and is_get and node is not None:
            ims = h.get("If-Modified-Since")
            if ims:
                t = dav.parse_http_date(ims)
                if t is not None and node.mtime <= t:
                    raise NotModified(node.etag)
        ius = h.get("If-Unmodified-Since")
        if ius and node is not None:
            t = dav.parse_http_date(ius)
            if t is not None and node.mtime > t:
                raise dav.PreconditionFailed("An If-Unmodified-Since header was specified, but the entity "
                                             "has been changed since the specified date.", "If-Unmodified-Since")

    def check_new_name(self, name, invalid_target=False):
        if self.state.generic:
            prob = dav.generic_name_problem(name)
            if prob:
                raise dav.BadRequest(prob)
            return
        prob = dav.nc_name_problem(name)
        if prob:
            raise dav.InvalidPath(prob)

    def check_path_length(self, parts):
        total = len(("/%s/files/" % self.state.user).encode()) + len("/".join(parts).encode())
        if total > dav.MAX_PATH_BYTES and not self.state.generic:
            raise dav.InvalidPath("Path length(%d) exceeds max path length(%d)" % (total, dav.MAX_PATH_BYTES))

    def nc_headers(self, node):
        if self.state.generic:
            return [("ETag", '"%s"' % node.etag)] if not node.isdir else []
        h = [("OC-FileId", fmt_fileid(node.fileid, self.state.store.instanceid))]
        if not node.isdir:
            h = [("ETag", '"%s"' % node.etag), ("OC-ETag", '"%s"' % node.etag)] + h
        return h

    # ---- GET / HEAD ----------------------------------------------------------
    def do_get_file(self, parts, root, head, kind="files"):
        st = self.state
        store = st.store
        with store.lock:
            node = store.lookup(parts, root)
            if node is None:
                raise self.not_found(parts)
            if node.isdir:
                if st.generic:
                    raise dav.NotImplemented_("There was no plugin in the system that was willing to handle "
                                              "this GET method. Enable the Browser plugin to get a better "
                                              "result here.")
                self.read_body()
                body = (b"This is the WebDAV interface. It can only be accessed by WebDAV clients such as "
                        b"the Nextcloud desktop sync client.")
                return self.send_full(200, [("Content-Type", "text/html; charset=UTF-8")], body, head_only=head)
            self.check_preconditions(node, is_get=True)
            path = store.disk_path(node)
            etag, mtime, fileid, checksum, name = node.etag, node.mtime, node.fileid, node.checksum, node.name
            f = open(path, "rb")
        try:
            self.read_body()
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            status = 200
            rng = self.headers.get("Range")
            if rng:
                ifr = self.headers.get("If-Range")
                if ifr and ifr.strip() != '"%s"' % etag and dav.parse_http_date(ifr) != mtime:
                    rng = None
            if rng:
                m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng)
                if m and (m.group(1) or m.group(2)):
                    a, b = m.group(1), m.group(2)
                    if a:
                        start = int(a)
                        end = int(b) if b else size - 1
                        if b and end < start:
                            raise dav.RangeNotSatisfiable(
                                "The end offset (%d) is lower than the start offset (%d)" % (end, start), size)
                        if start >= size:
                            raise dav.RangeNotSatisfiable(
                                "The start offset (%d) exceeded the size of the entity (%d)" % (start, size), size)
                        end = min(end, size - 1)
                    else:
                        n = int(b)
                        if n == 0 or size == 0:
                            raise dav.RangeNotSatisfiable("Invalid suffix range", size)
                        start = max(0, size - n)
                        end = size - 1
                    status = 206
            length = max(0, end - start + 1)
            hdrs = [("Content-Type", dav.guess_mime(name)),
                    ("ETag", '"%s"' % etag),
                    ("Last-Modified", dav.http_date(mtime)),
                    ("Accept-Ranges", "bytes")]
            if status == 206:
                hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
            if not st.generic and kind != "uploads":
                if fileid:
                    hdrs.append(("OC-ETag", '"%s"' % etag))
                    hdrs.append(("OC-FileId", fmt_fileid(fileid, store.instanceid)))
                hdrs.append(("Content-Disposition", "attachment; filename*=UTF-8''%s; filename=\"%s\""
                             % (dav.quote_seg(name), name.encode("ascii", "replace").decode().replace('"', "_"))))
                hdrs.append(("X-Accel-Buffering", "no"))
                if checksum:
                    hdrs.append(("OC-Checksum", checksum))
            data = self.head_bytes(status, hdrs, length)
            self.headers_sent = True
            self.wfile.write(data)
            if head or length == 0:
                return
            self.stream_file(f, start, length)
        finally:
            f.close()

    def stream_file(self, f, offset, length):
        fault = self.stream_fault
        if fault is not None:
            n = min(length, fault.after_bytes)
            f.seek(offset)
            left = n
            while left > 0:
                d = f.read(min(BLOCK, left))
                if not d:
                    break
                self.wfile.write(d)
                self.bytes_out += len(d)
                left -= len(d)
            if fault.action == "stall":
                self._sleep(min(fault.seconds or 120, 120))
                self.close_connection = True
                raise ClientGone()
            self.reset_connection()
            raise ClientGone()
        try:
            sent = self.connection.sendfile(f, offset, length)
        except (OSError, ValueError) as e:
            if isinstance(e, (BrokenPipeError, ConnectionResetError)):
                raise
            sent = self._copy_out(f, offset, length)
        self.bytes_out += sent
        if sent < length:
            self.close_connection = True

    def _copy_out(self, f, offset, length):
        f.seek(offset)
        sent = 0
        while sent < length:
            d = f.read(min(BLOCK, length - sent))
            if not d:
                break
            self.wfile.write(d)
            sent += len(d)
        return sent

    # ---- PUT -------------------------------------------------------------------
    def declared_length(self):
        best = None
        for hname in ("X-Expected-Entity-Length", "Content-Length", "OC-Total-Length"):
            v = self.headers.get(hname)
            if v and v.strip().isdigit():
                n = int(v.strip())
                best = n if best is None else max(best, n)
        return best

    def receive_to(self, tmp, want_hashes=()):
        """Stream the request body into tmp.  Returns (count, {algo: hexdigest})."""
        hashers = {a: hashlib.new(a) for a in want_hashes if a != "adler32"}
        adler = 1 if "adler32" in want_hashes else None
        count = 0
        try:
            with open(tmp, "wb") as out:
                for d in self.iter_body():
                    out.write(d)
                    count += len(d)
                    for hsh in hashers.values():
                        hsh.update(d)
                    if adler is not None:
                        adler = zlib.adler32(d, adler)
        except ShortBody as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            expected = self.body_length if self.body_length is not None else -1
            raise dav.BadRequest(
                "Expected filesize of %d bytes but read (from Nextcloud client) and wrote (to Nextcloud "
                "storage) %d bytes. Could either be a network problem on the sending side or a problem "
                "writing to the storage on the server side." % (expected, e.received))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        digests = {a: h.hexdigest() for a, h in hashers.items()}
        if adler is not None:
            digests["adler32"] = "%08x" % adler
        return count, digests

    def wanted_hashes(self):
        want = set()
        xh = (self.headers.get("X-Hash") or "").strip().lower()
        if not self.state.generic:
            if xh in ("md5", "all"):
                want.add("md5")
            if xh in ("sha1", "all"):
                want.add("sha1")
            if xh in ("sha256", "all"):
                want.add("sha256")
        cs = self.checksum_header()
        if cs and self.state.verify_checksums:
            algo = cs.split(":", 1)[0].strip().lower().replace("-", "")
            algo = {"sha3256": "sha3_256"}.get(algo, algo)
            if algo in ("md5", "sha1", "sha256", "sha3_256", "adler32"):
                want.add(algo)
        return want

    def checksum_header(self):
        if self.state.generic:
            return None
        v = self.headers.get("OC-Checksum")
        return v.strip() if v and v.strip() else None

    def verify_checksum(self, digests):
        cs = self.checksum_header()
        if not cs or not self.state.verify_checksums:
            return
        for item in cs.split(","):
            algo, _, val = item.strip().partition(":")
            key = algo.strip().lower().replace("-", "")
            key = {"sha3256": "sha3_256"}.get(key, key)
            if key in digests and digests[key] != val.strip().lower():
                raise dav.BadRequest("The computed checksum does not match the one received from the client.")

    def hash_headers(self, digests):
        xh = (self.headers.get("X-Hash") or "").strip().lower()
        out = []
        if xh and not self.state.generic:
            for algo, hname in (("md5", "X-Hash-MD5"), ("sha1", "X-Hash-SHA1"), ("sha256", "X-Hash-SHA256")):
                if algo in digests and (xh == algo or xh == "all"):
                    out.append((hname, digests[algo]))
        return out

    def quota_error(self, parts, need):
        free = self.state.store.free()
        return dav.InsufficientStorage("Insufficient space in /%s, %d required, %d available"
                                       % ("/".join(parts), need, free if free is not None else -3))

    def put(self, parts):
        st = self.state
        store = st.store
        if not parts:
            raise dav.Conflict("PUT is not allowed on non-files.")
        name = parts[-1]
        with store.lock:
            parent = store.lookup(parts[:-1])
            if parent is None or not parent.isdir:
                raise dav.Conflict("Files cannot be created in non-existent collections")
            existing = parent.children.get(name)
            if existing is not None and existing.isdir:
                raise dav.Conflict("PUT is not allowed on non-files.")
            if existing is None:
                self.check_new_name(name)
                self.check_path_length(parts)
            self.check_preconditions(existing)
            declared = self.declared_length()
            if declared is not None and not store.quota_allows(declared - (existing.size if existing else 0)):
                raise self.quota_error(parts, declared)
        tmp = store.tmp_path()
        count, digests = self.receive_to(tmp, self.wanted_hashes())
        try:
            self.verify_checksum(digests)
        except DavError:
            os.unlink(tmp)
            raise
        return self.finish_write(parts, parent, name, tmp, count, digests)

    def finish_write(self, parts, parent, name, tmp, count, digests, chunked_move=False):
        """Commit a received file; shared by PUT and the chunked-upload final MOVE."""
        st = self.state
        store = st.store
        mtime = ctime = None
        mtime_err = None
        mh = self.headers.get("X-OC-Mtime") if not st.generic else None
        ch = self.headers.get("X-OC-CTime") if not st.generic else None
        if mh is not None and mh.strip() != "":
            mtime, mtime_err = sanitize_mtime(mh)
        if ch:
            ctime, _cerr = sanitize_mtime(ch)
        try:
            with store.lock:
                if not store.is_attached(parent):
                    raise dav.Conflict("Files cannot be created in non-existent collections")
                existing = parent.children.get(name)
                if existing is not None and existing.isdir:
                    raise dav.Conflict("PUT is not allowed on non-files.")
                if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
                    self.check_preconditions(existing)
                if not store.quota_allows(count - (existing.size if existing else 0)):
                    raise self.quota_error(parts, count)
                node, created = store.commit_file(parent, name, tmp, count, mtime=mtime,
                                                  checksum=self.checksum_header(), ctime=ctime)
                hdrs = self.nc_headers(node)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        if mtime_err:
            # Nextcloud applies X-OC-Mtime after the content is stored; a bad value
            # surfaces as an unconverted InvalidArgumentException (HTTP 500).
            raise DavError(500, "InvalidArgumentException", mtime_err)
        if mtime is not None:
            hdrs.append(("X-OC-MTime", "accepted"))
        if ctime is not None:
            hdrs.append(("X-OC-CTime", "accepted"))
        hdrs.extend(self.hash_headers(digests))
        hdrs.append(("Content-Type", "text/html; charset=UTF-8"))
        self.send_full(201 if created else 204, hdrs, b"")

    # ---- MKCOL -----------------------------------------------------------------
    def mkcol(self, parts):
        st = self.state
        store = st.store
        if self.has_body:
            body = self.read_body()
            if body.strip():
                raise dav.UnsupportedMediaType("The request body for the MKCOL request must have an xml "
                                               "Content-Type")
        if not parts:
            raise dav.MethodNotAllowed("The resource you tried to create already exists")
        name = parts[-1]
        with store.lock:
            parent = store.lookup(parts[:-1])
            if parent is None:
                raise dav.Conflict("Parent node does not exist")
            if not parent.isdir:
                raise dav.Conflict("Parent node is not a collection")
            if name in parent.children:
                raise dav.MethodNotAllowed("The resource you tried to create already exists")
            self.check_new_name(name)
            self.check_path_length(parts)
            free = store.free()
            if free is not None and free < 4096 and not st.generic:
                raise self.quota_error(parts, 4096)
            node = store.mkdir(parent, name)
            hdrs = [] if st.generic else [("OC-FileId", fmt_fileid(node.fileid, store.instanceid))]
        self.send_full(201, hdrs + [("Content-Type", "text/html; charset=UTF-8")], b"")

    # ---- DELETE ----------------------------------------------------------------
    def delete(self, parts):
        store = self.state.store
        self.read_body()
        with store.lock:
            node = store.lookup(parts)
            if node is None:
                raise self.not_found(parts)
            if not parts:
                raise dav.Forbidden("Could not delete the home folder")
            self.check_preconditions(node)
            skip = (self.headers.get("X-NC-Skip-Trashbin") or "").strip().lower() == "true"
            store.delete(node, permanent=skip)
        self.send_full(204, [], b"")

    # ---- MOVE / COPY -----------------------------------------------------------
    def parse_destination(self, allowed_bases):
        dest = self.headers.get("Destination")
        if not dest:
            raise dav.BadRequest("The destination header was not supplied")
        u = urllib.parse.urlsplit(dest.strip())
        if self.state.generic and u.netloc:
            host = self.headers.get("Host") or ""
            if u.netloc.lower() != host.lower():
                raise DavError(502, "Sabre\\DAV\\Exception", "Destination URI refers to a different server")
        try:
            p = unicodedata.normalize("NFC", urllib.parse.unquote(u.path, errors="strict"))
        except UnicodeDecodeError:
            raise dav.BadRequest("The destination path is not valid UTF-8")
        for base in allowed_bases:
            if p == base or p.startswith(base + "/"):
                return base, self.split(p[len(base):])
        raise dav.Forbidden("Requested uri (%s) is out of base uri (%s/)" % (u.path, allowed_bases[0]))

    def overwrite_flag(self):
        v = (self.headers.get("Overwrite") or "T").strip().upper()
        if v not in ("T", "F"):
            raise dav.BadRequest("The HTTP Overwrite header should be either T or F")
        return v == "T"

    def move_copy(self, parts, is_move):
        st = self.state
        store = st.store
        self.read_body()
        _base, dparts = self.parse_destination([self.files_base(), LEGACY_ROOT])
        overwrite = self.overwrite_flag()
        depth = (self.headers.get("Depth") or "infinity").strip().lower()
        with store.lock:
            src = store.lookup(parts)
            if src is None:
                raise self.not_found(parts)
            if not parts:
                raise dav.Forbidden("The home folder cannot be %s" % ("moved" if is_move else "copied"))
            self.check_preconditions(src)
            if dparts == parts:
                raise dav.Forbidden("Source and destination uri are identical.")
            if not dparts:
                raise dav.Forbidden("The destination is the home folder")
            if src.isdir and dparts[:len(parts)] == parts:
                raise dav.Conflict("Cannot %s a node into a subnode of itself" % ("move" if is_move else "copy"))
            dparent = store.lookup(dparts[:-1])
            if dparent is None or not dparent.isdir:
                raise dav.Conflict("The destination node is not found")
            dname = dparts[-1]
            target = dparent.children.get(dname)
            if target is not None and not overwrite:
                raise dav.PreconditionFailed("The destination node already exists, and the overwrite "
                                             "header is set to false", "Overwrite")
            if not st.generic:
                prob = dav.nc_name_problem(dname)
                if prob:
                    raise dav.InvalidPath(prob)
                for seg in dparts[:-1]:
                    if dav.nc_name_problem(seg):
                        raise dav.InvalidPath("Invalid target path")
                self.check_path_length(dparts)
            else:
                self.check_new_name(dname)
            if target is not None and parts[:len(dparts)] == dparts:
                raise dav.Conflict("The destination is an ancestor of the source")
            if not is_move:
                need = src.size - (target.size if target is not None else 0)
                if not store.quota_allows(need):
                    raise self.quota_error(dparts, src.size)
            if target is not None:
                store.delete(target, permanent=False)
            if is_move:
                node = store.move(src, dparent, dname)
            else:
                node = store.copy(src, dparent, dname, depth_infinity=(depth != "0"))
            hdrs = self.nc_headers(node)
        self.send_full(204 if target is not None else 201, hdrs + [("Content-Type", "text/html; charset=UTF-8")], b"")

    # ---- PROPFIND --------------------------------------------------------------
    def depth(self, default="1"):
        d = (self.headers.get("Depth") or default).strip().lower()
        if d not in ("0", "1", "infinity"):
            d = default
        return d

    def minimal(self):
        prefer = (self.headers.get("Prefer") or "").lower()
        brief = (self.headers.get("Brief") or "").strip().lower()
        return "return=minimal" in prefer or brief == "t", bool(prefer or brief)

    def collect(self, node, href, depth):
        entries = [(node, href)]
        if node.isdir and depth != "0":
            self._collect_children(node, href, depth == "infinity", entries)
        return entries

    def _collect_children(self, node, href, recurse, entries):
        q = dav.quote_seg
        for child in sorted(node.children.values(), key=_name_key):
            if child.isdir:
                h = href + q(child.name) + "/"
                entries.append((child, h))
                if recurse:
                    self._collect_children(child, h, True, entries)
            else:
                entries.append((child, href + q(child.name)))

    def href_for(self, base, parts, isdir):
        h = base + "/" + "/".join(dav.quote_seg(p) for p in parts)
        if isdir and not h.endswith("/"):
            h += "/"
        return h

    def propfind(self, parts, base, kind, root=None, share=None):
        st = self.state
        store = st.store
        depth = self.depth()
        if depth == "infinity" and st.generic:
            self.read_body()
            raise DavError(403, "Sabre\\DAV\\Exception\\Forbidden", "PROPFIND requests with a Depth of "
                           "\"infinity\" are not allowed for this resource.", "<d:propfind-finite-depth/>")
        body = self.read_body()
        mode, props = parse_propfind(body)
        minimal, vary = self.minimal()
        with store.lock:
            node = store.lookup(parts, root)
            if node is None:
                raise self.not_found(parts)
            ctx = PropCtx(self, kind, share=share)
            entries = self.collect(node, self.href_for(base, parts, node.isdir), depth)
            xml = render_entries(ctx, entries, mode, props, minimal)
        self.send_xml(207, xml, [("Vary", "Brief,Prefer")] if vary else [])

    # ---- PROPPATCH -------------------------------------------------------------
    def proppatch(self, parts, base):
        st = self.state
        store = st.store
        body = self.read_body()
        root = parse_xml(body) if body.strip() else None
        if root is None or root.tag != D("propertyupdate"):
            raise dav.BadRequest("The root element of a PROPPATCH request must be {DAV:}propertyupdate")
        ops = []
        for action in root:
            if action.tag not in (D("set"), D("remove")):
                continue
            for prop in action.findall(D("prop")):
                for p in prop:
                    if isinstance(p.tag, str):
                        ops.append((action.tag == D("set"), p.tag, text_of(p).strip()))
        with store.lock:
            node = store.lookup(parts)
            if node is None:
                raise self.not_found(parts)
            self.check_preconditions(node)
            results = []   # (clark, status, apply-callable)
            for is_set, clark, value in ops:
                results.append((clark,) + self._proppatch_one(node, is_set, clark, value))
            failed = any(r[1] != 200 for r in results)
            if failed:
                results = [(c, s if s != 200 else 424, None) for c, s, _a in results]
            else:
                for _c, _s, apply in results:
                    if apply:
                        apply()
                store.update_meta(node)
            href = self.href_for(base, parts, node.isdir)
        # Like Sabre (Nextcloud 32, seen on a real server): with `Prefer: return=minimal` a
        # PROPPATCH whose every property was set answers 204 with no body (RFC 8144 §2.1).
        minimal, _vary = self.minimal()
        if minimal and not failed:
            self.send_full(204, [("Vary", "Brief,Prefer")])
            return
        groups = {}
        for clark, status, _a in results:
            groups.setdefault(status, []).append(clark)
        pm = dav.PrefixMap()
        found = [(c, "") for c in groups.pop(200, [])]
        other = [("HTTP/1.1 %d %s" % (s, http.HTTPStatus(s).phrase), names) for s, names in groups.items()]
        xml = dav.multistatus([dav.render_response(href, found, [], pm, other)], pm)
        self.send_xml(207, xml)

    def _proppatch_one(self, node, is_set, clark, value):
        st = self.state
        store = st.store
        if not st.generic:
            if clark == D("lastmodified"):
                if not is_set:
                    return 403, None
                t, err = sanitize_mtime(value)
                if err:
                    raise DavError(500, "InvalidArgumentException", err)
                return 200, lambda: store.set_mtime(node, t)
            if clark == D("getetag"):
                if not is_set:
                    return 403, None
                v = value.strip().strip('"')
                return 200, lambda: setattr(node, "etag", v)
            if clark == D("creationdate") or clark == NC("creation_time"):
                if not is_set:
                    return 403, None
                t = None
                if value.strip().isdigit():
                    t = int(value.strip())
                else:
                    t = dav.parse_http_date(value)
                    if t is None:
                        try:
                            t = int(time.mktime(time.strptime(value.strip()[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone)
                        except ValueError:
                            t = None
                if t is None:
                    return 400, None
                return 200, lambda: setattr(node, "ctime", t)
            if clark == OC("favorite"):
                v = 1 if (is_set and value.strip() in ("1", "true")) else 0
                return 200, lambda: setattr(node, "fav", v)
            if clark in dav.PROTECTED:
                return 403, None
        else:
            if clark in dav.PROTECTED and clark.startswith("{DAV:}"):
                return 403, None

        def apply():
            if is_set:
                if node.props is None:
                    node.props = {}
                node.props[clark] = value
            elif node.props and clark in node.props:
                del node.props[clark]
                if not node.props:
                    node.props = None
        return 200, apply

    # ---- PATCH (checksum recalculation) ---------------------------------------
    def patch(self, parts):
        store = self.state.store
        self.read_body()
        algo = (self.headers.get("X-Recalculate-Hash") or "").strip().lower()
        if algo not in ("md5", "sha1", "sha256"):
            raise dav.NotImplemented_("There was no plugin in the system that was willing to handle this PATCH method.")
        with store.lock:
            node = store.lookup(parts)
            if node is None:
                raise self.not_found(parts)
            if node.isdir:
                raise dav.BadRequest("Checksums can only be recalculated for files")
            path = store.disk_path(node)
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for d in iter(lambda: f.read(BLOCK), b""):
                h.update(d)
        value = "%s:%s" % (algo.upper(), h.hexdigest())
        with store.lock:
            node.checksum = value
            store.update_meta(node)
        self.send_full(204, [("OC-Checksum", value)], b"")

    # ---- SEARCH ----------------------------------------------------------------
    def search(self):
        st = self.state
        store = st.store
        body = self.read_body()
        root = parse_xml(body)
        if root.tag != D("searchrequest"):
            raise dav.BadRequest("The root element of a SEARCH request must be {DAV:}searchrequest")
        bs = root.find(D("basicsearch"))
        if bs is None:
            raise dav.BadRequest("Only {DAV:}basicsearch is supported")
        sel = bs.find(D("select"))
        props = []
        mode = "prop"
        if sel is not None:
            pe = sel.find(D("prop"))
            if pe is not None:
                props = [c.tag for c in pe if isinstance(c.tag, str)]
            elif sel.find(D("allprop")) is not None:
                mode = "allprop"
        scope_el = bs.find("%s/%s/%s" % (D("from"), D("scope"), D("href")))
        if scope_el is None:
            raise dav.BadRequest("Missing search scope")
        scope = urllib.parse.unquote(text_of(scope_el).strip())
        scope = unicodedata.normalize("NFC", urllib.parse.urlsplit(scope).path or scope)
        if scope.startswith(DAV_ROOT):
            scope = scope[len(DAV_ROOT):]
        sparts = [s for s in scope.split("/") if s]
        if len(sparts) < 2 or sparts[0] != "files" or sparts[1] != st.user:
            raise dav.BadRequest("Invalid search scope")
        where = bs.find(D("where"))
        self._op_count = 0
        pred = self.compile_where(where[0]) if where is not None and len(where) else (lambda n: True)
        orders = []
        ob = bs.find(D("orderby"))
        if ob is not None:
            for o in ob.findall(D("order")):
                pe = o.find(D("prop"))
                if pe is None or not len(pe):
                    continue
                key = self.search_value_fn(pe[0].tag)
                orders.append((key, o.find(D("descending")) is not None))
        limit = None
        offset = 0
        lim = bs.find(D("limit"))
        if lim is not None:
            nr = lim.find(D("nresults"))
            if nr is not None and text_of(nr).strip().isdigit():
                limit = int(text_of(nr).strip())
            fr = lim.find("{%s}firstresult" % dav.NS_SEARCHDAV)
            if fr is not None and text_of(fr).strip().isdigit():
                offset = int(text_of(fr).strip())
        base = self.files_base()
        with store.lock:
            scope_node = store.lookup(sparts[2:])
            if scope_node is None or not scope_node.isdir:
                raise dav.BadRequest("Invalid search scope, not a folder")
            prefix = self.href_for(base, sparts[2:], True)
            hits = []
            self._search_walk(scope_node, prefix, pred, hits)
            hits.sort(key=lambda e: e[1])
            for key, desc in reversed(orders):
                hits.sort(key=lambda e: key(e[0]), reverse=desc)
            if offset:
                hits = hits[offset:]
            if limit is not None:
                hits = hits[:limit]
            ctx = PropCtx(self, "files", search=True)
            xml = render_entries(ctx, hits, mode, props, self.minimal()[0])
        self.send_xml(207, xml)

    def _search_walk(self, node, href, pred, out):
        q = dav.quote_seg
        for child in node.children.values():
            h = href + q(child.name) + ("/" if child.isdir else "")
            if pred(child):
                out.append((child, h))
            if child.isdir:
                self._search_walk(child, h, pred, out)

    def search_value_fn(self, clark):
        st = self.state
        table = {
            D("displayname"): lambda n: n.name,
            D("getcontenttype"): lambda n: "httpd/unix-directory" if n.isdir else dav.guess_mime(n.name),
            D("getlastmodified"): lambda n: n.mtime,
            OC("size"): lambda n: n.size,
            OC("favorite"): lambda n: n.fav,
            OC("fileid"): lambda n: n.fileid,
            NC("creation_time"): lambda n: n.ctime,
            NC("upload_time"): lambda n: n.utime,
            OC("owner-id"): lambda n: st.user,
        }
        f = table.get(clark)
        if f is None:
            raise dav.BadRequest("Unsupported property for search or order: %s" % clark)
        return f

    def compile_where(self, el):
        self._op_count += 1
        if self._op_count > 100:
            raise DavError(500, "InvalidArgumentException", "Search query has too many operators")
        op = el.tag
        if op == D("and"):
            subs = [self.compile_where(c) for c in el]
            return lambda n: all(s(n) for s in subs)
        if op == D("or"):
            subs = [self.compile_where(c) for c in el]
            return lambda n: any(s(n) for s in subs)
        if op == D("not"):
            sub = self.compile_where(el[0])
            return lambda n: not sub(n)
        if op == D("is-collection"):
            return lambda n: n.isdir
        if op in (D("eq"), D("gt"), D("gte"), D("lt"), D("lte"), D("like")):
            pe = el.find(D("prop"))
            lit = el.find(D("literal"))
            if pe is None or not len(pe) or lit is None:
                raise dav.BadRequest("Invalid search operator")
            clark = pe[0].tag
            fn = self.search_value_fn(clark)
            raw = text_of(lit)
            if op == D("like"):
                rx = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in raw)
                creg = re.compile("^" + rx + "$", re.IGNORECASE | re.DOTALL)
                return lambda n: bool(creg.match(str(fn(n))))
            if clark in (D("displayname"), D("getcontenttype"), OC("owner-id")):
                val = raw
            elif clark == D("getlastmodified"):
                val = int(raw) if raw.strip().isdigit() else dav.parse_http_date(raw)
                if val is None:
                    try:
                        val = int(time.mktime(time.strptime(raw.strip()[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone)
                    except ValueError:
                        raise dav.BadRequest("Invalid date literal")
            else:
                try:
                    val = int(raw.strip())
                except ValueError:
                    raise dav.BadRequest("Invalid integer literal")
            cmp = {D("eq"): lambda a: a == val, D("gt"): lambda a: a > val, D("gte"): lambda a: a >= val,
                   D("lt"): lambda a: a < val, D("lte"): lambda a: a <= val}[op]
            return lambda n: cmp(fn(n))
        raise dav.BadRequest("Unsupported search operator %s" % op)

    # ---- trash bin ---------------------------------------------------------------
    def trashbin(self, segs):
        st = self.state
        store = st.store
        if not segs or segs[0] != st.user:
            raise dav.NotFound("File with name %s could not be located" % (segs[0] if segs else ""))
        base = "%s/trashbin/%s" % (DAV_ROOT, segs[0])
        m = self.command
        if len(segs) == 1:
            if m == "PROPFIND":
                depth = self.depth()
                body = self.read_body()
                mode, props = parse_propfind(body)
                pm = dav.PrefixMap()
                resp = []
                for name, href in (([("", base + "/")]) + ([("trash", base + "/trash/"), ("restore", base + "/restore/")]
                                                           if depth != "0" else [])):
                    found = [(D("resourcetype"), "<d:collection/>")]
                    if name:
                        found.append((D("displayname"), name))
                    resp.append(dav.render_response(href, found, [], pm))
                return self.send_xml(207, dav.multistatus(resp, pm))
            if m == "OPTIONS":
                return self.options(True)
            raise dav.MethodNotAllowed("Method %s not allowed here" % m)
        coll = segs[1]
        rest = segs[2:]
        if coll == "restore":
            if m == "PROPFIND":
                self.read_body()
                pm = dav.PrefixMap()
                if rest:
                    raise dav.NotFound("File with name %s could not be located" % rest[0])
                body = dav.multistatus([dav.render_response(base + "/restore/", [(D("resourcetype"), "<d:collection/>")], [], pm)], pm)
                return self.send_xml(207, body)
            raise dav.MethodNotAllowed("Method %s not allowed on the restore folder" % m)
        if coll != "trash":
            raise dav.NotFound("File with name %s could not be located" % coll)
        tbase = base + "/trash"
        if m == "PROPFIND":
            depth = self.depth()
            body = self.read_body()
            mode, props = parse_propfind(body)
            minimal, vary = self.minimal()
            with store.lock:
                node = store.lookup(rest, store.trash_root)
                if node is None:
                    raise self.not_found(rest)
                ctx = PropCtx(self, "trash")
                entries = self.collect(node, self.href_for(tbase, rest, node.isdir) if rest else tbase + "/", depth)
                xml = render_entries(ctx, entries, mode, props, minimal)
            return self.send_xml(207, xml, [("Vary", "Brief,Prefer")] if vary else [])
        if m in ("GET", "HEAD"):
            if not rest:
                raise dav.NotImplemented_("GET is not supported on the trash bin root")
            return self.do_get_file(rest, store.trash_root, head=(m == "HEAD"), kind="trash")
        if m == "DELETE":
            self.read_body()
            with store.lock:
                if not rest:
                    store.trash_empty()
                else:
                    node = store.lookup(rest, store.trash_root)
                    if node is None:
                        raise self.not_found(rest)
                    store.trash_delete(node)
            return self.send_full(204, [], b"")
        if m == "MOVE":
            self.read_body()
            if not rest:
                raise dav.Forbidden("The trash bin itself cannot be moved")
            _b, dparts = self.parse_destination(["%s/trashbin/%s/restore" % (DAV_ROOT, st.user)])
            with store.lock:
                node = store.lookup(rest, store.trash_root)
                if node is None:
                    raise self.not_found(rest)
                free = store.free()
                if free is not None and free - node.size < 65536:
                    raise dav.InsufficientStorage("Not enough free space to restore the item")
                restored = store.restore(node)
                hdrs = [("OC-FileId", fmt_fileid(restored.fileid, store.instanceid))]
            return self.send_full(201, hdrs, b"")
        if m == "OPTIONS":
            return self.options(True)
        raise dav.MethodNotAllowed("Method %s is not allowed in the trash bin" % m)

    # ---- chunked upload v2 -----------------------------------------------------
    def upload_dir(self, uid):
        return os.path.join(self.state.store.uploads_dir, uid)

    def upload_entries(self, udir):
        out = []
        for e in os.scandir(udir):
            if e.name == UPLOAD_META or e.name.startswith("."):
                continue
            try:
                stt = e.stat()
            except OSError:
                continue
            out.append(UploadEntry(e.name, e.is_dir(), stt.st_size, stt.st_mtime))
        return out

    def uploads(self, segs):
        st = self.state
        store = st.store
        if not segs or segs[0] != st.user:
            raise dav.NotFound("File with name %s could not be located" % (segs[0] if segs else ""))
        base = "%s/uploads/%s" % (DAV_ROOT, segs[0])
        m = self.command
        rest = segs[1:]
        if not rest:
            if m == "PROPFIND":
                return self.upload_propfind(store.uploads_dir, base + "/", None)
            if m == "MKCOL":
                raise dav.MethodNotAllowed("The resource you tried to create already exists")
            if m == "OPTIONS":
                return self.options(True)
            raise dav.MethodNotAllowed("Method %s not allowed on the uploads home" % m)
        uid = rest[0]
        udir = self.upload_dir(uid)
        if len(rest) == 1:
            if m == "MKCOL":
                if self.has_body and self.read_body().strip():
                    raise dav.UnsupportedMediaType("The request body for the MKCOL request must have an xml "
                                                   "Content-Type")
                if os.path.exists(udir):
                    raise dav.MethodNotAllowed("The resource you tried to create already exists")
                if uid.startswith(".") or len(uid.encode()) > 200 or "\x00" in uid:
                    raise dav.BadRequest("Invalid upload id")
                os.mkdir(udir)
                meta = {"destination": self.headers.get("Destination"),
                        "total": self.headers.get("OC-Total-Length"), "created": int(time.time())}
                with open(os.path.join(udir, UPLOAD_META), "w") as f:
                    json.dump(meta, f)
                return self.send_full(201, [("Content-Type", "text/html; charset=UTF-8")], b"")
            if not os.path.isdir(udir):
                raise dav.NotFound("File with name %s could not be located" % uid)
            if m == "PROPFIND":
                return self.upload_propfind(udir, "%s/%s/" % (base, dav.quote_seg(uid)), uid)
            if m == "DELETE":
                self.read_body()
                shutil.rmtree(udir, ignore_errors=True)
                return self.send_full(204, [], b"")
            if m == "OPTIONS":
                return self.options(True)
            if m == "PUT":
                raise dav.Conflict("PUT is not allowed on non-files.")
            raise dav.MethodNotAllowed("Method %s not allowed on an upload folder" % m)
        if len(rest) > 2:
            raise dav.Forbidden("Only files can be created in an upload folder")
        name = rest[1]
        if m == "MOVE" and name == ".file":
            return self.assemble(uid, udir)
        if not os.path.isdir(udir):
            raise dav.NotFound("Upload folder %s could not be located" % uid)
        cpath = os.path.join(udir, name)
        if m == "PUT":
            return self.put_chunk(udir, name, cpath)
        if m == "MKCOL":
            raise dav.Forbidden("Cannot create folders in an upload folder")
        if not os.path.isfile(cpath) or name == UPLOAD_META:
            raise dav.NotFound("File with name %s could not be located" % name)
        if m == "PROPFIND":
            return self.upload_propfind(cpath, "%s/%s/%s" % (base, dav.quote_seg(uid), dav.quote_seg(name)), uid,
                                        single=True)
        if m == "DELETE":
            self.read_body()
            os.unlink(cpath)
            return self.send_full(204, [], b"")
        if m in ("GET", "HEAD"):
            raise dav.MethodNotAllowed("GET is not allowed on chunks")
        raise dav.MethodNotAllowed("Method %s not allowed on a chunk" % m)

    def upload_propfind(self, path, href, uid, single=False):
        depth = self.depth()
        body = self.read_body()
        mode, props = parse_propfind(body)
        minimal, vary = self.minimal()
        stt = os.stat(path)
        me = UploadEntry(os.path.basename(path.rstrip("/")), not single, 0 if not single else stt.st_size, stt.st_mtime)
        entries = [(me, href)]
        if not single and depth != "0":
            kids = self.upload_entries(path)
            if uid is not None:
                def sort_key(e):
                    return (int(e.name), e.name) if e.name.isdigit() else (1 << 30, e.name)
                kids.sort(key=sort_key)
            else:
                kids.sort(key=lambda e: e.name)
            for k in kids:
                entries.append((k, href + dav.quote_seg(k.name) + ("/" if k.isdir else "")))
            if uid is not None:
                me.size = sum(k.size for k in kids)
        ctx = PropCtx(self, "uploads")
        xml = render_entries(ctx, entries, mode, props, minimal)
        self.send_xml(207, xml, [("Vary", "Brief,Prefer")] if vary else [])

    def put_chunk(self, udir, name, cpath):
        st = self.state
        store = st.store
        if not name.isdigit() or not (1 <= int(name) <= 10000):
            raise dav.BadRequest("Invalid chunk name, must be numeric between 1 and 10000")
        total = self.headers.get("OC-Total-Length")
        if total and total.strip().isdigit() and not store.quota_allows(int(total.strip())):
            raise dav.InsufficientStorage("Insufficient space in %s, %s required, %s available"
                                          % (self.headers.get("Destination") or "upload", total.strip(), store.free()))
        existed = os.path.exists(cpath)
        tmp = store.tmp_path()
        count, _d = self.receive_to(tmp)
        if not os.path.isdir(udir):
            os.unlink(tmp)
            raise dav.NotFound("Upload folder could not be located")
        os.replace(tmp, cpath)
        stt = os.stat(cpath)
        etag = '"%x%x"' % (int(stt.st_mtime * 1000), stt.st_size)
        self.send_full(204 if existed else 201, [("ETag", etag), ("OC-ETag", etag),
                                                 ("Content-Type", "text/html; charset=UTF-8")], b"")

    def assemble(self, uid, udir):
        st = self.state
        store = st.store
        self.read_body()
        if not os.path.isdir(udir):
            raise dav.NotFound("File with name %s could not be located" % uid)
        _b, dparts = self.parse_destination([self.files_base(), LEGACY_ROOT])
        if not dparts:
            raise dav.BadRequest("Destination is a directory")
        overwrite = self.overwrite_flag()
        name = dparts[-1]
        with store.lock:
            parent = store.lookup(dparts[:-1])
            if parent is None or not parent.isdir:
                raise dav.Conflict("The destination node is not found")
            existing = parent.children.get(name)
            if existing is not None and existing.isdir:
                raise dav.BadRequest("Destination %s is a directory" % "/".join(dparts))
            if existing is None:
                self.check_new_name(name)
                self.check_path_length(dparts)
            if existing is not None and not overwrite:
                raise dav.PreconditionFailed("The destination node already exists, and the overwrite header "
                                             "is set to false", "Overwrite")
            # Like Nextcloud 32 (seen on a real server): If-Match / If-None-Match on this MOVE are
            # checked against the request URL, the upload's `.file`, which exists and has no
            # ETag: `If-None-Match: *` and any `If-Match` but `*` fail with 412.
            self.check_upload_file_preconditions()
        chunks = [e for e in self.upload_entries(udir) if not e.isdir]
        chunks.sort(key=lambda e: (int(e.name), e.name) if e.name.isdigit() else (1 << 30, e.name))
        total = sum(c.size for c in chunks)
        want = self.headers.get("OC-Total-Length")
        if want and want.strip().isdigit() and int(want.strip()) != total:
            raise dav.BadRequest("Chunks on server do not sum up to %d but to %d bytes" % (int(want.strip()), total))
        with store.lock:
            existing = parent.children.get(name)
            if not store.quota_allows(total - (existing.size if existing is not None else 0)):
                raise self.quota_error(dparts, total)
        tmp = store.tmp_path()
        want_h = self.wanted_hashes()
        hashers = {a: hashlib.new(a) for a in want_h if a != "adler32"}
        adler = 1 if "adler32" in want_h else None
        try:
            with open(tmp, "wb") as out:
                for c in chunks:
                    with open(os.path.join(udir, c.name), "rb") as f:
                        if not hashers and adler is None:
                            shutil.copyfileobj(f, out, BLOCK)
                            continue
                        for d in iter(lambda: f.read(BLOCK), b""):
                            out.write(d)
                            for h in hashers.values():
                                h.update(d)
                            if adler is not None:
                                adler = zlib.adler32(d, adler)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        digests = {a: h.hexdigest() for a, h in hashers.items()}
        if adler is not None:
            digests["adler32"] = "%08x" % adler
        try:
            self.verify_checksum(digests)
        except DavError:
            os.unlink(tmp)
            raise
        try:
            self.finish_write(dparts, parent, name, tmp, total, digests, chunked_move=True)
        finally:
            if self.status is not None and self.status < 300 or (self.status == 500):
                shutil.rmtree(udir, ignore_errors=True)

    # ---- bulk upload -------------------------------------------------------------
    def bulk(self):
        """POST /remote.php/dav/bulk (multipart/related, one part per file)."""
        st = self.state
        store = st.store
        m = re.match(r'\s*multipart/related\s*;(?:.*;)?\s*boundary\s*=\s*"?([^";]+)"?',
                     self.headers.get("Content-Type") or "", re.I)
        if not m:
            raise dav.BadRequest("Content-Type must be multipart/related")
        delim = b"--" + m.group(1).strip().encode()
        reader = BodyReader(self.iter_body())
        results = {}

        # Nextcloud 32.0.1 (BulkUploadPlugin): a part it cannot parse, or whose hash does not
        # match, stops the request with 400 and a body listing only the files stored before it.
        def fail(msg):
            # PHP has the whole body before the plugin runs: read it all, then answer.
            for _ in reader.rest():
                pass
            self.send_json(400, results)

        try:
            line = reader.readline()
            while line in (b"\r\n", b"\n"):
                line = reader.readline()
            if line.rstrip(b"\r\n") != delim:
                return fail("Boundary not found at the start of the body")
            while True:
                hdrs = {}
                while True:
                    hl = reader.readline()
                    if not hl:
                        return fail("Unexpected end of body in part headers")
                    if hl in (b"\r\n", b"\n"):
                        break
                    k, _, v = hl.decode("utf-8", "replace").partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                cl = hdrs.get("content-length", "")
                if not cl.isdigit():
                    raise DavError(411, "Sabre\\DAV\\Exception\\LengthRequired", "The Content-Length header is required")
                length = int(cl)
                if not hdrs.get("x-file-md5") and not hdrs.get("oc-checksum"):
                    return fail("The hash headers must not be null.")
                # OC-Checksum ("algo:hex", NC 32+) wins over X-File-MD5, as on the server.
                algo, want = "md5", (hdrs.get("x-file-md5") or "").strip().lower()
                if hdrs.get("oc-checksum"):
                    algo, _, want = hdrs["oc-checksum"].strip().partition(":")
                    algo, want = algo.lower(), want.strip().lower()
                if algo not in hashlib.algorithms_available:
                    return fail("Unknown hash algorithm %s" % algo)
                tmp = store.tmp_path()
                digest = hashlib.new(algo)
                with open(tmp, "wb") as out:
                    got = reader.copy_to(out, length, digest)
                if got != length:
                    os.unlink(tmp)
                    return fail("Unexpected end of body in part payload")
                path = hdrs.get("x-file-path", "")
                injected = st.faults.take("BULK-PART", path, path)
                if digest.hexdigest() != want or (injected and injected.action == "md5"):
                    os.unlink(tmp)
                    return fail("Computed %s hash is incorrect (%s)." % (algo, digest.hexdigest()))
                reader.readline()
                if injected:
                    os.unlink(tmp)
                    results[path] = {"error": True, "message": injected.message or "injected failure"}
                else:
                    results[path] = self._bulk_one(path, hdrs, tmp, length)
                    if not results[path]["error"]:
                        self.bulk_stored = (self.bulk_stored or []) + [path]
                nxt = reader.readline().rstrip(b"\r\n")
                if nxt == delim + b"--":
                    break
                if nxt != delim:
                    return fail("Boundary not found after a part")
            for _ in reader.rest():
                pass
        except ShortBody:
            raise ClientGone()
        self.send_json(200, results)

    def _bulk_one(self, path, hdrs, tmp, length):
        st = self.state
        store = st.store

        def err(msg):
            if os.path.exists(tmp):
                os.unlink(tmp)
            return {"error": True, "message": msg}

        parts = [unicodedata.normalize("NFC", p) for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return err("Invalid X-File-Path")
        mt = hdrs.get("x-file-mtime") or hdrs.get("x-oc-mtime")
        mtime = None
        if mt:
            mtime, merr = sanitize_mtime(mt)
            if merr:
                return err(merr)
        checksum = (hdrs.get("oc-checksum") or "").strip() or None
        with store.lock:
            parent = store.lookup(parts[:-1])
            if parent is None or not parent.isdir:
                return err("Parent folder of %s does not exist" % path)
            existing = parent.children.get(parts[-1])
            if existing is not None and existing.isdir:
                return err("%s is a folder" % path)
            if existing is None:
                prob = dav.nc_name_problem(parts[-1])
                if prob:
                    return err(prob)
            if not store.quota_allows(length - (existing.size if existing else 0)):
                return err("Insufficient space")
            node, _created = store.commit_file(parent, parts[-1], tmp, length, mtime=mtime, checksum=checksum)
            return {"error": False, "etag": node.etag,
                    "fileid": fmt_fileid(node.fileid, store.instanceid), "permissions": "RGDNVW"}

    # ---- public shares ---------------------------------------------------------
    def public_dav(self, rest):
        st = self.state
        store = st.store
        segs = self.split(rest)
        if not segs:
            raise dav.NotFound("Share token missing")
        token = segs[0]
        parts = segs[1:]
        share, node = store.share_node(token)
        if share is None or node is None:
            raise dav.NotFound("Invalid share token")
        base = "%s/%s" % (PUBLIC_ROOT, dav.quote_seg(token))
        m = self.command
        if m in ("GET", "HEAD"):
            return self.do_get_file(parts, node, head=(m == "HEAD"), kind="public")
        if m == "PROPFIND":
            return self.propfind(parts, base, "public", root=node, share=share)
        if m == "OPTIONS":
            return self.options(True)
        raise dav.Forbidden("This is a read-only link share; %s is not allowed" % m)

    # ---- status.php / OCS ------------------------------------------------------
    def status_php(self):
        st = self.state
        if st.generic:
            return self.send_full(404, [("Content-Type", "text/html")], b"<h1>Not Found</h1>\n")
        self.read_body()
        body = {"installed": True, "maintenance": st.maintenance, "needsDbUpgrade": False,
                "version": "32.0.1.2", "versionstring": "32.0.1", "edition": "",
                "productname": "Nextcloud", "extendedSupport": False}
        self.send_json(200, body, [("Access-Control-Allow-Origin", "*")])

    def ocs_format(self):
        fmt = (self.query.get("format") or [""])[0].lower()
        if fmt in ("json", "xml"):
            return fmt
        if "application/json" in (self.headers.get("Accept") or ""):
            return "json"
        return "xml"

    def ocs_reply(self, version, http_status, data, status="ok", message="OK", statuscode=None, headers=()):
        if statuscode is None:
            statuscode = (100 if version == 1 else 200) if status == "ok" else http_status
        if version == 1 and status == "ok":
            http_status = 200
        if version == 1 and status != "ok" and http_status not in (401, 412, 503):
            http_status = 200
        meta = {"status": status, "statuscode": statuscode, "message": message,
                "totalitems": "", "itemsperpage": ""}
        if self.ocs_format() == "json":
            body = json.dumps({"ocs": {"meta": meta, "data": data}}).encode("utf-8")
            ctype = "application/json; charset=utf-8"
        else:
            body = ('<?xml version="1.0"?>\n<ocs>' + to_xml("meta", meta) + to_xml("data", data)
                    + "</ocs>\n").encode("utf-8")
            ctype = "text/xml; charset=UTF-8"
        self.send_full(http_status, [("Content-Type", ctype)] + list(headers), body)

    def ocs(self, version, rest):
        st = self.state
        store = st.store
        if st.maintenance:
            self.read_body()
            return self.ocs_reply(version, 503, [], "failure", "Service unavailable", 503,
                                  [("X-Nextcloud-Maintenance-Mode", "1")])
        try:
            user = self.auth_user(required=False)
        except DavError:
            self.read_body()
            return self.ocs_reply(version, 401, [], "failure", "Current user is not logged in", 997,
                                  [("WWW-Authenticate", 'Basic realm="Nextcloud", charset="UTF-8"')])
        path = rest.rstrip("/")
        public = path == "/cloud/capabilities"
        if user is None and not public:
            self.read_body()
            return self.ocs_reply(version, 401, [], "failure", "Current user is not logged in", 997,
                                  [("WWW-Authenticate", 'Basic realm="Nextcloud", charset="UTF-8"')])
        if (self.headers.get("OCS-APIRequest") or "").strip().lower() != "true":
            self.read_body()
            return self.send_json(412, {"message": "CSRF check failed"})
        m = self.command
        if path == "/cloud/capabilities" and m == "GET":
            self.read_body()
            return self.ocs_reply(version, 200, {"version": VERSION, "capabilities": capabilities()})
        if path == "/cloud/user" and m == "GET":
            self.read_body()
            used = store.used()
            if store.quota is not None:
                total = store.quota
                free = max(0, total - used)
                q = total
            else:
                free = shutil.disk_usage(store.files_root).free
                total = used + free
                q = -3
            rel = round(used * 100.0 / total, 2) if total else 0
            data = {"id": st.user, "display-name": st.display_name, "displayname": st.display_name,
                    "email": None, "enabled": True,
                    "quota": {"free": free, "used": used, "total": total, "relative": rel, "quota": q}}
            return self.ocs_reply(version, 200, data)
        sp = "/apps/files_sharing/api/v1/shares"
        if path == sp and m == "POST":
            return self.ocs_create_share(version)
        if path == sp and m == "GET":
            self.read_body()
            want = (self.query.get("path") or [None])[0]
            out = []
            with store.lock:
                # Nextcloud looks the path up first: a missing one is a 404, not an empty list.
                if want is not None and store.lookup([unicodedata.normalize("NFC", p) for p in want.split("/") if p]) is None:
                    return self.ocs_reply(version, 404, [], "failure", "Wrong path, file/folder does not exist", 404)
                for s in list(store.shares.values()):
                    n = store.find_by_id(s["fileid"])
                    if n is None or not store.is_attached(n):
                        continue
                    if want is not None and "/" + store.rel_path(n) != "/" + want.strip("/"):
                        continue
                    out.append(self.share_json(s, n))
            return self.ocs_reply(version, 200, out)
        m2 = re.fullmatch(re.escape(sp) + r"/(\d+)", path)
        if m2:
            self.read_body()
            sid = int(m2.group(1))
            if m == "DELETE":
                if store.delete_share(sid):
                    return self.ocs_reply(version, 200, [])
                return self.ocs_reply(version, 404, [], "failure", "Wrong share ID, share does not exist", 404)
            if m == "GET":
                with store.lock:
                    for s in store.shares.values():
                        if s["id"] == sid:
                            n = store.find_by_id(s["fileid"])
                            if n is not None:
                                return self.ocs_reply(version, 200, [self.share_json(s, n)])
                return self.ocs_reply(version, 404, [], "failure", "Wrong share ID, share does not exist", 404)
        self.read_body()
        return self.ocs_reply(version, 404, [], "failure", "Invalid query, please check the syntax. "
                              "API specifications are here: http://www.freedesktop.org/wiki/Specifications/open-collaboration-services.", 998)

    def share_json(self, s, n):
        st = self.state
        rel = "/" + self.state.store.rel_path(n)
        return {"id": str(s["id"]), "share_type": 3, "uid_owner": st.user, "displayname_owner": st.display_name,
                "permissions": s["permissions"], "stime": s["stime"], "parent": None, "expiration": None,
                "token": s["token"], "uid_file_owner": st.user, "note": "", "label": "",
                "displayname_file_owner": st.display_name, "path": rel,
                "item_type": "folder" if n.isdir else "file",
                "mimetype": "httpd/unix-directory" if n.isdir else dav.guess_mime(n.name),
                "has_preview": False, "storage_id": "home::" + st.user, "storage": 1,
                "item_source": n.fileid, "file_source": n.fileid, "file_parent": n.parent.fileid if n.parent else None,
                "file_target": "/" + n.name, "share_with": None, "share_with_displayname": None,
                "password": None, "send_password_by_talk": False,
                "url": "%s://127.0.0.1:%d/index.php/s/%s" % (st.scheme, st.port, s["token"]),
                "mail_send": 0, "hide_download": 0, "attributes": None}

    def ocs_create_share(self, version):
        st = self.state
        store = st.store
        body = self.read_body()
        ctype = (self.headers.get("Content-Type") or "").lower()
        params = {k: v[0] for k, v in self.query.items()}
        if "json" in ctype and body.strip():
            try:
                params.update({k: str(v) for k, v in json.loads(body).items()})
            except (ValueError, AttributeError):
                return self.ocs_reply(version, 400, [], "failure", "Invalid JSON body", 400)
        elif body:
            params.update({k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                                      keep_blank_values=True).items()})
        path = params.get("path")
        if not path:
            return self.ocs_reply(version, 404, [], "failure", "Please specify a file or folder path", 404)
        if str(params.get("shareType", "")) != "3":
            return self.ocs_reply(version, 400, [], "failure", "ncserver only supports public link shares "
                                  "(shareType=3)", 400)
        parts = [unicodedata.normalize("NFC", p) for p in path.split("/") if p]
        with store.lock:
            node = store.lookup(parts)
            if node is None:
                return self.ocs_reply(version, 404, [], "failure", "Wrong path, file/folder does not exist", 404)
            perms = 1
            if params.get("publicUpload", "").lower() == "true":
                if not node.isdir:
                    return self.ocs_reply(version, 404, [], "failure", "Public upload is only possible for "
                                          "publicly shared folders", 404)
                perms = 15
            if params.get("permissions", "").strip().isdigit():
                perms = int(params["permissions"].strip())
            token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(15))
            share = store.add_share(token, node, perms)
            data = self.share_json(share, node)
        return self.ocs_reply(version, 200, data)

    # ---- control API -----------------------------------------------------------
    def control(self, what):
        st = self.state
        store = st.store
        body = self.read_body()
        try:
            req = json.loads(body) if body.strip() else {}
        except ValueError:
            return self.send_json(400, {"error": "invalid JSON"})
        m = self.command
        try:
            if what == "fault" and m == "POST":
                f = st.faults.add(req)
                return self.send_json(200, {"ok": True, "fault": f.describe()})
            if what == "faults" and m == "GET":
                with st.faults.lock:
                    return self.send_json(200, {"faults": [f.describe() for f in st.faults.items]})
            if what == "clear" and m == "POST":
                st.faults.clear()
                return self.send_json(200, {"ok": True})
            if what == "maintenance" and m == "POST":
                st.maintenance = bool(req.get("on", True))
                return self.send_json(200, {"ok": True, "maintenance": st.maintenance})
            if what == "stats" and m == "GET":
                with st.stats_lock:
                    return self.send_json(200, {"requests": st.requests, "by_method": dict(st.by_method)})
            if what == "stats/reset" and m == "POST":
                with st.stats_lock:
                    st.requests = 0
                    st.by_method = {}
                return self.send_json(200, {"ok": True})
            if what == "quota" and m == "POST":
                b = req.get("bytes")
                store.quota = int(b) if b is not None else None
                return self.send_json(200, {"ok": True, "quota": store.quota})
            if what == "rescan" and m == "POST":
                store.rescan()
                return self.send_json(200, {"ok": True})
            if what == "touch" and m == "POST":
                return self.control_touch(req)
            if what == "info" and m == "GET":
                rel = req.get("path") or (self.query.get("path") or [""])[0]
                with store.lock:
                    n = store.lookup([p for p in unicodedata.normalize("NFC", rel).split("/") if p])
                    if n is None:
                        return self.send_json(404, {"error": "not found"})
                    return self.send_json(200, {"fileid": n.fileid, "etag": n.etag, "mtime": n.mtime,
                                                "size": n.size, "isdir": n.isdir, "checksum": n.checksum,
                                                "disk_path": store.disk_path(n)})
        except (ValueError, TypeError, KeyError) as e:
            return self.send_json(400, {"error": str(e)})
        return self.send_json(404, {"error": "unknown control endpoint %s %s" % (m, what)})

    def control_touch(self, req):
        store = self.state.store
        rel = req.get("path")
        if not rel:
            return self.send_json(400, {"error": "path required"})
        parts = [p for p in unicodedata.normalize("NFC", rel).split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return self.send_json(400, {"error": "bad path"})
        content = base64.b64decode(req.get("content_b64", ""))
        mtime = req.get("mtime")
        tmp = store.tmp_path()
        with open(tmp, "wb") as f:
            f.write(content)
        with store.lock:
            parent = store.root
            for seg in parts[:-1]:
                nxt = parent.children.get(seg)
                if nxt is None:
                    nxt = store.mkdir(parent, seg)
                if not nxt.isdir:
                    os.unlink(tmp)
                    return self.send_json(409, {"error": "parent is a file"})
                parent = nxt
            ex = parent.children.get(parts[-1])
            if ex is not None and ex.isdir:
                os.unlink(tmp)
                return self.send_json(409, {"error": "target is a folder"})
            node, created = store.commit_file(parent, parts[-1], tmp, len(content),
                                              mtime=int(mtime) if mtime is not None else None)
            return self.send_json(200, {"ok": True, "created": created, "fileid": node.fileid,
                                        "etag": node.etag})


def capabilities():
    return {
        "core": {"pollinterval": 60, "webdav-root": "remote.php/webdav", "reference-api": False},
        "bruteforce": {"delay": 0, "allow-listed": False},
        "dav": {"chunking": "1.0", "bulkupload": "1.0"},
        "files": {
            "bigfilechunking": True,
            "blacklisted_files": list(dav.FORBIDDEN_FILENAMES),
            "forbidden_filenames": list(dav.FORBIDDEN_FILENAMES),
            "forbidden_filename_basenames": list(dav.FORBIDDEN_BASENAMES),
            "forbidden_filename_characters": list(dav.FORBIDDEN_CHARACTERS),
            "forbidden_filename_extensions": list(dav.FORBIDDEN_EXTENSIONS),
            "chunked_upload": {"max_size": 104857600, "max_parallel_count": 5},
            "undelete": True,
            "windows_compatible_filenames": False,
        },
        "files_sharing": {"api_enabled": True, "public": {"enabled": True, "upload": False,
                                                            "password": {"enforced": False}}},
    }


def to_xml(tag, value):
    if isinstance(value, dict):
        return "<%s>%s</%s>" % (tag, "".join(to_xml(k, v) for k, v in value.items()), tag)
    if isinstance(value, list):
        if tag == "data" and value and all(isinstance(v, dict) for v in value):
            return "<data>%s</data>" % "".join(to_xml("element", v) for v in value)
        return "<%s>%s</%s>" % (tag, "".join(to_xml("element", v) for v in value), tag)
    if value is None:
        return "<%s/>" % tag
    if isinstance(value, bool):
        return "<%s>%s</%s>" % (tag, "1" if value else "", tag)
    return "<%s>%s</%s>" % (tag, dav.xml_escape(str(value)), tag)
