"""In-memory file index backed by real files on disk and a small SQLite database.

Layout under the data directory:
    files/<user>/...      the user's files, exactly as a client sees them
    trash/<user>/...      trashed items (one disk entry per trash item)
    uploads/<user>/<id>/  chunked-upload folders (chunks are plain files)
    tmp/                  part files of PUTs and chunk assembly (same filesystem)
    meta.sqlite           fileids, etags, folder mtimes, checksums, trash records, shares

The tree lives in memory (``Node`` objects).  Every mutation happens under
``Store.lock`` and is written to SQLite in a single transaction at the end of
the operation (``_flush``).  Rows are keyed by fileid and hold (parent fileid,
name), so a MOVE of a whole subtree rewrites one row.
"""

import json
import os
import secrets
import shutil
import sqlite3
import stat as statmod
import threading
import time
import unicodedata

TMP_PREFIX = ".ncserver-part-"

ROOT_PARENT = 0      # parent id stored for the user root row
TRASH_PARENT = -1    # parent id stored for top-level trash items


class Node:
    """One file or folder.  ``children`` is a dict for folders, None for files."""

    __slots__ = ("name", "parent", "children", "isdir", "fileid", "etag", "mtime",
                 "size", "checksum", "ctime", "utime", "fav", "props", "tinfo")

    def __init__(self, name, isdir, fileid, etag, mtime, size=0):
        self.name = name
        self.parent = None
        self.isdir = isdir
        self.children = {} if isdir else None
        self.fileid = fileid
        self.etag = etag
        self.mtime = int(mtime)
        self.size = size
        self.checksum = ""
        self.ctime = 0
        self.utime = 0
        self.fav = 0
        self.props = None      # dead properties {clark: text}
        self.tinfo = None      # TrashInfo for top-level trash items

    def __repr__(self):
        return "<Node %s id=%s dir=%s>" % (self.name, self.fileid, self.isdir)


class TrashInfo:
    __slots__ = ("orig_name", "location", "deleted", "disk_name")

    def __init__(self, orig_name, location, deleted, disk_name):
        self.orig_name = orig_name      # original file name
        self.location = location        # original parent folder, relative ('' = root)
        self.deleted = int(deleted)
        self.disk_name = disk_name

    @property
    def original_path(self):
        return (self.location + "/" + self.orig_name) if self.location else self.orig_name


class StoreError(Exception):
    pass


def nfc(s):
    return unicodedata.normalize("NFC", s)


class Store:
    def __init__(self, data_dir, user, generic=False, quota=None):
        self.data_dir = os.path.abspath(data_dir)
        self.user = user
        self.generic = generic
        self.quota = quota          # None = unlimited
        self.lock = threading.RLock()
        self.files_root = os.path.join(self.data_dir, "files", user)
        self.trash_dir = os.path.join(self.data_dir, "trash", user)
        self.uploads_dir = os.path.join(self.data_dir, "uploads", user)
        self.tmp_dir = os.path.join(self.data_dir, "tmp")
        for d in (self.files_root, self.trash_dir, self.uploads_dir, self.tmp_dir):
            os.makedirs(d, exist_ok=True)
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass
        self._last_etag_us = 0
        self._dirty = {}
        self._deleted = set()
        self._trash_rows = {}       # fileid -> TrashInfo to upsert
        self._trash_deleted = set()
        self.shares = {}            # token -> dict(id, token, fileid, permissions, stime)
        self._open_db()
        self._load_and_scan()

    # ------------------------------------------------------------------ db
    def _open_db(self):
        path = os.path.join(self.data_dir, "meta.sqlite")
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS nodes (
                fileid INTEGER PRIMARY KEY, user TEXT NOT NULL, parent INTEGER NOT NULL,
                name TEXT NOT NULL, isdir INTEGER NOT NULL, etag TEXT NOT NULL,
                mtime INTEGER NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL DEFAULT '',
                ctime INTEGER NOT NULL DEFAULT 0, utime INTEGER NOT NULL DEFAULT 0,
                fav INTEGER NOT NULL DEFAULT 0, props TEXT);
            CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(user, parent, name);
            CREATE TABLE IF NOT EXISTS trash (
                fileid INTEGER PRIMARY KEY, user TEXT NOT NULL, orig_name TEXT NOT NULL,
                location TEXT NOT NULL, deleted INTEGER NOT NULL, disk_name TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS shares (
                id INTEGER PRIMARY KEY, user TEXT NOT NULL, token TEXT UNIQUE NOT NULL,
                fileid INTEGER NOT NULL, permissions INTEGER NOT NULL, stime INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        kv = dict(self.db.execute("SELECT key, value FROM kv"))
        self.instanceid = kv.get("instanceid")
        if not self.instanceid:
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
            self.instanceid = "oc" + "".join(secrets.choice(alphabet) for _ in range(10))
            self.db.execute("INSERT OR REPLACE INTO kv VALUES ('instanceid', ?)", (self.instanceid,))
        maxid = self.db.execute("SELECT COALESCE(MAX(fileid), 0) FROM nodes").fetchone()[0]
        self.next_id = max(int(kv.get("next_id", "1")), maxid + 1)

    def close(self):
        with self.lock:
            try:
                self._flush()
                self.db.close()
            except Exception:
                pass

    def _alloc_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def new_etag(self):
        """A uniqid()-like opaque string (13 hex digits), strictly increasing."""
        us = int(time.time() * 1_000_000)
        if us <= self._last_etag_us:
            us = self._last_etag_us + 1
        self._last_etag_us = us
        return "%08x%05x" % (us // 1_000_000, us % 1_000_000)

    def _mark(self, node):
        if node.fileid and node.fileid > 0:
            self._dirty[node.fileid] = node

    def _mark_tree(self, node):
        self._mark(node)
        if node.isdir:
            for c in node.children.values():
                self._mark_tree(c)

    def _row(self, n):
        if n.tinfo is not None:
            parent = TRASH_PARENT
        elif n.parent is None:
            parent = ROOT_PARENT
        else:
            parent = n.parent.fileid
        return (n.fileid, self.user, parent, n.name, 1 if n.isdir else 0, n.etag, n.mtime,
                n.size, n.checksum or "", n.ctime, n.utime, n.fav,
                json.dumps(n.props) if n.props else None)

    def _flush(self):
        if not (self._dirty or self._deleted or self._trash_rows or self._trash_deleted):
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if self._deleted:
                db.executemany("DELETE FROM nodes WHERE fileid=?", [(i,) for i in self._deleted])
                db.executemany("DELETE FROM trash WHERE fileid=?", [(i,) for i in self._deleted])
            if self._trash_deleted:
                db.executemany("DELETE FROM trash WHERE fileid=?", [(i,) for i in self._trash_deleted])
            if self._dirty:
                db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               [self._row(n) for n in self._dirty.values()])
            if self._trash_rows:
                db.executemany("INSERT OR REPLACE INTO trash VALUES (?,?,?,?,?,?)",
                               [(fid, self.user, t.orig_name, t.location, t.deleted, t.disk_name)
                                for fid, t in self._trash_rows.items()])
            db.execute("INSERT OR REPLACE INTO kv VALUES ('next_id', ?)", (str(self.next_id),))
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        finally:
            self._dirty = {}
            self._deleted = set()
            self._trash_rows = {}
            self._trash_deleted = set()

    # ---------------------------------------------------------------- scan
    def _load_and_scan(self):
        with self.lock:
            rows = self.db.execute(
                "SELECT fileid, parent, name, isdir, etag, mtime, size, checksum, ctime, utime, fav, props "
                "FROM nodes WHERE user=?", (self.user,)).fetchall()
            self._rows_by_key = {}
            for r in rows:
                self._rows_by_key[(r[1], r[2])] = r
            self._seen = set()
            now = int(time.time())
            root_row = self._rows_by_key.get((ROOT_PARENT, self.user))
            if root_row is not None:
                self.root = self._node_from_row(root_row)
            else:
                self.root = Node(self.user, True, self._alloc_id(), self.new_etag(), now)
            self._seen.add(self.root.fileid)
            changed = self._scan_dir(self.files_root, self.root)
            if changed or root_row is None:
                self.root.etag = self.new_etag()
                self._mark(self.root)
            # trash
            self.trash_root = Node("trash", True, None, "", now)
            trows = self.db.execute("SELECT fileid, orig_name, location, deleted, disk_name FROM trash "
                                    "WHERE user=?", (self.user,)).fetchall()
            by_id = {r[0]: r for r in rows}
            for fid, orig, loc, deleted, disk_name in trows:
                path = os.path.join(self.trash_dir, disk_name)
                r = by_id.get(fid)
                if r is None or not os.path.lexists(path):
                    self._trash_deleted.add(fid)
                    continue
                node = self._node_from_row(r)
                node.tinfo = TrashInfo(orig, loc, deleted, disk_name)
                self._seen.add(fid)
                if node.isdir:
                    if self._scan_dir(path, node):
                        self._mark(node)
                else:
                    try:
                        st = os.stat(path)
                        node.size = st.st_size
                    except OSError:
                        pass
                self._attach(self.trash_root, node)
            # rows that no longer exist on disk
            for r in rows:
                if r[0] not in self._seen:
                    self._deleted.add(r[0])
            # shares
            for sid, token, fid, perms, stime in self.db.execute(
                    "SELECT id, token, fileid, permissions, stime FROM shares WHERE user=?", (self.user,)):
                self.shares[token] = {"id": sid, "token": token, "fileid": fid,
                                      "permissions": perms, "stime": stime}
            del self._rows_by_key
            del self._seen
            if hasattr(self, "_child_counts"):
                del self._child_counts
            self._flush()

    def _node_from_row(self, r):
        fid, parent, name, isdir, etag, mtime, size, checksum, ctime, utime, fav, props = r
        n = Node(name, bool(isdir), fid, etag, mtime, size)
        n.checksum = checksum or ""
        n.ctime = ctime
        n.utime = utime
        n.fav = fav
        if props:
            try:
                n.props = json.loads(props)
            except ValueError:
                n.props = None
        return n

    def _scan_dir(self, path, dnode):
        """Populate dnode.children from disk; return True when something differs from the db."""
        changed = False
        try:
            entries = list(os.scandir(path))
        except OSError:
            entries = []
        expected = 0
        total = 0
        for e in entries:
            name = e.name
            if name.startswith(TMP_PREFIX):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if statmod.S_ISLNK(st.st_mode):
                continue
            isdir = statmod.S_ISDIR(st.st_mode)
            if not isdir and not statmod.S_ISREG(st.st_mode):
                continue
            n_name = nfc(name)
            if n_name != name:
                # names are stored NFC; fix files that were created on disk in another form
                target = os.path.join(path, n_name)
                if os.path.lexists(target):
                    continue
                try:
                    os.rename(e.path, target)
                except OSError:
                    continue
                name = n_name
            row = self._rows_by_key.get((dnode.fileid, name))
            if row is not None and bool(row[3]) == isdir and row[0] not in self._seen:
                node = self._node_from_row(row)
                expected += 1
                if not isdir and (row[6] != st.st_size or row[5] != int(st.st_mtime)):
                    node.size = st.st_size
                    node.mtime = int(st.st_mtime)
                    node.etag = self.new_etag()
                    node.checksum = ""
                    self._mark(node)
                    changed = True
            else:
                node = Node(name, isdir, self._alloc_id(), self.new_etag(), int(st.st_mtime),
                            0 if isdir else st.st_size)
                self._mark(node)
                changed = True
            self._seen.add(node.fileid)
            if isdir:
                node.size = 0
                sub_changed = self._scan_dir(os.path.join(path, name), node)
                if sub_changed:
                    node.etag = self.new_etag()
                    self._mark(node)
                    changed = True
            self._attach(dnode, node)
            total += node.size
        if total != dnode.size:
            dnode.size = total
            self._mark(dnode)
        if not changed and dnode.fileid is not None:
            # detect removed entries: count db rows under this parent
            n_db = self._count_children_rows(dnode.fileid)
            if n_db != expected:
                changed = True
        return changed

    def _count_children_rows(self, fid):
        if not hasattr(self, "_child_counts"):
            counts = {}
            for (p, _n) in self._rows_by_key:
                counts[p] = counts.get(p, 0) + 1
            self._child_counts = counts
        return self._child_counts.get(fid, 0)

    def rescan(self):
        """Rebuild the index from disk (keeps ids/etags of unchanged entries)."""
        with self.lock:
            self._flush()
            if hasattr(self, "_child_counts"):
                del self._child_counts
            self.shares = {}
            self._load_and_scan()
            if hasattr(self, "_child_counts"):
                del self._child_counts

    # --------------------------------------------------------------- tree
    @staticmethod
    def _attach(parent, node):
        node.parent = parent
        parent.children[node.name] = node

    @staticmethod
    def _detach(node):
        p = node.parent
        if p is not None and p.children.get(node.name) is node:
            del p.children[node.name]
        node.parent = None

    def lookup(self, parts, base=None):
        n = self.root if base is None else base
        for p in parts:
            if n.children is None:
                return None
            n = n.children.get(p)
            if n is None:
                return None
        return n

    def is_attached(self, node):
        """True when node still hangs below the user root."""
        n = node
        while n.parent is not None:
            n = n.parent
        return n is self.root

    def in_trash(self, node):
        n = node
        while n.parent is not None:
            n = n.parent
        return n is self.trash_root

    def rel_parts(self, node):
        parts = []
        n = node
        while n.parent is not None and n is not self.root:
            parts.append(n.name)
            n = n.parent
        parts.reverse()
        return parts

    def rel_path(self, node):
        return "/".join(self.rel_parts(node))

    def disk_path(self, node):
        parts = []
        n = node
        while n is not self.root and n is not self.trash_root:
            if n.tinfo is not None:
                parts.append(n.tinfo.disk_name)
                n = self.trash_root
                break
            parts.append(n.name)
            n = n.parent
            if n is None:
                raise StoreError("node is detached")
        base = self.files_root if n is self.root else self.trash_dir
        parts.reverse()
        return os.path.join(base, *parts) if parts else base

    def find_by_id(self, fileid):
        stack = [self.root]
        while stack:
            n = stack.pop()
            if n.fileid == fileid:
                return n
            if n.isdir:
                stack.extend(n.children.values())
        return None

    def walk(self, node):
        """All nodes below node (not including node), depth first."""
        stack = list(node.children.values()) if node.isdir else []
        while stack:
            n = stack.pop()
            yield n
            if n.isdir:
                stack.extend(n.children.values())

    # ------------------------------------------------------------ quota
    def used(self):
        return self.root.size

    def free(self):
        """Free bytes, or None when unlimited."""
        if self.quota is None:
            return None
        return max(0, self.quota - self.root.size)

    def quota_allows(self, additional):
        if self.quota is None:
            return True
        return self.root.size + additional <= self.quota

    # --------------------------------------------------------- propagation
    def _propagate(self, folder, size_delta, now, membership=True):
        """Record a change inside ``folder``.

        Nextcloud mode: one fresh etag for every ancestor up to the root, mtime raised
        to ``now``, sizes adjusted.  Generic mode: only the direct folder gets a new
        etag/mtime (like a directory's mtime on a real filesystem), sizes still adjusted.
        """
        if folder is None:
            return
        etag = self.new_etag()
        n = folder
        first = True
        while n is not None and n is not self.trash_root:
            n.size += size_delta
            if not self.generic or (first and membership):
                n.etag = etag
                if now > n.mtime:
                    n.mtime = now
            self._mark(n)
            first = False
            n = n.parent

    # ---------------------------------------------------------- operations
    def tmp_path(self):
        return os.path.join(self.tmp_dir, TMP_PREFIX + secrets.token_hex(8))

    def commit_file(self, parent, name, tmp, size, mtime=None, checksum=None, ctime=None,
                    keep_checksum=False):
        """Move a completed part file into place.  Returns (node, created)."""
        with self.lock:
            existing = parent.children.get(name)
            if existing is not None and existing.isdir:
                raise StoreError("target is a folder")
            target = os.path.join(self.disk_path(parent), name)
            os.replace(tmp, target)
            now = int(time.time())
            if mtime is not None:
                os.utime(target, (mtime, mtime))
            st = os.stat(target)
            if existing is not None:
                node = existing
                delta = st.st_size - node.size
                node.size = st.st_size
                node.etag = self.new_etag()
                created = False
            else:
                node = Node(name, False, self._alloc_id(), self.new_etag(), st.st_mtime, st.st_size)
                delta = st.st_size
                self._attach(parent, node)
                created = True
            node.mtime = int(st.st_mtime)
            node.utime = now
            if ctime is not None:
                node.ctime = ctime
            if checksum is not None:
                node.checksum = checksum
            elif not keep_checksum:
                node.checksum = ""
            self._mark(node)
            self._propagate(parent, delta, now, membership=True)
            self._flush()
            return node, created

    def mkdir(self, parent, name):
        with self.lock:
            os.mkdir(os.path.join(self.disk_path(parent), name))
            now = int(time.time())
            node = Node(name, True, self._alloc_id(), self.new_etag(), now, 0)
            self._attach(parent, node)
            self._mark(node)
            self._propagate(parent, 0, now)
            self._flush()
            return node

    def set_mtime(self, node, mtime):
        with self.lock:
            if not node.isdir:
                os.utime(self.disk_path(node), (mtime, mtime))
            node.mtime = int(mtime)
            if not self.generic:
                node.etag = self.new_etag()
            self._mark(node)
            if not self.generic:
                # Nextcloud 32 (seen on a real server): setting a file's or folder's mtime gives
                # every ancestor a new etag but does not raise their mtime to now (an upload does).
                self._propagate(node.parent, 0, 0, membership=False)
            self._flush()

    def update_meta(self, node):
        """Persist in-memory metadata edits (props, favorite, ctime, etag)."""
        with self.lock:
            self._mark(node)
            self._flush()

    def _subtree_ids(self, node):
        ids = [node.fileid]
        for n in self.walk(node):
            ids.append(n.fileid)
        return ids

    def delete(self, node, permanent=False):
        """Delete a node of the user tree (to the trash bin unless permanent)."""
        with self.lock:
            parent = node.parent
            src = self.disk_path(node)
            now = int(time.time())
            self._detach(node)
            self._propagate(parent, -node.size, now)
            if permanent or self.generic:
                self._remove_disk(src)
                self._deleted.update(self._subtree_ids(node))
                self._dirty = {k: v for k, v in self._dirty.items() if k not in self._deleted}
                self._flush()
                return None
            # into the trash bin
            deleted = now
            while "%s.d%d" % (node.name, deleted) in self.trash_root.children:
                deleted += 1
            item = "%s.d%d" % (node.name, deleted)
            disk_name = item if len(item.encode("utf-8")) <= 255 else "%d.trashitem" % node.fileid
            location = self.rel_path(parent) if parent is not None else ""
            node.tinfo = TrashInfo(node.name, location, deleted, disk_name)
            os.rename(src, os.path.join(self.trash_dir, disk_name))
            node.name = item
            self._attach(self.trash_root, node)
            self._trash_rows[node.fileid] = node.tinfo
            self._mark(node)
            self._flush()
            return node

    @staticmethod
    def _remove_disk(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def move(self, node, new_parent, new_name):
        with self.lock:
            old_parent = node.parent
            src = self.disk_path(node)
            dst = os.path.join(self.disk_path(new_parent), new_name)
            os.rename(src, dst)
            now = int(time.time())
            self._detach(node)
            node.name = new_name
            self._attach(new_parent, node)
            # Nextcloud 32 (CustomPropertiesBackend::move) moves the dead properties of the
            # moved path only: every entry below a moved folder loses its own.
            stack = list((node.children or {}).values()) if node.isdir else []
            while stack:
                child = stack.pop()
                if child.props:
                    child.props = None
                    self._mark(child)
                if child.isdir:
                    stack.extend((child.children or {}).values())
            self._mark(node)
            self._propagate(old_parent, -node.size, now)
            self._propagate(new_parent, node.size, now)
            self._flush()
            return node

    def copy(self, node, new_parent, new_name, depth_infinity=True):
        with self.lock:
            now = int(time.time())
            dst = os.path.join(self.disk_path(new_parent), new_name)
            copied = self._copy_rec(node, self.disk_path(node), dst, new_name, depth_infinity)
            self._attach(new_parent, copied)
            self._propagate(new_parent, copied.size, now)
            self._flush()
            return copied

    def _copy_rec(self, node, src, dst, name, recurse):
        if node.isdir:
            os.mkdir(dst)
            c = Node(name, True, self._alloc_id(), self.new_etag(), node.mtime, 0)
            if recurse:
                for child in list(node.children.values()):
                    cc = self._copy_rec(child, os.path.join(src, child.name),
                                        os.path.join(dst, child.name), child.name, True)
                    self._attach(c, cc)
                    c.size += cc.size
        else:
            shutil.copyfile(src, dst)
            os.utime(dst, (node.mtime, node.mtime))
            c = Node(name, False, self._alloc_id(), self.new_etag(), node.mtime, node.size)
            c.checksum = node.checksum
            c.utime = int(time.time())
        c.ctime = node.ctime
        self._mark(c)
        return c

    # --------------------------------------------------------------- trash
    def trash_item_root(self, node):
        n = node
        while n.parent is not None and n.parent is not self.trash_root:
            n = n.parent
        return n if n.parent is self.trash_root else None

    def trash_original_path(self, node):
        top = self.trash_item_root(node)
        if top is None:
            return ""
        rel = []
        n = node
        while n is not top:
            rel.append(n.name)
            n = n.parent
        rel.reverse()
        return "/".join([top.tinfo.original_path] + rel)

    def trash_original_name(self, node):
        return node.tinfo.orig_name if node.tinfo is not None else node.name

    def restore(self, node):
        """Restore a trash item (or an entry inside a trashed folder).

        Goes back to its original folder; if that folder no longer exists it lands in the
        user root (as Nextcloud's Trashbin::restore does).  A name clash gives
        "name (restored).ext", then "name (restored 2).ext", ...
        """
        with self.lock:
            top = self.trash_item_root(node)
            orig_path = self.trash_original_path(node)
            parts = orig_path.split("/")
            name = parts[-1]
            target_parent = self.lookup(parts[:-1]) if len(parts) > 1 else self.root
            if target_parent is None or not target_parent.isdir:
                target_parent = self.root
            name = unique_restore_name(name, target_parent.children)
            src = self.disk_path(node)
            dst = os.path.join(self.disk_path(target_parent), name)
            os.rename(src, dst)
            if node is top:
                self._detach(node)
                self._trash_deleted.add(node.fileid)
                node.tinfo = None
            else:
                # entry inside a trashed folder: fix sizes of the trashed ancestors
                p = node.parent
                self._detach(node)
                while p is not None and p is not self.trash_root:
                    p.size -= node.size
                    self._mark(p)
                    p = p.parent
            node.name = name
            self._attach(target_parent, node)
            self._mark(node)
            self._propagate(target_parent, node.size, int(time.time()))
            self._flush()
            return node

    def trash_delete(self, node):
        with self.lock:
            path = self.disk_path(node)
            p = node.parent
            self._detach(node)
            while p is not None and p is not self.trash_root:
                p.size -= node.size
                self._mark(p)
                p = p.parent
            self._remove_disk(path)
            self._deleted.update(self._subtree_ids(node))
            self._dirty = {k: v for k, v in self._dirty.items() if k not in self._deleted}
            self._flush()

    def trash_empty(self):
        with self.lock:
            for node in list(self.trash_root.children.values()):
                self._remove_disk(self.disk_path(node))
                self._detach(node)
                self._deleted.update(self._subtree_ids(node))
            self._dirty = {k: v for k, v in self._dirty.items() if k not in self._deleted}
            self._flush()

    # -------------------------------------------------------------- shares
    def add_share(self, token, node, permissions):
        with self.lock:
            stime = int(time.time())
            cur = self.db.execute("INSERT INTO shares (user, token, fileid, permissions, stime) "
                                  "VALUES (?,?,?,?,?)", (self.user, token, node.fileid, permissions, stime))
            share = {"id": cur.lastrowid, "token": token, "fileid": node.fileid,
                     "permissions": permissions, "stime": stime}
            self.shares[token] = share
            return share

    def delete_share(self, share_id):
        with self.lock:
            for token, s in list(self.shares.items()):
                if s["id"] == share_id:
                    del self.shares[token]
                    self.db.execute("DELETE FROM shares WHERE id=?", (share_id,))
                    return True
            return False

    def share_node(self, token):
        """(share, node) for a token; node is None when the shared item is gone."""
        with self.lock:
            s = self.shares.get(token)
            if s is None:
                return None, None
            n = s.get("_node")
            if n is None or n.fileid != s["fileid"] or not self.is_attached(n):
                n = self.find_by_id(s["fileid"])
                s["_node"] = n
            if n is None or not self.is_attached(n):
                return s, None
            return s, n


def unique_restore_name(name, taken):
    if name not in taken:
        return name
    # PHP pathinfo(): extension after the last dot; a leading-dot-only name is all extension
    dot = name.rfind(".")
    if dot > 0:
        base, ext = name[:dot], name[dot:]
    elif dot == 0:
        base, ext = "", name
    else:
        base, ext = name, ""
    cand = "%s (restored)%s" % (base, ext)
    i = 2
    while cand in taken:
        cand = "%s (restored %d)%s" % (base, i, ext)
        i += 1
    return cand
