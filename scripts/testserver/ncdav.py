"""DAV vocabulary: error bodies, XML helpers, name rules, property rendering."""

import email.utils
import mimetypes
import time
import urllib.parse
from xml.sax.saxutils import escape as _xml_escape

NS_DAV = "DAV:"
NS_SABRE = "http://sabredav.org/ns"
NS_OC = "http://owncloud.org/ns"
NS_NC = "http://nextcloud.org/ns"
NS_OCS = "http://open-collaboration-services.org/ns"
NS_OCM = "http://open-cloud-mesh.org/ns"
NS_SEARCHDAV = "https://github.com/icewind1991/SearchDAV/ns"

PREFIXES = {NS_DAV: "d", NS_SABRE: "s", NS_OC: "oc", NS_NC: "nc", NS_OCS: "x1", NS_OCM: "x2"}

# ---------------------------------------------------------------- name rules
FORBIDDEN_FILENAMES = [".htaccess"]
FORBIDDEN_BASENAMES = []
FORBIDDEN_CHARACTERS = []
FORBIDDEN_EXTENSIONS = [".part", ".filepart"]
MAX_NAME_BYTES = 249          # names of 250 bytes or more are refused (reference section 8.1)
MAX_PATH_BYTES = 4000


def nc_name_problem(name):
    """Reason string if Nextcloud would refuse this name, else None."""
    stripped = name.strip()
    if stripped == "":
        return "Filenames must not be empty."
    if stripped in (".", ".."):
        return '"%s" is a forbidden file or folder name.' % stripped
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return "Filename is too long"
    for ch in name:
        if ord(ch) < 0x20 or ch in "\\/" or ch in FORBIDDEN_CHARACTERS:
            shown = ch if ord(ch) >= 0x20 else "\\x%02x" % ord(ch)
            return '"%s" is not allowed inside a file or folder name.' % shown
    low = name.lower()
    if low in FORBIDDEN_FILENAMES:
        return '"%s" is a forbidden file or folder name.' % name
    base = low.split(".", 1)[0] if not low.startswith(".") else "." + low[1:].split(".", 1)[0]
    if base in FORBIDDEN_BASENAMES:
        return '"%s" is a forbidden prefix for file or folder names.' % base
    for ext in FORBIDDEN_EXTENSIONS:
        if low.endswith(ext):
            return '"%s" is a forbidden file type.' % ext
    return None


def generic_name_problem(name):
    if name in ("", ".", ".."):
        return "Invalid name"
    if "\x00" in name or "/" in name:
        return "Invalid character in name"
    if len(name.encode("utf-8")) > 255:
        return "Name too long"
    return None


# -------------------------------------------------------------------- errors
class DavError(Exception):
    def __init__(self, status, exception, message="", extra="", headers=None):
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.message = message
        self.extra = extra
        self.headers = headers or []


def xml_escape(s):
    return _xml_escape(s, {'"': "&quot;"})


def NotFound(msg="File not found"):
    return DavError(404, "Sabre\\DAV\\Exception\\NotFound", msg)


def Conflict(msg):
    return DavError(409, "Sabre\\DAV\\Exception\\Conflict", msg)


def PreconditionFailed(msg, header, headers=None):
    return DavError(412, "Sabre\\DAV\\Exception\\PreconditionFailed", msg,
                    "<s:header>%s</s:header>" % xml_escape(header), headers)


def MethodNotAllowed(msg):
    return DavError(405, "Sabre\\DAV\\Exception\\MethodNotAllowed", msg)


def Forbidden(msg):
    return DavError(403, "Sabre\\DAV\\Exception\\Forbidden", msg)


def InsufficientStorage(msg):
    return DavError(507, "Sabre\\DAV\\Exception\\InsufficientStorage", msg)


def BadRequest(msg):
    return DavError(400, "Sabre\\DAV\\Exception\\BadRequest", msg)


def NotImplemented_(msg):
    return DavError(501, "Sabre\\DAV\\Exception\\NotImplemented", msg)


def UnsupportedMediaType(msg):
    return DavError(415, "Sabre\\DAV\\Exception\\UnsupportedMediaType", msg)


def NotAuthenticated(msg):
    return DavError(401, "Sabre\\DAV\\Exception\\NotAuthenticated", msg,
                    headers=[("WWW-Authenticate", 'Basic realm="Nextcloud", charset="UTF-8"')])


def InvalidPath(reason, retry=False):
    # Nextcloud builds these children with createElementNS('o:', ...), so their
    # namespace URI really is "o:" (see reference section 9.1).
    extra = ('<o:retry xmlns:o="o:">%s</o:retry><o:reason xmlns:o="o:">%s</o:reason>'
             % ("true" if retry else "false", xml_escape(reason)))
    return DavError(400, "OCA\\DAV\\Connector\\Sabre\\Exception\\InvalidPath", reason, extra)


def Locked(msg="File is locked"):
    return DavError(423, "OCA\\DAV\\Connector\\Sabre\\Exception\\FileLocked", msg)


def ServiceUnavailable(msg="Service unavailable"):
    return DavError(503, "Sabre\\DAV\\Exception\\ServiceUnavailable", msg)


def MaintenanceMode():
    return DavError(503, "OCA\\DAV\\Exception\\ServerMaintenanceMode", "System is in maintenance mode.")


def TooManyRequests(msg="Too many requests"):
    return DavError(429, "OCA\\DAV\\Connector\\Sabre\\Exception\\TooManyRequests", msg,
                    '<o:hint xmlns:o="o:">too many requests</o:hint>')


def RangeNotSatisfiable(msg, size):
    return DavError(416, "Sabre\\DAV\\Exception\\RequestedRangeNotSatisfiable", msg,
                    headers=[("Content-Range", "bytes */%d" % size)])


def InternalError(msg, exc_class="Sabre\\DAV\\Exception"):
    return DavError(500, exc_class, msg)


def error_for_status(status, msg=None):
    """Sabre error for an injected fault status."""
    m = msg or "Injected fault (HTTP %d)" % status
    table = {
        400: BadRequest, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed, 409: Conflict,
        423: Locked, 429: TooManyRequests, 503: ServiceUnavailable, 507: InsufficientStorage,
        401: NotAuthenticated, 500: InternalError,
    }
    if status in table:
        return table[status](m)
    if status == 412:
        return PreconditionFailed(m, "If-Match")
    return DavError(status, "Sabre\\DAV\\Exception", m)


def sabre_error_body(err):
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">\n'
            '  <s:exception>%s</s:exception>\n'
            '  <s:message>%s</s:message>\n%s'
            '</d:error>\n' % (xml_escape(err.exception), xml_escape(err.message),
                              ("  " + err.extra + "\n") if err.extra else "")).encode("utf-8")


def apache_error_body(status, reason, message):
    return ('<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
            '<title>%d %s</title>\n</head><body>\n<h1>%s</h1>\n<p>%s</p>\n</body></html>\n'
            % (status, reason, reason, xml_escape(message))).encode("utf-8")


# -------------------------------------------------------------------- format
def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def iso_date(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_http_date(s):
    try:
        dt = email.utils.parsedate_to_datetime(s)
        return int(dt.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_mime_cache = {}


def guess_mime(name):
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    m = _mime_cache.get(ext)
    if m is None:
        m = mimetypes.guess_type("x" + ext, strict=False)[0] if ext else None
        m = m or "application/octet-stream"
        _mime_cache[ext] = m
    return m


def quote_seg(s):
    return urllib.parse.quote(s, safe="")


def quote_path(p):
    return urllib.parse.quote(p, safe="/")


def split_clark(clark):
    if clark.startswith("{"):
        ns, _, local = clark[1:].partition("}")
        return ns, local
    return "", clark


class PrefixMap:
    """Namespace prefixes used in one multistatus; unknown namespaces get x3, x4, ..."""

    def __init__(self):
        self.extra = {}

    def tag(self, clark):
        ns, local = split_clark(clark)
        p = PREFIXES.get(ns)
        if p is None:
            if ns == "":
                return local
            p = self.extra.get(ns)
            if p is None:
                p = "x%d" % (len(self.extra) + 3)
                self.extra[ns] = p
        return p + ":" + local

    def declarations(self):
        decl = ['xmlns:d="DAV:"', 'xmlns:s="http://sabredav.org/ns"', 'xmlns:oc="http://owncloud.org/ns"',
                'xmlns:nc="http://nextcloud.org/ns"']
        for ns, p in self.extra.items():
            decl.append('xmlns:%s="%s"' % (p, xml_escape(ns)))
        return " ".join(decl)


def multistatus(responses, pm, extra_ns=()):
    """responses: list of already-rendered <d:response> strings."""
    for ns in extra_ns:
        pm.tag("{%s}x" % ns)
    head = '<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus %s>' % pm.declarations()
    return (head + "".join(responses) + "</d:multistatus>\n").encode("utf-8")


def render_response(href, found, notfound, pm, other=None):
    """found: list of (clark, inner_xml or ''), notfound: list of clark names.
    other: optional list of (status_line, [clark]) for PROPPATCH results."""
    out = ["<d:response><d:href>", xml_escape(href), "</d:href>"]
    if found:
        out.append("<d:propstat><d:prop>")
        for clark, val in found:
            t = pm.tag(clark)
            if val == "":
                out.append("<%s/>" % t)
            else:
                out.append("<%s>%s</%s>" % (t, val, t))
        out.append("</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>")
    if notfound:
        out.append("<d:propstat><d:prop>")
        for clark in notfound:
            out.append("<%s/>" % pm.tag(clark))
        out.append("</d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>")
    if other:
        for status_line, names in other:
            out.append("<d:propstat><d:prop>")
            for clark in names:
                out.append("<%s/>" % pm.tag(clark))
            out.append("</d:prop><d:status>%s</d:status></d:propstat>" % status_line)
    out.append("</d:response>")
    return "".join(out)


# ------------------------------------------------------------ property names
def D(x):
    return "{DAV:}" + x


def OC(x):
    return "{%s}%s" % (NS_OC, x)


def NC(x):
    return "{%s}%s" % (NS_NC, x)


ALLPROP_DEFAULT = [D("getlastmodified"), D("getcontentlength"), D("resourcetype"),
                   D("quota-used-bytes"), D("quota-available-bytes"), D("getetag"),
                   D("getcontenttype")]

# properties a client may never PROPPATCH (answer 403)
PROTECTED = {
    D("getcontentlength"), D("getcontenttype"), D("resourcetype"), D("getlastmodified"),
    D("quota-used-bytes"), D("quota-available-bytes"), D("displayname"), D("lockdiscovery"),
    D("supportedlock"), D("current-user-principal"),
    OC("fileid"), OC("id"), OC("size"), OC("permissions"), OC("checksums"), OC("owner-id"),
    OC("owner-display-name"), OC("data-fingerprint"), OC("share-types"), OC("downloadURL"),
    OC("comments-count"), OC("comments-unread"), OC("comments-href"),
    NC("has-preview"), NC("mount-type"), NC("is-mount-root"), NC("upload_time"),
    NC("contained-file-count"), NC("contained-folder-count"), NC("hidden"), NC("is-encrypted"),
    NC("trashbin-filename"), NC("trashbin-original-location"), NC("trashbin-deletion-time"),
    "{%s}share-permissions" % NS_OCS, "{%s}share-permissions" % NS_OCM,
}
