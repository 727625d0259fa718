#!/usr/bin/env python3
"""Standalone self-test for ncserver (standard library only).

Starts ncserver.py on temporary data directories and exercises every endpoint.
Prints "N passed, M failed" on the last line; exit status 1 on any failure.

    python3 scripts/testserver/selftest.py [-v] [-k substring]
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
import urllib.parse
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "ncserver.py")
USER = "alice"
PW = "s3cret-app-pw"
DAV = "{DAV:}"
OCNS = "{http://owncloud.org/ns}"
NCNS = "{http://nextcloud.org/ns}"
SABRE = "{http://sabredav.org/ns}"
TOTAL_DEADLINE = 600      # seconds for the whole run

PASSED = 0
FAILED = 0
VERBOSE = False
FAILURES = []


def check(cond, what):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        if VERBOSE:
            print("  ok   %s" % what)
    else:
        FAILED += 1
        FAILURES.append(what)
        print("  FAIL %s" % what)
    return cond


# ------------------------------------------------------------------ server
class Server:
    def __init__(self, data, *extra, password=PW):
        self.data = data
        self.extra = list(extra)
        self.password = password
        self.proc = None
        self.port = None
        self.log = os.path.join(data, "..", os.path.basename(data) + "-requests.log")
        self.log = os.path.abspath(self.log)

    def start(self):
        portfile = os.path.abspath(self.data) + ".port"
        if os.path.exists(portfile):
            os.unlink(portfile)
        cmd = [sys.executable, SERVER, "--data", self.data, "--port", "0", "--port-file", portfile,
               "--user", USER, "--log", self.log] + self.extra
        env = dict(os.environ, NCSERVER_PASSWORD=self.password)
        self.stderr = open(os.path.abspath(self.data) + ".stderr", "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(portfile):
                with open(portfile) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    break
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early: %s" % self.proc.returncode)
            time.sleep(0.02)
        else:
            raise RuntimeError("server did not start")
        line = self.proc.stdout.readline().decode().strip()
        self.banner = line
        return self

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        rc = self.proc.returncode
        self.proc.stdout.close()
        self.stderr.close()
        self.proc = None
        return rc

    def client(self, **kw):
        return Client(self.port, self.password, **kw)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def h(self, name):
        return self.headers.get(name.lower())

    def xml(self):
        return ET.fromstring(self.body)

    def exception(self):
        try:
            return self.xml().findtext(SABRE + "exception")
        except ET.ParseError:
            return None

    def message(self):
        try:
            return self.xml().findtext(SABRE + "message")
        except ET.ParseError:
            return None


class Client:
    def __init__(self, port, password=PW, user=USER, timeout=30):
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
        self.conn = None

    def base(self):
        return "/remote.php/dav/files/%s" % self.user

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def auth(self, user=None, pw=None):
        raw = "%s:%s" % (user or self.user, pw if pw is not None else self.password)
        return "Basic " + base64.b64encode(raw.encode()).decode()

    def req(self, method, path, body=None, headers=None, auth=True, timeout=None):
        hdrs = {"User-Agent": "ncserver-selftest/1.0"}
        if auth:
            hdrs["Authorization"] = self.auth()
        if headers:
            hdrs.update(headers)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                headers_out = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self.close()
                return Resp(r.status, headers_out, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 1 or not (body is None or isinstance(body, bytes)):
                    raise
        raise RuntimeError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # convenience
    def f(self, rel):
        return self.base() + "/" + "/".join(urllib.parse.quote(p, safe="") for p in rel.split("/") if p)

    def put(self, rel, data, headers=None):
        return self.req("PUT", self.f(rel), data, headers)

    def get(self, rel, headers=None):
        return self.req("GET", self.f(rel), None, headers)

    def mkcol(self, rel):
        return self.req("MKCOL", self.f(rel))

    def delete(self, rel, headers=None):
        return self.req("DELETE", self.f(rel), None, headers)

    def move(self, src, dst, overwrite=None, method="MOVE", extra=None):
        h = {"Destination": self.url(self.f(dst))}
        if overwrite is not None:
            h["Overwrite"] = overwrite
        if extra:
            h.update(extra)
        return self.req(method, self.f(src), None, h)

    def propfind(self, rel_or_path, props=None, depth="1", headers=None, raw_path=False):
        path = rel_or_path if raw_path else self.f(rel_or_path)
        if path == self.base():
            path += "/"
        body = propfind_body(props) if props is not None else None
        h = {"Depth": depth, "Content-Type": "application/xml"}
        if headers:
            h.update(headers)
        return self.req("PROPFIND", path, body, h)

    def props(self, rel, props, depth="0"):
        r = self.propfind(rel, props, depth)
        if r.status != 207:
            return None
        return parse_multistatus(r.body)


DEFAULT_PROPS = ["d:getetag", "d:getlastmodified", "d:getcontentlength", "d:resourcetype",
                 "oc:fileid", "oc:permissions", "oc:size"]


def propfind_body(props):
    inner = "".join("<%s/>" % p for p in props)
    return ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" '
            'xmlns:nc="http://nextcloud.org/ns"><d:prop>%s</d:prop></d:propfind>' % inner).encode()


def parse_multistatus(body):
    """-> list of dicts: {href, props: {clark: element}, missing: [clark]}"""
    root = ET.fromstring(body)
    out = []
    for r in root.findall(DAV + "response"):
        ent = {"href": r.findtext(DAV + "href"), "props": {}, "missing": [], "status": {}}
        for ps in r.findall(DAV + "propstat"):
            st = ps.findtext(DAV + "status") or ""
            for p in ps.find(DAV + "prop"):
                ent["status"][p.tag] = st
                if " 200 " in st:
                    ent["props"][p.tag] = p
                else:
                    ent["missing"].append(p.tag)
        out.append(ent)
    return out


def ptext(ent, clark):
    e = ent["props"].get(clark)
    return None if e is None else (e.text or "")


def by_name(entries):
    out = {}
    for e in entries:
        name = urllib.parse.unquote(e["href"].rstrip("/").rsplit("/", 1)[-1])
        out[name] = e
    return out


# --------------------------------------------------------------- raw socket
def raw_request(port, data, read_timeout=10, shutdown_write=False, read_until_close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            chunks.append(d)
            if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)
    finally:
        s.close()


# ======================================================================= tests
def t_status_and_auth(srv, c):
    r = c.req("GET", "/status.php", auth=False)
    check(r.status == 200, "status.php 200")
    j = json.loads(r.body)
    check(j.get("installed") is True and j.get("maintenance") is False and j.get("productname") == "Nextcloud"
          and j.get("versionstring") == "32.0.1" and j.get("version") == "32.0.1.2", "status.php fields")
    r = c.req("PROPFIND", c.base() + "/", auth=False, headers={"Depth": "0"})
    check(r.status == 401, "no auth -> 401")
    check('Basic realm="Nextcloud"' in (r.h("WWW-Authenticate") or ""), "401 has WWW-Authenticate Basic realm=Nextcloud")
    check(r.exception() == "Sabre\\DAV\\Exception\\NotAuthenticated", "401 Sabre body")
    r = c.req("PROPFIND", c.base() + "/", headers={"Depth": "0", "Authorization": c.auth(pw="wrong")})
    check(r.status == 401 and r.message() == "Username or password was incorrect", "wrong password -> 401")
    r = c.req("OPTIONS", c.base() + "/")
    check(r.status == 200 and "1, 3" in (r.h("DAV") or "") and "PROPFIND" in (r.h("Allow") or ""), "OPTIONS DAV/Allow")
    r = c.req("LOCK", c.f("nothing"))
    check(r.status == 501, "LOCK -> 501 NotImplemented")


def t_propfind_shapes(srv, c):
    c.mkcol("shape")
    c.mkcol("shape/sub dir")
    c.put("shape/a file.txt", b"hello")
    r = c.propfind("shape", DEFAULT_PROPS + ["d:getcontenttype", "oc:checksums", "oc:doesnotexist"], "1")
    check(r.status == 207, "PROPFIND 207")
    check(r.h("Content-Type", ) == "application/xml; charset=utf-8", "PROPFIND content type")
    ents = parse_multistatus(r.body)
    check(ents[0]["href"] == c.base() + "/shape/", "first response is the requested folder, with trailing slash")
    names = by_name(ents)
    check(set(names) == {"shape", "sub dir", "a file.txt"}, "Depth 1 lists children")
    check(any(e["href"].endswith("/shape/sub%20dir/") for e in ents), "hrefs percent-encoded (space -> %20)")
    folder = names["shape"]
    check(DAV + "getcontentlength" in folder["missing"], "getcontentlength on folder in 404 propstat")
    check(folder["props"][DAV + "resourcetype"].find(DAV + "collection") is not None, "folder resourcetype collection")
    f = names["a file.txt"]
    check(ptext(f, DAV + "getcontentlength") == "5", "file getcontentlength")
    check(ptext(f, DAV + "getcontenttype") == "text/plain", "file getcontenttype")
    check(ptext(f, OCNS + "permissions") == "RGDNVW", "file permissions RGDNVW")
    check(ptext(folder, OCNS + "permissions") == "RGDNVCK", "folder permissions RGDNVCK")
    check(OCNS + "checksums" in f["missing"], "oc:checksums 404 without OC-Checksum")
    check(OCNS + "doesnotexist" in f["missing"], "unknown prop in 404 propstat")
    et = ptext(f, DAV + "getetag")
    check(et.startswith('"') and et.endswith('"') and len(et) > 2, "getetag quoted")
    check(ptext(f, DAV + "getlastmodified").endswith("GMT"), "getlastmodified RFC1123")
    # minimal
    r = c.propfind("shape", DEFAULT_PROPS + ["oc:doesnotexist"], "1", headers={"Prefer": "return=minimal"})
    check(b"404 Not Found" not in r.body and r.status == 207, "Prefer: return=minimal drops 404 propstat")
    check("Brief" in (r.h("Vary") or ""), "Vary: Brief,Prefer")
    r = c.propfind("shape", DEFAULT_PROPS + ["oc:doesnotexist"], "1", headers={"Brief": "t"})
    check(b"404 Not Found" not in r.body, "Brief: t drops 404 propstat")
    # gzip
    r = c.propfind("shape", DEFAULT_PROPS, "1", headers={"Accept-Encoding": "gzip"})
    check(r.h("Content-Encoding") == "gzip", "gzip Content-Encoding")
    try:
        ents2 = parse_multistatus(gzip.decompress(r.body))
        check(len(ents2) == 3, "gzip body decodes to the same multistatus")
    except Exception as e:
        check(False, "gzip body decodes (%s)" % e)
    # allprop / empty body
    r = c.req("PROPFIND", c.f("shape") + "/", None, {"Depth": "0"})
    e = parse_multistatus(r.body)[0]
    check(DAV + "quota-used-bytes" in e["props"] and OCNS + "fileid" not in e["props"] and not e["missing"],
          "empty body -> Sabre default set, no 404 propstat")
    r = c.req("PROPFIND", c.f("shape") + "/", b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>',
              {"Depth": "0"})
    e = parse_multistatus(r.body)[0]
    check(DAV + "getetag" in e["props"] and DAV + "getcontenttype" not in e["props"], "allprop default set")
    # missing Depth -> 1 ; infinity honored
    r = c.req("PROPFIND", c.f("shape") + "/", propfind_body(["d:getetag"]))
    check(len(parse_multistatus(r.body)) == 3, "missing Depth -> 1")
    c.put("shape/sub dir/deep.txt", b"x")
    r = c.propfind("shape", ["d:getetag"], "infinity")
    check(len(parse_multistatus(r.body)) == 4, "Depth infinity recursive")
    r = c.propfind("shape/nope", ["d:getetag"], "0")
    check(r.status == 404 and r.exception() == "Sabre\\DAV\\Exception\\NotFound", "PROPFIND missing -> 404 NotFound")
    # namespaces by URI with odd prefixes
    body = (b'<?xml version="1.0"?><X:propfind xmlns:X="DAV:" xmlns:Y="http://owncloud.org/ns">'
            b'<X:prop><Y:fileid/><Z:custom xmlns:Z="urn:x-test"/></X:prop></X:propfind>')
    r = c.req("PROPFIND", c.f("shape") + "/", body, {"Depth": "0"})
    e = parse_multistatus(r.body)[0]
    check(OCNS + "fileid" in e["props"] and "{urn:x-test}custom" in e["missing"], "namespace-aware prop parsing")
    # oc:id format
    e = c.props("shape", ["oc:id", "oc:fileid"])[0]
    oid = ptext(e, OCNS + "id")
    check(oid.startswith("%08d" % int(ptext(e, OCNS + "fileid"))) and oid[8:10] == "oc", "oc:id = %08d + instance id")
    r = c.get("shape")
    check(r.status == 200 and b"WebDAV interface" in r.body, "GET on folder -> 200 dummy page (DummyGetResponsePlugin)")


def t_put_get_etags(srv, c):
    for d in ("p", "p/a", "p/a/b", "p/a/b/c", "p/side"):
        check(c.mkcol(d).status == 201, "MKCOL %s" % d)

    def etags():
        out = {}
        for d in ("", "p", "p/a", "p/a/b", "p/a/b/c", "p/side"):
            e = c.props(d, ["d:getetag", "oc:size", "d:getlastmodified"])[0]
            out[d] = (ptext(e, DAV + "getetag"), int(ptext(e, OCNS + "size")), ptext(e, DAV + "getlastmodified"))
        return out

    before = etags()
    r = c.put("p/a/b/c/file.bin", b"0123456789", {"X-OC-Mtime": "1500000000"})
    check(r.status == 201, "PUT new -> 201")
    check(r.h("X-OC-MTime") == "accepted", "X-OC-MTime: accepted")
    check(r.h("ETag") and r.h("ETag") == r.h("OC-ETag"), "PUT ETag == OC-ETag")
    fid_hdr = r.h("OC-FileId")
    check(fid_hdr is not None and len(fid_hdr) > 8, "PUT OC-FileId header")
    after = etags()
    for d in ("", "p", "p/a", "p/a/b", "p/a/b/c"):
        check(after[d][0] != before[d][0], "etag propagated to ancestor '%s'" % d)
    check(after["p/side"][0] == before["p/side"][0], "sibling folder etag unchanged")
    for d in ("p", "p/a", "p/a/b", "p/a/b/c"):
        check(after[d][1] == before[d][1] + 10, "oc:size recursive for '%s'" % d)
    e = c.props("p/a/b/c/file.bin", ["d:getlastmodified", "oc:fileid", "d:getetag"])[0]
    check(ptext(e, DAV + "getlastmodified") == "Fri, 14 Jul 2017 02:40:00 GMT", "X-OC-Mtime applied")
    fid = ptext(e, OCNS + "fileid")
    check(fid_hdr.startswith("%08d" % int(fid)), "OC-FileId matches oc:fileid")
    check(r.h("ETag") == ptext(e, DAV + "getetag"), "PUT ETag equals PROPFIND getetag")
    check(os.path.exists(os.path.join(srv.data, "files", USER, "p/a/b/c/file.bin")), "file is a real file on disk")
    check(int(os.stat(os.path.join(srv.data, "files", USER, "p/a/b/c/file.bin")).st_mtime) == 1500000000,
          "disk mtime = X-OC-Mtime")
    # folder mtime propagation: ancestor mtime is the change time, not the file's old mtime
    e = c.props("p/a", ["d:getlastmodified"])[0]
    t = email_to_ts(ptext(e, DAV + "getlastmodified"))
    check(abs(t - time.time()) < 30, "ancestor folder mtime = change time")
    # overwrite keeps fileid, changes etag
    old_etag = r.h("ETag")
    r = c.put("p/a/b/c/file.bin", b"abc")
    check(r.status == 204, "PUT overwrite -> 204")
    e = c.props("p/a/b/c/file.bin", ["oc:fileid", "d:getetag", "d:getcontentlength"])[0]
    check(ptext(e, OCNS + "fileid") == fid, "overwrite keeps fileid")
    check(ptext(e, DAV + "getetag") != old_etag, "overwrite changes etag")
    check(c.get("p/a/b/c/file.bin").body == b"abc", "GET returns new content")
    check(int(c.props("p", ["oc:size"])[0]["props"][OCNS + "size"].text) == 3, "oc:size after shrink")
    # conditional
    cur = r.h("ETag")
    r = c.put("p/a/b/c/file.bin", b"zzz", {"If-Match": '"bogus"'})
    check(r.status == 412 and r.exception() == "Sabre\\DAV\\Exception\\PreconditionFailed", "If-Match mismatch -> 412")
    check(b"<s:header>If-Match</s:header>" in r.body, "412 body has s:header If-Match")
    r = c.put("p/a/b/c/file.bin", b"zzz", {"If-Match": cur})
    check(r.status == 204, "If-Match match -> 204")
    r = c.put("p/a/b/c/file.bin", b"qqq", {"If-None-Match": "*"})
    check(r.status == 412, "If-None-Match * on existing -> 412")
    check(c.get("p/a/b/c/file.bin").body == b"zzz", "412 left content untouched")
    r = c.put("p/a/b/c/new.bin", b"n", {"If-None-Match": "*"})
    check(r.status == 201, "If-None-Match * on new -> 201")
    r = c.put("p/missing/x.txt", b"x")
    check(r.status == 409 and r.exception() == "Sabre\\DAV\\Exception\\Conflict", "PUT parent missing -> 409")
    r = c.put("p/a", b"x")
    check(r.status == 409, "PUT onto folder -> 409")
    r = c.put("p/a/b/c/file.bin/child", b"x")
    check(r.status == 409, "PUT below a file -> 409")
    r = c.put("p/a/b/c/bad.txt", b"x", {"X-OC-Mtime": "0x10"})
    check(r.status == 500 and "X-OC-MTime" in (r.message() or ""), "invalid X-OC-Mtime -> 500 (after storing, like NC)")
    # OC-Checksum stored and shown, cleared by a PUT without it
    data = b"checksummed"
    sha1 = hashlib.sha1(data).hexdigest()
    r = c.put("p/cs.txt", data, {"OC-Checksum": "SHA1:" + sha1})
    e = c.props("p/cs.txt", ["oc:checksums"])[0]
    cs = e["props"].get(OCNS + "checksums")
    check(cs is not None and cs.findtext(OCNS + "checksum") == "SHA1:" + sha1, "oc:checksums stored")
    check(c.get("p/cs.txt").h("OC-Checksum") == "SHA1:" + sha1, "GET returns OC-Checksum header")
    c.put("p/cs.txt", b"other")
    check(OCNS + "checksums" in c.props("p/cs.txt", ["oc:checksums"])[0]["missing"], "PUT without OC-Checksum clears it")
    # X-Hash
    r = c.put("p/hash.txt", b"abc", {"X-Hash": "all"})
    check(r.h("X-Hash-SHA256") == hashlib.sha256(b"abc").hexdigest() and r.h("X-Hash-MD5") == hashlib.md5(b"abc").hexdigest(),
          "X-Hash: all -> X-Hash-* headers")
    # HEAD
    r = c.req("HEAD", c.f("p/hash.txt"))
    check(r.status == 200 and r.h("Content-Length") == "3" and r.body == b"" and r.h("OC-FileId"), "HEAD headers, no body")
    r = c.get("p/hash.txt", {"If-None-Match": c.props("p/hash.txt", ["d:getetag"])[0]["props"][DAV + "getetag"].text})
    check(r.status == 304, "GET If-None-Match etag -> 304")
    # legacy endpoint
    r = c.req("GET", "/remote.php/webdav/p/hash.txt")
    check(r.status == 200 and r.body == b"abc", "legacy /remote.php/webdav/ GET")


def email_to_ts(s):
    import email.utils
    return int(email.utils.parsedate_to_datetime(s).timestamp())


def t_mkcol(srv, c):
    check(c.mkcol("mk").status == 201, "MKCOL -> 201")
    r = c.mkcol("mk")
    check(r.status == 405 and r.exception() == "Sabre\\DAV\\Exception\\MethodNotAllowed", "MKCOL existing -> 405")
    r = c.mkcol("mk/no/such")
    check(r.status == 409, "MKCOL parent missing -> 409")
    r = c.req("MKCOL", c.f("mk/withbody"), b"hello", {"Content-Type": "text/plain"})
    check(r.status == 415, "MKCOL with body -> 415")
    r = c.put("mk/file", b"x")
    check(c.mkcol("mk/file/sub").status == 409, "MKCOL below a file -> 409")


def t_move_copy(srv, c):
    c.mkcol("mv")
    c.mkcol("mv/src")
    c.mkcol("mv/src/inner")
    c.put("mv/src/inner/f.txt", b"move me")
    c.mkcol("mv/dst")
    fid_dir = ptext(c.props("mv/src", ["oc:fileid"])[0], OCNS + "fileid")
    fid_file = ptext(c.props("mv/src/inner/f.txt", ["oc:fileid"])[0], OCNS + "fileid")
    e_dst = ptext(c.props("mv/dst", ["d:getetag"])[0], DAV + "getetag")
    e_mv = ptext(c.props("mv", ["d:getetag"])[0], DAV + "getetag")
    r = c.move("mv/src", "mv/dst/moved")
    check(r.status == 201, "MOVE folder -> 201")
    check(c.props("mv/src", ["oc:fileid"]) is None, "MOVE source gone")
    check(ptext(c.props("mv/dst/moved", ["oc:fileid"])[0], OCNS + "fileid") == fid_dir, "MOVE keeps folder fileid")
    check(ptext(c.props("mv/dst/moved/inner/f.txt", ["oc:fileid"])[0], OCNS + "fileid") == fid_file,
          "MOVE keeps fileids in the moved subtree")
    check(ptext(c.props("mv/dst", ["d:getetag"])[0], DAV + "getetag") != e_dst, "MOVE changes destination parent etag")
    check(ptext(c.props("mv", ["d:getetag"])[0], DAV + "getetag") != e_mv, "MOVE changes common ancestor etag")
    check(int(ptext(c.props("mv/dst", ["oc:size"])[0], OCNS + "size")) == 7, "MOVE moves oc:size")
    # COPY
    r = c.move("mv/dst/moved", "mv/copy", method="COPY")
    check(r.status == 201, "COPY -> 201")
    fid_copy = ptext(c.props("mv/copy/inner/f.txt", ["oc:fileid"])[0], OCNS + "fileid")
    check(fid_copy and fid_copy != fid_file, "COPY assigns new fileids")
    check(c.get("mv/copy/inner/f.txt").body == b"move me", "COPY content")
    check(int(ptext(c.props("mv", ["oc:size"])[0], OCNS + "size")) == 14, "COPY adds to oc:size")
    # Overwrite
    c.put("mv/one.txt", b"one")
    c.put("mv/two.txt", b"two")
    r = c.move("mv/one.txt", "mv/two.txt", overwrite="F")
    check(r.status == 412 and b"Overwrite" in r.body, "Overwrite: F on existing -> 412")
    fid_one = ptext(c.props("mv/one.txt", ["oc:fileid"])[0], OCNS + "fileid")
    r = c.move("mv/one.txt", "mv/two.txt")
    check(r.status == 204, "MOVE onto existing (Overwrite T) -> 204")
    e = c.props("mv/two.txt", ["oc:fileid"])[0]
    check(ptext(e, OCNS + "fileid") == fid_one and c.get("mv/two.txt").body == b"one",
          "rename-over keeps the source fileid and content")
    check(r.h("OC-FileId") and r.h("OC-ETag"), "MOVE answers OC-FileId / OC-ETag")
    r = c.move("mv/two.txt", "mv/nodir/two.txt")
    check(r.status == 409, "MOVE destination parent missing -> 409")
    r = c.move("mv/dst", "mv/dst/moved/inside")
    check(r.status == 409, "MOVE folder into own subtree -> 409")
    r = c.move("mv/ghost", "mv/ghost2")
    check(r.status == 404, "MOVE missing source -> 404")
    r = c.req("MOVE", c.f("mv/two.txt"), None, {"Destination": "http://127.0.0.1:%d/remote.php/dav/files/bob/x" % c.port})
    check(r.status == 403, "MOVE out of base -> 403")
    r = c.req("MOVE", c.f("mv/two.txt"), None, {"Destination": c.f("mv/three.txt")})
    check(r.status == 201, "Destination as absolute path works")
    r = c.req("MOVE", c.f("mv/three.txt"), None, {})
    check(r.status == 400, "MOVE without Destination -> 400")
    r = c.move("mv/three.txt", "mv/three.txt")
    check(r.status == 403, "MOVE onto itself -> 403")


def t_forbidden_names(srv, c):
    c.mkcol("fn")
    for name in ("x.part", "X.PART", "y.filepart", ".htaccess", ".HTACCESS", "a\\b", "ctl\x01char", " ", "n" * 250):
        r = c.put("fn/" + name, b"x")
        check(r.status == 400 and r.exception() == "OCA\\DAV\\Connector\\Sabre\\Exception\\InvalidPath",
              "PUT forbidden name %r -> 400 InvalidPath" % name[:20])
    r = c.put("fn/x.part", b"x")
    root = ET.fromstring(r.body)
    reason = [el for el in root if el.tag.endswith("reason")]
    check(reason and "forbidden file type" in (reason[0].text or ""), "InvalidPath carries o:reason")
    r = c.mkcol("fn/dir.part")
    check(r.status == 400, "MKCOL forbidden name -> 400")
    c.put("fn/ok.txt", b"x")
    r = c.move("fn/ok.txt", "fn/ok.filepart")
    check(r.status == 400, "MOVE to forbidden name -> 400")
    r = c.move("fn/ok.txt", "fn/.htaccess", method="COPY")
    check(r.status == 400, "COPY to forbidden name -> 400")
    check(c.put("fn/" + "\u00e9" * 124 + "n", b"x").status == 201, "249-byte name accepted")
    check(c.put("fn/" + "\u00e9" * 125, b"x").status == 400, "250-byte (UTF-8) name refused")
    listing = set(by_name(parse_multistatus(c.propfind("fn", ["d:getetag"]).body)))
    check(listing == {"fn", "ok.txt", "\u00e9" * 124 + "n"}, "nothing created by refused requests")
    r = c.req("GET", c.base() + "/fn/%2E%2E/%2E%2E/etc")
    check(r.status in (400, 404), "'..' escape refused")
    r = c.req("GET", c.base() + "/fn/%FF%FE")
    check(r.status == 400, "invalid UTF-8 path -> 400")
    # capabilities lists must match the enforced rules
    r = c.req("GET", "/ocs/v2.php/cloud/capabilities?format=json", headers={"OCS-APIRequest": "true"})
    files = json.loads(r.body)["ocs"]["data"]["capabilities"]["files"]
    check(files["forbidden_filenames"] == [".htaccess"] and files["forbidden_filename_extensions"] == [".part", ".filepart"],
          "capabilities forbidden lists match the enforced rules")


def t_nfc(srv, c):
    nfd = unicodedata.normalize("NFD", "caf\u00e9-\u00fcber.txt")
    nfc = unicodedata.normalize("NFC", nfd)
    check(nfd != nfc, "NFD differs from NFC")
    c.mkcol("uni")
    r = c.req("PUT", c.base() + "/uni/" + urllib.parse.quote(nfd), b"unicode")
    check(r.status == 201, "PUT NFD name -> 201")
    ents = parse_multistatus(c.propfind("uni", ["d:getetag"]).body)
    names = [urllib.parse.unquote(e["href"].rstrip("/").rsplit("/", 1)[-1]) for e in ents[1:]]
    check(names == [nfc], "listing returns the NFC name")
    check(c.req("GET", c.base() + "/uni/" + urllib.parse.quote(nfc)).body == b"unicode", "GET by NFC name")
    check(c.req("GET", c.base() + "/uni/" + urllib.parse.quote(nfd)).status == 200, "GET by NFD name (normalized)")
    check(os.path.exists(os.path.join(srv.data, "files", USER, "uni", nfc)), "stored on disk as NFC")


def t_trash(srv, c):
    c.mkcol("tr")
    c.mkcol("tr/folder")
    c.put("tr/folder/in.txt", b"inside")
    c.put("tr/doc.txt", b"document")
    fid = ptext(c.props("tr/doc.txt", ["oc:fileid"])[0], OCNS + "fileid")
    e_before = ptext(c.props("tr", ["d:getetag"])[0], DAV + "getetag")
    r = c.delete("tr/doc.txt")
    check(r.status == 204, "DELETE -> 204")
    check(c.get("tr/doc.txt").status == 404, "deleted file gone")
    check(ptext(c.props("tr", ["d:getetag"])[0], DAV + "getetag") != e_before, "DELETE changes parent etag")
    check(c.delete("tr/doc.txt").status == 404, "DELETE missing -> 404")
    tpath = "/remote.php/dav/trashbin/%s/trash" % USER
    props = ["nc:trashbin-filename", "nc:trashbin-original-location", "nc:trashbin-deletion-time",
             "d:getcontentlength", "oc:size", "d:resourcetype", "oc:fileid", "d:getetag", "d:getlastmodified"]
    r = c.propfind(tpath + "/", props, "1", raw_path=True)
    check(r.status == 207, "trash PROPFIND 207")
    ents = parse_multistatus(r.body)
    items = [e for e in ents[1:] if ptext(e, NCNS + "trashbin-filename") == "doc.txt"]
    check(len(items) == 1, "trash lists the deleted file")
    it = items[0]
    item_name = urllib.parse.unquote(it["href"].rstrip("/").rsplit("/", 1)[-1])
    check(item_name.startswith("doc.txt.d") and item_name[9:].isdigit(), "trash item name <name>.d<time>")
    check(ptext(it, NCNS + "trashbin-original-location") == "tr/doc.txt", "trashbin-original-location")
    check(abs(int(ptext(it, NCNS + "trashbin-deletion-time")) - time.time()) < 60, "trashbin-deletion-time")
    check(ptext(it, OCNS + "fileid") == fid and ptext(it, DAV + "getcontentlength") == "8", "trash item fileid/size")
    # download from trash
    r = c.req("GET", tpath + "/" + urllib.parse.quote(item_name))
    check(r.status == 200 and r.body == b"document", "GET trash item")
    # a folder in the trash can be browsed
    c.delete("tr/folder")
    ents = parse_multistatus(c.propfind(tpath + "/", props, "1", raw_path=True).body)
    fitem = [e for e in ents[1:] if ptext(e, NCNS + "trashbin-filename") == "folder"][0]
    sub = parse_multistatus(c.propfind(fitem["href"], props, "1", raw_path=True).body)
    check(len(sub) == 2 and ptext(sub[1], NCNS + "trashbin-original-location") == "tr/folder/in.txt",
          "browse into a trashed folder")
    # restore
    dest = "http://127.0.0.1:%d/remote.php/dav/trashbin/%s/restore/%s" % (c.port, USER, urllib.parse.quote(item_name))
    r = c.req("MOVE", tpath + "/" + urllib.parse.quote(item_name), None, {"Destination": dest})
    check(r.status == 201, "restore -> 201")
    e = c.props("tr/doc.txt", ["oc:fileid"])
    check(e is not None and ptext(e[0], OCNS + "fileid") == fid, "restored to original location with same fileid")
    check(c.get("tr/doc.txt").body == b"document", "restored content")
    # name clash on restore
    c.delete("tr/doc.txt")
    c.put("tr/doc.txt", b"newer")
    ents = parse_multistatus(c.propfind(tpath + "/", ["nc:trashbin-filename"], "1", raw_path=True).body)
    it = [e for e in ents[1:] if ptext(e, NCNS + "trashbin-filename") == "doc.txt"][0]
    r = c.req("MOVE", it["href"], None, {"Destination": dest})
    check(r.status == 201, "restore with name clash -> 201")
    check(c.get("tr/doc (restored).txt").body == b"document" and c.get("tr/doc.txt").body == b"newer",
          "clash restored as 'doc (restored).txt'")
    # missing original parent -> restored into the root
    c.mkcol("tr/gone")
    c.put("tr/gone/lost.txt", b"lost")
    c.delete("tr/gone/lost.txt")
    c.delete("tr/gone", {"X-NC-Skip-Trashbin": "true"})
    ents = parse_multistatus(c.propfind(tpath + "/", ["nc:trashbin-filename"], "1", raw_path=True).body)
    it = [e for e in ents[1:] if ptext(e, NCNS + "trashbin-filename") == "lost.txt"][0]
    check(c.req("MOVE", it["href"], None, {"Destination": dest}).status == 201 and c.get("lost.txt").status == 200,
          "restore with missing parent lands in the user root")
    # skip trashbin
    c.put("tr/perm.txt", b"p")
    c.delete("tr/perm.txt", {"X-NC-Skip-Trashbin": "true"})
    ents = parse_multistatus(c.propfind(tpath + "/", ["nc:trashbin-filename"], "1", raw_path=True).body)
    check(not any(ptext(e, NCNS + "trashbin-filename") == "perm.txt" for e in ents), "X-NC-Skip-Trashbin: permanent")
    # delete one item, then empty
    it = [e for e in ents[1:] if ptext(e, NCNS + "trashbin-filename") == "folder"][0]
    check(c.req("DELETE", it["href"]).status == 204, "DELETE trash item -> 204")
    c.put("tr/x1", b"1")
    c.delete("tr/x1")
    check(c.req("DELETE", tpath).status == 204, "DELETE trash (empty) -> 204")
    ents = parse_multistatus(c.propfind(tpath + "/", ["nc:trashbin-filename"], "1", raw_path=True).body)
    check(len(ents) == 1, "trash empty after DELETE trash")
    r = c.req("DELETE", c.base() + "/")
    check(r.status == 403, "DELETE user root -> 403")


def t_chunked_upload(srv, c):
    c.mkcol("up")
    rnd = random.Random(42)
    chunks = [bytes(rnd.getrandbits(8) for _ in range(n)) for n in (300_000, 250_000, 123_457)]
    data = b"".join(chunks)
    uid = "upload-" + str(rnd.randint(0, 1 << 30))
    up = "/remote.php/dav/uploads/%s/%s" % (USER, uid)
    dest = c.url(c.f("up/big.bin"))
    r = c.req("MKCOL", up, None, {"Destination": dest})
    check(r.status == 201, "uploads MKCOL -> 201")
    for i, ch in enumerate(chunks, 1):
        r = c.req("PUT", "%s/%05d" % (up, i), ch, {"Destination": dest, "OC-Total-Length": str(len(data))})
        check(r.status == 201, "chunk %d PUT -> 201" % i)
    r = c.req("PROPFIND", up + "/", propfind_body(["d:getcontentlength", "d:resourcetype"]), {"Depth": "1"})
    ents = parse_multistatus(r.body)
    sizes = {urllib.parse.unquote(e["href"].rsplit("/", 1)[-1]): ptext(e, DAV + "getcontentlength") for e in ents[1:]}
    check(sizes == {"00001": "300000", "00002": "250000", "00003": "123457"}, "upload PROPFIND lists chunks + sizes")
    r = c.req("PUT", "/remote.php/dav/uploads/%s/nope/00001" % USER, b"x", {"Destination": dest})
    check(r.status == 404, "chunk PUT to missing upload -> 404")
    r = c.req("PUT", "%s/abc" % up, b"x")
    check(r.status == 400, "non-numeric chunk name -> 400")
    r = c.req("MOVE", up + "/.file", None, {"Destination": dest, "OC-Total-Length": str(len(data) + 1)})
    check(r.status == 400 and b"do not sum up" in r.body, "final MOVE with wrong OC-Total-Length -> 400")
    r = c.req("MOVE", up + "/.file", None, {"Destination": dest, "OC-Total-Length": str(len(data)),
                                            "X-OC-Mtime": "1600000000"})
    check(r.status == 201, "final MOVE -> 201")
    check(r.h("X-OC-MTime") == "accepted" and r.h("OC-FileId") and r.h("ETag"), "final MOVE headers")
    g = c.get("up/big.bin")
    check(hashlib.sha256(g.body).hexdigest() == hashlib.sha256(data).hexdigest(), "assembled file sha256 matches")
    e = c.props("up/big.bin", ["d:getlastmodified", "oc:fileid"])[0]
    check(ptext(e, DAV + "getlastmodified") == "Sun, 13 Sep 2020 12:26:40 GMT", "final MOVE applied X-OC-Mtime")
    check(c.req("PROPFIND", up + "/", None, {"Depth": "0"}).status == 404, "upload folder removed after assembly")
    # overwrite via chunking keeps fileid
    fid = ptext(e, OCNS + "fileid")
    c.req("MKCOL", up, None, {"Destination": dest})
    c.req("PUT", up + "/1", b"small", {"Destination": dest})
    r = c.req("MOVE", up + "/.file", None, {"Destination": dest})
    check(r.status == 204, "final MOVE over existing -> 204")
    check(ptext(c.props("up/big.bin", ["oc:fileid"])[0], OCNS + "fileid") == fid, "chunked overwrite keeps fileid")
    # abort
    c.req("MKCOL", up + "x", None, {"Destination": dest})
    c.req("PUT", up + "x/1", b"abc", {"Destination": dest})
    check(c.req("DELETE", up + "x").status == 204, "DELETE upload folder -> 204")
    check(c.req("PROPFIND", up + "x/", None, {"Depth": "0"}).status == 404, "aborted upload gone")


def t_bulk(srv, c):
    c.mkcol("bulk")
    bd = "boundary_%d" % random.randint(0, 1 << 30)
    files = [("/bulk/a.txt", b"aaa", True), ("/bulk/b.bin", bytes(range(256)) * 50, True),
             ("/nodir/c.txt", b"c", True)]
    body = b""
    for path, data, md5 in files:
        h = "X-File-Path: %s\r\nContent-Length: %d\r\nX-OC-Mtime: 1600000000\r\n" % (path, len(data))
        if md5 is True:
            h += "X-File-MD5: %s\r\n" % hashlib.md5(data).hexdigest()
        elif md5 == "wrong":
            h += "X-File-MD5: %s\r\n" % ("0" * 32)
        body += ("--%s\r\n%s\r\n" % (bd, h)).encode() + data + b"\r\n"
    body += ("--%s--\r\n" % bd).encode()
    r = c.req("POST", "/remote.php/dav/bulk", body, {"Content-Type": 'multipart/related; boundary="%s"' % bd})
    check(r.status == 200, "bulk upload -> 200")
    j = json.loads(r.body)
    check(j["/bulk/a.txt"]["error"] is False and j["/bulk/a.txt"]["fileid"][:8].isdigit(), "bulk: file ok with fileid")
    check(j["/nodir/c.txt"]["error"] is True, "bulk: missing parent -> error entry")
    # As Nextcloud 32.0.1 answers (probed with curl): a part whose MD5 does not match stops
    # the request with 400, listing only the files stored before it; so does a part without
    # any hash header. OC-Checksum "algo:hex" is checked instead of X-File-MD5 when present.
    def post(parts):
        b = "bd_%d" % random.randint(0, 1 << 30)
        body = b""
        for path, data, extra in parts:
            h = "X-File-Path: %s\r\nContent-Length: %d\r\n" % (path, len(data)) + "".join("%s: %s\r\n" % kv for kv in extra)
            body += ("--%s\r\n%s\r\n" % (b, h)).encode() + data + b"\r\n"
        body += ("--%s--\r\n" % b).encode()
        return c.req("POST", "/remote.php/dav/bulk", body, {"Content-Type": 'multipart/related; boundary="%s"' % b})
    md5 = lambda d: ("X-File-MD5", hashlib.md5(d).hexdigest())
    r = post([("/bulk/d.txt", b"ddd", [md5(b"ddd")]), ("/bulk/bad.txt", b"zzz", [("X-File-MD5", "0" * 32)]),
              ("/bulk/e.txt", b"eee", [md5(b"eee")])])
    jj = json.loads(r.body)
    check(r.status == 400 and list(jj) == ["/bulk/d.txt"] and jj["/bulk/d.txt"]["error"] is False,
          "bulk: md5 mismatch -> 400 listing only the parts before it")
    check(c.get("bulk/e.txt").status == 404 and c.get("bulk/bad.txt").status == 404, "bulk: nothing stored after the bad part")
    r = post([("/bulk/f.txt", b"fff", [])])
    check(r.status == 400 and json.loads(r.body) == {}, "bulk: a part without a hash header -> 400")
    r = post([("/bulk/g.txt", b"ggg", [("OC-Checksum", "SHA1:" + hashlib.sha1(b"ggg").hexdigest())])])
    check(r.status == 200 and json.loads(r.body)["/bulk/g.txt"]["error"] is False, "bulk: OC-Checksum SHA1 accepted")
    r = post([("/bulk/exists.bin", b"new", [md5(b"new")])])
    check(r.status == 200 and c.get("bulk/exists.bin").body == b"new", "bulk: stores a new file")
    r = post([("bulk/exists.bin", b"newer", [md5(b"newer")]), ("/bulk", b"x", [md5(b"x")])])
    jj = json.loads(r.body)
    check(jj["bulk/exists.bin"]["error"] is False and c.get("bulk/exists.bin").body == b"newer",
          "bulk: overwrites without conditions; a path without a leading slash is keyed as sent")
    check(jj["/bulk"]["error"] is True, "bulk: a folder at the name -> error entry")
    ctl = lambda obj: c.req("POST", "/__control/fault", json.dumps(obj).encode(), {"Content-Type": "application/json"}, auth=False)
    ctl({"method": "BULK-PART", "path_contains": "h1.txt", "message": "no space for h1"})
    r = post([("/bulk/h1.txt", b"h1", [md5(b"h1")]), ("/bulk/h2.txt", b"h2", [md5(b"h2")])])
    jj = json.loads(r.body)
    check(r.status == 200 and jj["/bulk/h1.txt"] == {"error": True, "message": "no space for h1"} and jj["/bulk/h2.txt"]["error"] is False
          and c.get("bulk/h1.txt").status == 404, "bulk: an injected part fault is that part's error entry alone")
    ctl({"method": "BULK-PART", "path_contains": "i2.txt", "action": "md5"})
    r = post([("/bulk/i1.txt", b"i1", [md5(b"i1")]), ("/bulk/i2.txt", b"i2", [md5(b"i2")]), ("/bulk/i3.txt", b"i3", [md5(b"i3")])])
    check(r.status == 400 and list(json.loads(r.body)) == ["/bulk/i1.txt"], "bulk: an injected md5 fault stops the request there")
    check(c.get("bulk/b.bin").body == bytes(range(256)) * 50, "bulk: content stored")
    e = c.props("bulk/a.txt", ["d:getlastmodified", "d:getetag"])[0]
    check(ptext(e, DAV + "getlastmodified") == "Sun, 13 Sep 2020 12:26:40 GMT", "bulk: mtime applied")
    check(ptext(e, DAV + "getetag") == '"%s"' % j["/bulk/a.txt"]["etag"], "bulk: etag matches")


def t_ranges(srv, c):
    data = bytes(range(256)) * 4
    c.put("range.bin", data)
    r = c.get("range.bin", {"Range": "bytes=0-9"})
    check(r.status == 206 and r.body == data[:10] and r.h("Content-Range") == "bytes 0-9/1024", "Range a-b -> 206")
    r = c.get("range.bin", {"Range": "bytes=1000-"})
    check(r.status == 206 and r.body == data[1000:], "Range a- -> 206")
    r = c.get("range.bin", {"Range": "bytes=-5"})
    check(r.status == 206 and r.body == data[-5:], "Range -n -> 206")
    r = c.get("range.bin", {"Range": "bytes=5000-"})
    check(r.status == 416 and r.h("Content-Range") == "bytes */1024", "unsatisfiable range -> 416")
    r = c.get("range.bin", {"Range": "bytes=0-2000"})
    check(r.status == 206 and len(r.body) == 1024, "range end clamped to size")
    r = c.get("range.bin")
    check(r.status == 200 and r.body == data and r.h("Accept-Ranges") == "bytes", "full GET 200")


def t_proppatch(srv, c):
    c.put("pp.txt", b"pp")
    e0 = c.props("pp.txt", ["d:getetag"])[0]
    body = (b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x-test"><d:set><d:prop>'
            b'<d:lastmodified>1400000000</d:lastmodified><x:color>blue</x:color></d:prop></d:set></d:propertyupdate>')
    r = c.req("PROPPATCH", c.f("pp.txt"), body)
    check(r.status == 207, "PROPPATCH -> 207")
    ents = parse_multistatus(r.body)
    check(" 200 " in ents[0]["status"].get(DAV + "lastmodified", ""), "PROPPATCH lastmodified -> 200")
    e = c.props("pp.txt", ["d:getlastmodified", "d:getetag"])[0]
    check(ptext(e, DAV + "getlastmodified") == "Tue, 13 May 2014 16:53:20 GMT", "PROPPATCH lastmodified sets mtime")
    check(ptext(e, DAV + "getetag") != ptext(e0, DAV + "getetag"), "mtime change gives a new etag")
    r = c.req("PROPFIND", c.f("pp.txt"), b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:x-test">'
              b'<d:prop><x:color/></d:prop></d:propfind>', {"Depth": "0"})
    e = parse_multistatus(r.body)[0]
    check(ptext(e, "{urn:x-test}color") == "blue", "dead property stored and returned")
    body = (b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop>'
            b'<oc:fileid>5</oc:fileid><oc:favorite>1</oc:favorite></d:prop></d:set></d:propertyupdate>')
    r = c.req("PROPPATCH", c.f("pp.txt"), body)
    ents = parse_multistatus(r.body)
    check(" 403 " in ents[0]["status"].get(OCNS + "fileid", "") and " 424 " in ents[0]["status"].get(OCNS + "favorite", ""),
          "protected prop -> 403, others 424")
    check(ptext(c.props("pp.txt", ["oc:favorite"])[0], OCNS + "favorite") == "0", "failed PROPPATCH applied nothing")
    # Nextcloud 32 (Sabre), seen on a real server: `Prefer: return=minimal` and every property set
    # -> 204 with no body; a refused property still gets the 207 multistatus.
    body = (b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
            b'<d:lastmodified>1500000000</d:lastmodified></d:prop></d:set></d:propertyupdate>')
    r = c.req("PROPPATCH", c.f("pp.txt"), body, {"Prefer": "return=minimal"})
    check(r.status == 204 and r.body == b"", "PROPPATCH all set + return=minimal -> 204, no body")
    body = (b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:set><d:prop>'
            b'<oc:fileid>5</oc:fileid></d:prop></d:set></d:propertyupdate>')
    r = c.req("PROPPATCH", c.f("pp.txt"), body, {"Prefer": "return=minimal"})
    check(r.status == 207, "PROPPATCH refused + return=minimal -> 207")


def t_search(srv, c):
    c.mkcol("srch")
    c.mkcol("srch/deep")
    c.put("srch/Alpha.TXT", b"a")
    c.put("srch/deep/beta.txt", b"bb")
    c.put("srch/deep/gamma.jpg", b"ccc")
    body = ('<?xml version="1.0"?><d:searchrequest xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
            '<d:basicsearch><d:select><d:prop><d:displayname/><oc:fileid/><oc:size/></d:prop></d:select>'
            '<d:from><d:scope><d:href>/files/%s/srch</d:href><d:depth>infinity</d:depth></d:scope></d:from>'
            '<d:where><d:like><d:prop><d:displayname/></d:prop><d:literal>%%.txt</d:literal></d:like></d:where>'
            '<d:orderby/><d:limit><d:nresults>10</d:nresults></d:limit></d:basicsearch></d:searchrequest>' % USER)
    r = c.req("SEARCH", "/remote.php/dav/", body.encode(), {"Content-Type": "text/xml"})
    check(r.status == 207, "SEARCH -> 207")
    ents = parse_multistatus(r.body)
    names = sorted(ptext(e, DAV + "displayname") for e in ents)
    check(names == ["Alpha.TXT", "beta.txt"], "SEARCH like %.txt (case-insensitive, recursive)")
    check(all(e["href"].startswith("/remote.php/dav/files/%s/srch/" % USER) for e in ents), "SEARCH hrefs under files/")
    fid = ptext(c.props("srch/deep/gamma.jpg", ["oc:fileid"])[0], OCNS + "fileid")
    body2 = body.replace('<d:like><d:prop><d:displayname/></d:prop><d:literal>%.txt</d:literal></d:like>',
                         '<d:or><d:eq><d:prop><oc:fileid/></d:prop><d:literal>%s</d:literal></d:eq>'
                         '<d:like><d:prop><d:displayname/></d:prop><d:literal>nomatch%%</d:literal></d:like></d:or>' % fid)
    ents = parse_multistatus(c.req("SEARCH", "/remote.php/dav/", body2.encode(), {"Content-Type": "text/xml"}).body)
    check([ptext(e, DAV + "displayname") for e in ents] == ["gamma.jpg"], "SEARCH eq oc:fileid inside d:or")
    body3 = body.replace("%.txt", "%").replace("<d:nresults>10</d:nresults>", "<d:nresults>2</d:nresults>")
    ents = parse_multistatus(c.req("SEARCH", "/remote.php/dav/", body3.encode(), {"Content-Type": "text/xml"}).body)
    check(len(ents) == 2, "SEARCH d:limit/d:nresults")


def t_ocs(srv, c):
    r = c.req("GET", "/ocs/v2.php/cloud/user?format=json")
    check(r.status == 412, "OCS without OCS-APIRequest -> 412")
    r = c.req("GET", "/ocs/v2.php/cloud/user?format=json", headers={"OCS-APIRequest": "true"}, auth=False)
    check(r.status == 401, "OCS user without auth -> 401")
    r = c.req("GET", "/ocs/v2.php/cloud/user?format=json", headers={"OCS-APIRequest": "true"})
    j = json.loads(r.body)
    check(r.status == 200 and j["ocs"]["meta"]["statuscode"] == 200 and j["ocs"]["data"]["id"] == USER,
          "OCS v2 cloud/user")
    q = j["ocs"]["data"]["quota"]
    check(set(q) >= {"free", "used", "total", "relative", "quota"} and q["quota"] == -3, "OCS quota fields (unlimited -3)")
    r = c.req("GET", "/ocs/v1.php/cloud/user?format=json", headers={"OCS-APIRequest": "true"})
    check(json.loads(r.body)["ocs"]["meta"]["statuscode"] == 100, "OCS v1 statuscode 100")
    r = c.req("GET", "/ocs/v1.php/cloud/user", headers={"OCS-APIRequest": "true"})
    check(r.status == 200 and b"<ocs>" in r.body and b"<id>alice</id>" in r.body, "OCS XML format by default")
    r = c.req("GET", "/ocs/v2.php/cloud/capabilities?format=json", headers={"OCS-APIRequest": "true"})
    d = json.loads(r.body)["ocs"]["data"]
    caps = d["capabilities"]
    check(d["version"]["major"] == 32, "capabilities version.major 32")
    check(caps["dav"]["chunking"] == "1.0" and caps["dav"]["bulkupload"] == "1.0", "capabilities dav")
    check(caps["files"]["bigfilechunking"] is True and caps["files"]["chunked_upload"]["max_size"] == 104857600,
          "capabilities files")
    check(caps["bruteforce"]["delay"] == 0, "capabilities bruteforce")


def t_shares(srv, c):
    c.mkcol("shared")
    c.mkcol("shared/sub")
    c.put("shared/hello.txt", b"public hello")
    c.put("shared/sub/x.txt", b"x")
    r = c.req("POST", "/ocs/v2.php/apps/files_sharing/api/v1/shares?format=json",
              urllib.parse.urlencode({"path": "/shared", "shareType": "3"}).encode(),
              {"OCS-APIRequest": "true", "Content-Type": "application/x-www-form-urlencoded"})
    check(r.status == 200, "create share -> 200")
    data = json.loads(r.body)["ocs"]["data"]
    token = data["token"]
    check(len(token) == 15 and data["share_type"] == 3 and data["url"].endswith("/s/" + token) and data["path"] == "/shared",
          "share data (token, url, path)")
    pub = "/public.php/dav/files/%s" % token
    r = c.req("PROPFIND", pub + "/", propfind_body(["d:getetag", "oc:permissions", "d:getcontentlength"]),
              {"Depth": "1"}, auth=False)
    check(r.status == 207, "public PROPFIND without auth -> 207")
    ents = parse_multistatus(r.body)
    check(ents[0]["href"] == pub + "/" and {urllib.parse.unquote(e["href"][len(pub) + 1:]) for e in ents[1:]} == {"hello.txt", "sub/"},
          "public listing hrefs relative to the share")
    r = c.req("GET", pub + "/hello.txt", auth=False)
    check(r.status == 200 and r.body == b"public hello", "public GET")
    r = c.req("PUT", pub + "/new.txt", b"x", auth=False)
    check(r.status == 403, "public PUT -> 403 (read-only)")
    r = c.req("GET", "/public.php/dav/files/NoSuchToken123/hello.txt", auth=False)
    check(r.status == 404, "unknown token -> 404")
    r = c.req("GET", "/ocs/v2.php/apps/files_sharing/api/v1/shares?format=json&path=/shared",
              headers={"OCS-APIRequest": "true"})
    check(any(s["token"] == token for s in json.loads(r.body)["ocs"]["data"]), "list shares by path")
    # CLI share
    r = c.req("GET", "/public.php/dav/files/clitoken/readme.txt", auth=False)
    check(r.status == 200 and r.body == b"cli share", "--share TOKEN=PATH works")


def t_faults(srv, c):
    ctl = lambda what, obj: c.req("POST", "/__control/" + what, json.dumps(obj).encode(),
                                  {"Content-Type": "application/json"}, auth=False)
    c.put("fault.txt", b"fault test body " * 100)
    r = ctl("fault", {"method": "GET", "path_contains": "fault.txt", "status": 503, "count": 2})
    check(r.status == 200, "control fault accepted")
    r1 = c.get("fault.txt")
    r2 = c.get("fault.txt")
    r3 = c.get("fault.txt")
    check(r1.status == 503 and r1.exception() == "Sabre\\DAV\\Exception\\ServiceUnavailable", "fault 503 #1 (Sabre body)")
    check(r2.status == 503 and r3.status == 200, "fault count consumed, then normal")
    ctl("fault", {"method": "*", "path_contains": "fault.txt", "status": 423, "count": 1})
    r = c.put("fault.txt", b"x")
    check(r.status == 423 and "FileLocked" in (r.exception() or ""), "fault 423 Locked")
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "status": 429, "count": 1})
    check(c.get("fault.txt").status == 429, "fault 429")
    # reset
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "action": "reset", "count": 1})
    c.close()
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    try:
        conn.request("GET", c.f("fault.txt"), headers={"Authorization": c.auth()})
        conn.getresponse().read()
        check(False, "reset fault aborts the connection")
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError, http.client.IncompleteRead):
        check(True, "reset fault aborts the connection")
    finally:
        conn.close()
    check(c.get("fault.txt").status == 200, "after reset, normal service")
    # reset mid-body
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "action": "reset", "after_bytes": 100, "count": 1})
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    try:
        conn.request("GET", c.f("fault.txt"), headers={"Authorization": c.auth()})
        resp = conn.getresponse()
        got = resp.read()
        check(False, "reset after_bytes truncates body (got %d)" % len(got))
    except (ConnectionResetError, http.client.IncompleteRead) as e:
        check(True, "reset after_bytes truncates body")
    finally:
        conn.close()
    # delay
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "action": "delay", "seconds": 0.6, "count": 1})
    t0 = time.time()
    r = c.get("fault.txt")
    check(r.status == 200 and time.time() - t0 >= 0.55, "delay fault delays")
    # stall: headers + N bytes, then nothing -> client read timeout
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "action": "stall", "after_bytes": 10,
                  "seconds": 5, "count": 1})
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=1.0)
    t0 = time.time()
    try:
        conn.request("GET", c.f("fault.txt"), headers={"Authorization": c.auth()})
        resp = conn.getresponse()
        first = resp.read(10)
        check(resp.status == 200 and len(first) == 10, "stall sends headers + after_bytes")
        resp.read()
        check(False, "stall leads to a read timeout")
    except (socket.timeout, TimeoutError):
        check(time.time() - t0 < 4, "stall leads to a read timeout")
    finally:
        conn.close()
    # probability + seed: a seeded share of the matching requests, until the count is used up
    def pattern(spec, n):
        ctl("clear", {})
        check(ctl("fault", spec).status == 200, "probabilistic fault accepted (%s)" % spec.get("probability"))
        return [c.get("fault.txt").status for _ in range(n)]
    spec = {"method": "GET", "path_contains": "fault.txt", "status": 503, "count": 8, "probability": 0.5, "seed": 7}
    p1 = pattern(spec, 60)
    check(p1.count(503) == 8 and set(p1) == {200, 503}, "probability fault: exactly count requests hit (%d)" % p1.count(503))
    last = max(i for i, st in enumerate(p1) if st == 503)
    check(p1[:last + 1].count(200) > 0, "probability fault: some matching requests pass before the count is used")
    check(all(st == 200 for st in p1[last + 1:]), "probability fault: normal service after the count")
    check(pattern(spec, 60) == p1, "probability fault: the same seed hits the same requests")
    p2 = pattern(dict(spec, seed=8), 60)
    check(p2.count(503) == 8 and p2 != p1, "probability fault: another seed, another pattern")
    p3 = pattern({"method": "GET", "path_contains": "fault.txt", "status": 429, "count": -1, "probability": 0.25,
                  "seed": 1}, 200)
    check(25 <= p3.count(429) <= 75, "count -1 + probability 0.25: about a quarter hit (%d of 200)" % p3.count(429))
    listed = json.loads(c.req("GET", "/__control/faults", auth=False).body)["faults"]
    check(len(listed) == 1 and listed[0]["count"] == -1 and listed[0]["hits"] == p3.count(429)
          and listed[0]["passed"] == 200 - p3.count(429), "unlimited fault stays listed with hits/passed")
    ctl("clear", {})
    check(c.get("fault.txt").status == 200, "clear removes an unlimited fault")
    # a request the first rule does not pick goes on to the next matching rule
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "status": 503, "count": -1, "probability": 0.5, "seed": 3})
    ctl("fault", {"method": "GET", "path_contains": "fault.txt", "status": 429, "count": -1})
    p4 = [c.get("fault.txt").status for _ in range(40)]
    check(set(p4) == {503, 429}, "unpicked requests fall through to the next rule")
    ctl("clear", {})
    for bad in ({"probability": 0}, {"probability": 1.5}, {"probability": "x"}, {"count": -2}):
        r = ctl("fault", dict({"method": "GET", "path_contains": "fault.txt", "status": 503, "count": 1}, **bad))
        check(r.status == 400, "fault %s refused with 400" % bad)
    check(c.get("fault.txt").status == 200, "refused faults are not installed")
    # clear
    ctl("fault", {"method": "*", "path_contains": "fault.txt", "status": 500, "count": 5})
    ctl("clear", {})
    check(c.get("fault.txt").status == 200, "clear removes faults")
    # maintenance
    ctl("maintenance", {"on": True})
    r = c.req("PROPFIND", c.base() + "/", None, {"Depth": "0"})
    check(r.status == 503 and r.message() == "System is in maintenance mode." and
          r.exception() == "OCA\\DAV\\Exception\\ServerMaintenanceMode", "maintenance -> 503 ServerMaintenanceMode")
    check(json.loads(c.req("GET", "/status.php", auth=False).body)["maintenance"] is True, "status.php maintenance true")
    ctl("maintenance", {"on": False})
    check(c.req("PROPFIND", c.base() + "/", None, {"Depth": "0"}).status == 207, "maintenance off")
    r = c.req("GET", "/__control/stats", auth=False)
    check(r.status == 200 and json.loads(r.body)["requests"] > 0, "control stats")
    # touch
    r = ctl("touch", {"path": "touched/t.txt", "content_b64": base64.b64encode(b"server side").decode()})
    check(r.status == 200 and c.get("touched/t.txt").body == b"server side", "control touch")


def t_raw_protocol(srv, c):
    auth = c.auth()
    # Content-Length mismatch: declared 100, sent 50, then half-close
    req = ("PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 100\r\n\r\n" % (c.f("short.bin"), auth)).encode()
    out = raw_request(c.port, req + b"x" * 50, shutdown_write=True)
    check(out.startswith(b"HTTP/1.1 400"), "Content-Length mismatch -> 400")
    check(c.get("short.bin").status == 404, "short upload not stored")
    # Expect: 100-continue
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        s.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
                   % (c.f("expect.bin"), auth)).encode())
        first = s.recv(100)
        check(first.startswith(b"HTTP/1.1 100"), "Expect: 100-continue -> 100 Continue")
        s.sendall(b"hello")
        rest = b""
        while b"\r\n\r\n" not in rest:
            d = s.recv(4096)
            if not d:
                break
            rest += d
        check(rest.startswith(b"HTTP/1.1 201"), "then 201 after body")
    finally:
        s.close()
    # early failure with Expect: no 100, final status directly
    out = raw_request(c.port, ("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
                               % c.f("expect2.bin")).encode(), read_until_close=False)
    check(out.startswith(b"HTTP/1.1 401"), "Expect with bad auth -> 401 without 100")
    # chunked transfer encoding
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    try:
        conn.request("PUT", c.f("chunked-te.bin"), body=iter([b"abc", b"defgh", b"ij"]),
                     headers={"Authorization": auth}, encode_chunked=True)
        r = conn.getresponse()
        r.read()
        check(r.status == 201, "Transfer-Encoding: chunked PUT -> 201")
    finally:
        conn.close()
    check(c.get("chunked-te.bin").body == b"abcdefghij", "chunked PUT content")
    # keep-alive: many requests on one connection
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    ok = True
    try:
        for _ in range(20):
            conn.request("GET", c.f("chunked-te.bin"), headers={"Authorization": auth})
            r = conn.getresponse()
            ok = ok and r.read() == b"abcdefghij"
        check(ok and conn.sock is not None, "keep-alive serves 20 requests on one connection")
    finally:
        conn.close()


def t_parallel(srv, c):
    c.mkcol("par")
    errors = []

    def worker(i):
        cl = srv.client()
        try:
            for j in range(10):
                r = cl.put("par/f%d-%d.txt" % (i, j), b"x" * (i + j))
                if r.status != 201:
                    errors.append(r.status)
        except Exception as e:
            errors.append(repr(e))
        finally:
            cl.close()

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    check(not errors, "160 parallel PUTs succeed (%s)" % errors[:3])
    ents = parse_multistatus(c.propfind("par", ["oc:size"]).body)
    expected = sum(i + j for i in range(16) for j in range(10))
    check(len(ents) == 161 and int(ptext(ents[0], OCNS + "size")) == expected, "parallel PUTs: listing and oc:size")


def t_log(srv, c):
    with open(srv.log) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    check(len(lines) > 50, "request log has entries")
    keys = {"t", "method", "path", "status", "depth", "range", "bytes_in", "bytes_out", "user_agent"}
    check(all(keys <= set(l) for l in lines), "log entries have all fields")
    check(any(l["method"] == "PROPFIND" and l["depth"] == "1" for l in lines), "log records Depth")
    check(any(l["range"] == "bytes=0-9" and l["status"] == 206 for l in lines), "log records Range")
    with open(srv.log) as f:
        raw = f.read()
    check(PW not in raw and base64.b64encode(("%s:%s" % (USER, PW)).encode()).decode() not in raw,
          "log never contains credentials")
    check(not any(l["path"].startswith("/__control") for l in lines), "control requests are not logged")


def t_quota(tmp):
    srv = Server(os.path.join(tmp, "quota"), "--quota", "10000").start()
    c = srv.client()
    try:
        r = c.put("a.bin", b"x" * 6000)
        check(r.status == 201, "quota: PUT within quota")
        r = c.put("b.bin", b"x" * 6000)
        check(r.status == 507 and r.exception() == "Sabre\\DAV\\Exception\\InsufficientStorage", "quota: PUT over -> 507")
        check(c.get("b.bin").status == 404, "quota: nothing stored")
        e = c.props("", ["d:quota-available-bytes", "d:quota-used-bytes"])[0]
        check(ptext(e, DAV + "quota-available-bytes") == "4000" and ptext(e, DAV + "quota-used-bytes") == "6000",
              "quota props")
        r = c.move("a.bin", "c.bin", method="COPY")
        check(r.status == 507, "quota: COPY over -> 507")
        r = c.req("PUT", "/remote.php/dav/uploads/%s/u1/1" % USER, b"x", {"OC-Total-Length": "20000"})
        check(r.status in (404, 507), "quota: chunk PUT (missing folder or 507)")
        c.req("MKCOL", "/remote.php/dav/uploads/%s/u1" % USER, None, {"Destination": c.url(c.f("big.bin"))})
        r = c.req("PUT", "/remote.php/dav/uploads/%s/u1/1" % USER, b"x", {"OC-Total-Length": "20000"})
        check(r.status == 507, "quota: chunk PUT with OC-Total-Length -> 507")
        c.req("PUT", "/remote.php/dav/uploads/%s/u1/1" % USER, b"y" * 5000)
        r = c.req("MOVE", "/remote.php/dav/uploads/%s/u1/.file" % USER, None, {"Destination": c.url(c.f("big.bin"))})
        check(r.status == 507, "quota: chunk assembly over quota -> 507")
        j = json.loads(c.req("GET", "/ocs/v2.php/cloud/user?format=json", headers={"OCS-APIRequest": "true"}).body)
        check(j["ocs"]["data"]["quota"]["quota"] == 10000 and j["ocs"]["data"]["quota"]["used"] == 6000, "OCS quota values")
    finally:
        c.close()
        srv.stop()


def t_restart(tmp):
    data = os.path.join(tmp, "restart")
    srv = Server(data).start()
    c = srv.client()
    try:
        c.mkcol("keep")
        c.put("keep/a.txt", b"a")
        c.put("keep/b.txt", b"b")
        before = {k: (ptext(e, OCNS + "fileid"), ptext(e, DAV + "getetag"))
                  for k, e in by_name(parse_multistatus(c.propfind("keep", ["oc:fileid", "d:getetag"]).body)).items()}
        c.put("trashme.txt", b"t")
        c.delete("trashme.txt")
        root_before = ptext(c.props("", ["oc:fileid", "d:getetag"])[0], DAV + "getetag")
    finally:
        c.close()
    rc = srv.stop()
    check(rc == 0, "SIGTERM -> clean exit 0")
    srv.start()
    c = srv.client()
    try:
        after = {k: (ptext(e, OCNS + "fileid"), ptext(e, DAV + "getetag"))
                 for k, e in by_name(parse_multistatus(c.propfind("keep", ["oc:fileid", "d:getetag"]).body)).items()}
        check(after == before, "restart keeps fileids and etags")
        check(ptext(c.props("", ["d:getetag"])[0], DAV + "getetag") == root_before, "restart keeps root etag")
        ents = parse_multistatus(c.propfind("/remote.php/dav/trashbin/%s/trash/" % USER, ["nc:trashbin-filename"],
                                            raw_path=True).body)
        check(any(ptext(e, NCNS + "trashbin-filename") == "trashme.txt" for e in ents), "restart keeps the trash bin")
    finally:
        c.close()
    srv.stop()
    # change things on disk while stopped
    fdir = os.path.join(data, "files", USER, "keep")
    with open(os.path.join(fdir, "new.txt"), "wb") as f:
        f.write(b"new on disk")
    with open(os.path.join(fdir, "a.txt"), "wb") as f:
        f.write(b"changed on disk")
    os.unlink(os.path.join(fdir, "b.txt"))
    srv.start()
    c = srv.client()
    try:
        after = {k: (ptext(e, OCNS + "fileid"), ptext(e, DAV + "getetag"))
                 for k, e in by_name(parse_multistatus(c.propfind("keep", ["oc:fileid", "d:getetag"]).body)).items()}
        check("new.txt" in after and after["new.txt"][0] not in {v[0] for v in before.values()},
              "file created on disk while stopped gets a new fileid")
        check(after["a.txt"][0] == before["a.txt"][0] and after["a.txt"][1] != before["a.txt"][1],
              "file changed on disk: same fileid, new etag")
        check("b.txt" not in after, "file removed on disk disappears")
        check(after["keep"][1] != before["keep"][1], "folder etag changed after offline changes")
        check(ptext(c.props("", ["d:getetag"])[0], DAV + "getetag") != root_before, "root etag changed after offline changes")
    finally:
        c.close()
        srv.stop()


def t_generic(tmp):
    srv = Server(os.path.join(tmp, "generic"), "--generic").start()
    c = srv.client()
    try:
        c.mkcol("g")
        c.mkcol("g/h")
        r = c.put("g/h/f.txt", b"generic", {"X-OC-Mtime": "1500000000"})
        check(r.status == 201 and r.h("OC-FileId") is None and r.h("X-OC-MTime") is None, "generic: no OC headers")
        e = c.props("g/h/f.txt", DEFAULT_PROPS)[0]
        check(OCNS + "fileid" in e["missing"] and OCNS + "size" in e["missing"] and OCNS + "permissions" in e["missing"],
              "generic: oc props in 404 propstat")
        check(ptext(e, DAV + "getlastmodified") != "Fri, 14 Jul 2017 02:40:00 GMT", "generic: X-OC-Mtime ignored")
        eg = ptext(c.props("g", ["d:getetag"])[0], DAV + "getetag")
        c.put("g/h/f.txt", b"generic 2")
        check(ptext(c.props("g", ["d:getetag"])[0], DAV + "getetag") == eg, "generic: no etag propagation to grandparents")
        check(c.req("GET", "/status.php", auth=False).status == 404, "generic: status.php 404")
        check(c.req("GET", "/ocs/v2.php/cloud/capabilities", headers={"OCS-APIRequest": "true"}).status == 404,
              "generic: OCS 404")
        c.delete("g/h/f.txt")
        r = c.propfind("/remote.php/dav/trashbin/%s/trash/" % USER, ["d:getetag"], raw_path=True)
        check(r.status == 404, "generic: no trashbin")
        check(os.listdir(os.path.join(srv.data, "trash", USER)) == [], "generic: DELETE is permanent")
        r = c.req("MKCOL", "/remote.php/dav/uploads/%s/x" % USER)
        check(r.status == 404, "generic: no uploads collection")
        check(c.put("g/x.part", b"x").status == 201, "generic: no Nextcloud name rules")
        r = c.propfind("g", ["d:getetag"], "infinity")
        check(r.status == 403, "generic: Depth infinity refused")
        r = c.get("nothing-here")
        check(r.status == 404 and (r.h("Content-Type") or "").startswith("text/html"), "generic: HTML error bodies")
    finally:
        c.close()
        srv.stop()


def t_big_folder(tmp):
    data = os.path.join(tmp, "big")
    d = os.path.join(data, "files", USER, "big")
    os.makedirs(d)
    for i in range(10000):
        with open(os.path.join(d, "file-%05d.txt" % i), "wb") as f:
            f.write(b"x" * (i % 100))
    t0 = time.time()
    srv = Server(data).start()
    startup = time.time() - t0
    c = srv.client(timeout=60)
    try:
        body = propfind_body(DEFAULT_PROPS)
        best = None
        for _ in range(3):
            t0 = time.time()
            r = c.req("PROPFIND", c.f("big") + "/", body, {"Depth": "1"})
            dt = time.time() - t0
            best = dt if best is None else min(best, dt)
        ents = parse_multistatus(r.body)
        check(len(ents) == 10001, "10,000-entry folder listed")
        check(int(ptext(ents[0], OCNS + "size")) == sum(i % 100 for i in range(10000)), "10k folder oc:size")
        print("  perf: startup scan of 10,000 files %.2fs; Depth:1 PROPFIND of 10,000 entries best of 3: %.3fs "
              "(%d bytes)" % (startup, best, len(r.body)))
        check(best < 2.0, "10k PROPFIND under 2 s (took %.3fs)" % best)
        t0 = time.time()
        r = c.req("PROPFIND", c.f("big") + "/", body, {"Depth": "1", "Accept-Encoding": "gzip"})
        print("  perf: same with gzip: %.3fs (%d bytes)" % (time.time() - t0, len(r.body)))
    finally:
        c.close()
        srv.stop()


# ===================================================================== main
def t_tls(tmp):
    """--tls-cert/--tls-key: HTTPS on the same endpoints (needs the openssl CLI for the cert)."""
    if shutil.which("openssl") is None:
        print("  skip: no openssl CLI to make a certificate")
        return
    d = os.path.join(tmp, "tls-certs")
    os.makedirs(d)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    srv = Server(os.path.join(tmp, "tls"), "--tls-cert", cert, "--tls-key", key,
                 "--share", "tlstoken=tlsshare").start()
    try:
        check(srv.banner == "ncserver listening on https://127.0.0.1:%d" % srv.port, "tls: banner says https")
        auth = Client(srv.port).auth()
        trusted = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=30, context=trusted)
        try:
            conn.request("PROPFIND", "/remote.php/dav/files/%s/" % USER, headers={"Authorization": auth, "Depth": "0"})
            r = conn.getresponse()
            r.read()
            check(r.status == 207, "tls: PROPFIND over HTTPS -> 207")
            conn.request("POST", "/ocs/v2.php/apps/files_sharing/api/v1/shares?format=json",
                         body="path=/tlsshare&shareType=3",
                         headers={"Authorization": auth, "OCS-APIRequest": "true",
                                  "Content-Type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            url = json.loads(r.read())["ocs"]["data"]["url"]
            check(url.startswith("https://127.0.0.1:%d/index.php/s/" % srv.port), "tls: share URLs say https (%s)" % url)
        finally:
            conn.close()
        untrusted = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=30,
                                                context=ssl.create_default_context())
        try:
            untrusted.request("GET", "/status.php")
            untrusted.getresponse().read()
            check(False, "tls: a client without the certificate is refused")
        except ssl.SSLCertVerificationError:
            check(True, "tls: a client without the certificate is refused")
        finally:
            untrusted.close()
        # A failed handshake leaves the server serving.
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=30, context=trusted)
        try:
            conn.request("GET", "/status.php")
            r = conn.getresponse()
            check(r.status == 200 and json.loads(r.read())["installed"] is True, "tls: serving after a refused handshake")
        finally:
            conn.close()
    finally:
        srv.stop()
    only_cert = subprocess.run([sys.executable, SERVER, "--data", os.path.join(tmp, "tls2"), "--tls-cert", cert],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    check(only_cert.returncode == 2, "tls: --tls-cert without --tls-key -> exit 2")


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    ap.add_argument("-k", default="")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    VERBOSE = args.v
    tmp = tempfile.mkdtemp(prefix="ncserver-selftest-")
    start = time.time()
    watchdog = threading.Timer(TOTAL_DEADLINE, lambda: (print("selftest: global deadline hit", flush=True),
                                                         os._exit(3)))
    watchdog.daemon = True
    watchdog.start()
    main_srv = Server(os.path.join(tmp, "main"), "--control", "--share", "clitoken=clishare")
    servers = [main_srv]
    try:
        main_srv.start()
        check(main_srv.banner == "ncserver listening on http://127.0.0.1:%d" % main_srv.port, "startup banner")
        with open(os.path.join(tmp, "main", "files", USER, "clishare", "readme.txt"), "wb") as f:
            f.write(b"cli share")
        c = main_srv.client()
        c.req("POST", "/__control/rescan", b"{}", auth=False)
        tests = [t_status_and_auth, t_propfind_shapes, t_put_get_etags, t_mkcol, t_move_copy, t_forbidden_names,
                 t_nfc, t_trash, t_chunked_upload, t_bulk, t_ranges, t_proppatch, t_search, t_ocs, t_shares, t_faults,
                 t_raw_protocol, t_parallel, t_log]
        for t in tests:
            if args.k and args.k not in t.__name__:
                continue
            print("%s" % t.__name__, flush=True)
            try:
                t(main_srv, c)
            except Exception:
                traceback.print_exc()
                check(False, "%s raised" % t.__name__)
                c.close()
        c.close()
        main_srv.stop()
        for t in (t_quota, t_restart, t_generic, t_tls, t_big_folder):
            if args.k and args.k not in t.__name__:
                continue
            print("%s" % t.__name__, flush=True)
            try:
                t(tmp)
            except Exception:
                traceback.print_exc()
                check(False, "%s raised" % t.__name__)
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".stderr"):
                with open(os.path.join(tmp, name), "rb") as f:
                    err = f.read().decode("utf-8", "replace")
                check("Traceback" not in err, "server %s logged no tracebacks%s"
                      % (name, (":\n" + err[-3000:]) if "Traceback" in err else ""))
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    print("elapsed %.1fs" % (time.time() - start))
    if FAILURES:
        print("failures:\n  " + "\n  ".join(FAILURES))
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
