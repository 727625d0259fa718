#!/usr/bin/env python3
"""ncserver: a Nextcloud-dialect WebDAV test server for ncfs (standard library only).

Run `ncserver.py --help` for the options; README.md documents every endpoint.
"""

import argparse
import os
import signal
import socket
import ssl
import sys
import threading
import time
import unicodedata
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nchandler  # noqa: E402
from ncstore import Store  # noqa: E402


class NCServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def finish_request(self, request, client_address):
        # TLS: the listening socket hands out SSLSockets whose handshake has not run yet
        # (do_handshake_on_connect=False), so it runs here, in the connection's own thread, with a
        # time limit: a client that never speaks cannot stall accept() for everyone else. A
        # handshake the client aborts (it refused our certificate) just ends the connection.
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(30)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        # Connection-level errors (client vanished) are routine in fault tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Nextcloud-compatible WebDAV test server")
    p.add_argument("--data", required=True, help="state directory (files/, trash/, uploads/, meta.sqlite)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    p.add_argument("--port-file", help="write the chosen port here (atomically)")
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default=None,
                   help="app password (default: $NCSERVER_PASSWORD or 'testpass')")
    p.add_argument("--login-password", default=None,
                   help="a 'login password' that is refused with 401 '2FA challenge not passed.'")
    p.add_argument("--display-name", default=None)
    p.add_argument("--log", help="append one JSON line per request to this file")
    p.add_argument("--quota", type=int, default=None, help="user quota in bytes (default unlimited)")
    p.add_argument("--share", action="append", default=[], metavar="TOKEN=PATH",
                   help="read-only public link share of folder PATH (created if missing)")
    p.add_argument("--generic", action="store_true", help="behave like a plain WebDAV server")
    p.add_argument("--control", action="store_true", help="enable /__control/ test endpoints")
    p.add_argument("--seed-demo", action="store_true", help="create a sample tree if the user root is empty")
    p.add_argument("--verify-checksums", action="store_true",
                   help="reject a PUT / final MOVE whose OC-Checksum does not match the content (400); "
                        "Nextcloud itself stores the header verbatim without checking")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="serve HTTPS with this PEM certificate (chain); needs --tls-key")
    p.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    return p.parse_args(argv)


def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def ensure_folder(store, rel):
    parts = [unicodedata.normalize("NFC", p) for p in rel.split("/") if p]
    with store.lock:
        node = store.root
        for seg in parts:
            nxt = node.children.get(seg)
            if nxt is None:
                nxt = store.mkdir(node, seg)
            node = nxt
        return node


def seed_demo(store):
    with store.lock:
        if store.root.children:
            return
    files = {
        "Readme.md": b"# Welcome to ncserver\n\nThis is demo content for ncfs.\n",
        "Documents/notes.txt": b"Meeting notes\n- ship ncfs\n- write docs\n",
        "Documents/todo.txt": b"1. mount\n2. ls -l\n3. celebrate\n",
        "Documents/Reports/2024-q4.csv": b"month,revenue\nOct,10\nNov,12\nDec,15\n",
        "Photos/README.txt": b"Photos go here.\n",
        "Photos/Holiday/beach.bin": bytes((i * 7 + 3) % 256 for i in range(64 * 1024)),
        "Photos/Holiday/mountains.bin": bytes((i * 13 + 1) % 256 for i in range(128 * 1024)),
        "Music/playlist.m3u": b"#EXTM3U\n",
        "Caf\u00e9 \u00fcber/na\u00efve r\u00e9sum\u00e9.txt": "Unicode names work (NFC).\n".encode(),
    }
    for folder in ("pindeck/media-uploads", "Shared"):
        ensure_folder(store, folder)
    base_t = int(time.time()) - 86400 * 30
    for i, (rel, content) in enumerate(sorted(files.items())):
        parts = rel.split("/")
        parent = ensure_folder(store, "/".join(parts[:-1]))
        tmp = store.tmp_path()
        with open(tmp, "wb") as f:
            f.write(content)
        store.commit_file(parent, parts[-1], tmp, len(content), mtime=base_t + i * 3600)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        sys.stderr.write("ncserver: --tls-cert and --tls-key go together\n")
        return 2
    password = args.password
    if password is None:
        password = os.environ.get("NCSERVER_PASSWORD", "testpass")
    os.makedirs(args.data, exist_ok=True)
    store = Store(args.data, args.user, generic=args.generic, quota=args.quota)
    if args.seed_demo:
        seed_demo(store)
    for spec in args.share:
        token, sep, rel = spec.partition("=")
        if not sep or not token:
            sys.stderr.write("ncserver: bad --share %r (want TOKEN=PATH)\n" % spec)
            return 2
        node = ensure_folder(store, rel)
        with store.lock:
            old = store.shares.get(token)
            if old is not None:
                store.delete_share(old["id"])
            store.add_share(token, node, 1)

    state = nchandler.State(store, args.user, password, args.generic, args.control, args.log,
                            verify_checksums=args.verify_checksums, login_password=args.login_password,
                            display_name=args.display_name)
    handler = type("BoundHandler", (nchandler.Handler,), {"state": state})
    server = NCServer(("127.0.0.1", args.port), handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("ncserver: cannot load --tls-cert/--tls-key: %s\n" % e)
            server.server_close()
            return 2
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        state.scheme = "https"
    port = server.server_address[1]
    state.port = port
    if args.port_file:
        write_port_file(args.port_file, port)

    def stop(signum, frame):
        state.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent may start us with these blocked (the Swift test runner's threads block them, and
    # Foundation's Process passes its mask on): unblocked, SIGTERM stops us at once instead of
    # the caller waiting out its SIGKILL deadline.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    print("ncserver listening on %s://127.0.0.1:%d" % (state.scheme, port), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        state.stopping.set()
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
