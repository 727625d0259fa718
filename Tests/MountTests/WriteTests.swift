import Foundation
import TestSupport
import Testing
import WebDAV

/// The write side through a real mount: POSIX behaviour, bulk copies with cp -a and rsync -a,
/// crash safety, conflicts and fsync.
@Suite("Writing through a real FUSE mount", .serialized, .timeLimit(.minutes(10)),
       .enabled(if: FileManager.default.fileExists(atPath: "/dev/fuse"), "needs /dev/fuse (FUSE kernel module) to mount"))
struct WriteTests {
    @Test("POSIX: O_CREAT|O_EXCL, O_TRUNC, O_APPEND, truncate, rename over files and folders, rmdir ENOTEMPTY, unlink while open, sparse writes, hard links refused")
    func posix() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("keep/old.txt"), Array("old".utf8)) }
        defer { server.stop() }
        try Self.posixCases(server, client: server.client(), mark: server.mark,
                            requestPaths: { mark in server.requests(since: mark).map(\.path) })
    }

    /// The POSIX cases, on the emulator and (RealServerTests) on a real Nextcloud: `server` has
    /// `keep/old.txt` = "old" and nothing else; `requestPaths` gives the paths requested since
    /// a `mark`.
    static func posixCases(_ server: any DAVServer, client: WebDAVClient, mark: () -> Int,
                           requestPaths: (Int) -> [String]) throws {
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        let root = mount.path("")

        // O_CREAT|O_EXCL on a new name works, on an existing one EEXIST.
        var fd = open(root + "/a.txt", O_CREAT | O_EXCL | O_WRONLY, 0o644)
        #expect(fd >= 0)
        #expect(Posix.write(fd, "hello") == 5)
        #expect(close(fd) == 0)
        #expect(open(root + "/a.txt", O_CREAT | O_EXCL | O_WRONLY, 0o644) == -1 && errno == EEXIST)
        #expect(open(root + "/keep/old.txt", O_CREAT | O_EXCL | O_WRONLY, 0o644) == -1 && errno == EEXIST)

        // O_APPEND appends; O_TRUNC empties.
        fd = open(root + "/a.txt", O_WRONLY | O_APPEND)
        #expect(Posix.write(fd, " world") == 6)
        close(fd)
        #expect(Posix.read(root + "/a.txt") == "hello world")
        fd = open(root + "/keep/old.txt", O_WRONLY | O_TRUNC)
        #expect(Posix.write(fd, "new") == 3)
        close(fd)
        #expect(Posix.read(root + "/keep/old.txt") == "new")

        // truncate shorter and longer (zeros).
        #expect(truncate(root + "/a.txt", 5) == 0)
        #expect(Posix.read(root + "/a.txt") == "hello")
        #expect(truncate(root + "/a.txt", 8) == 0)
        #expect(Posix.bytes(root + "/a.txt") == Array("hello".utf8) + [0, 0, 0])

        // Sparse write far out: the hole reads as zeros, size is the end of the write.
        fd = open(root + "/sparse.bin", O_CREAT | O_WRONLY, 0o644)
        #expect(pwrite(fd, "end", 3, 5_000_000) == 3)
        close(fd)
        var st = stat()
        #expect(stat(root + "/sparse.bin", &st) == 0 && st.st_size == 5_000_003)
        let sparse = Posix.bytes(root + "/sparse.bin")
        #expect(sparse.count == 5_000_003 && sparse[0..<5_000_000].allSatisfy { $0 == 0 } && Array(sparse[5_000_000...]) == Array("end".utf8))

        // Folders: mkdir, EEXIST, rmdir of a non-empty one ENOTEMPTY, rename of a folder with contents.
        #expect(mkdir(root + "/dir", 0o755) == 0)
        #expect(mkdir(root + "/dir", 0o755) == -1 && errno == EEXIST)
        #expect(Posix.create(root + "/dir/inner.txt", "inner"))
        #expect(rmdir(root + "/dir") == -1 && errno == ENOTEMPTY)
        #expect(rename(root + "/dir", root + "/dir2") == 0)
        #expect(Posix.read(root + "/dir2/inner.txt") == "inner")
        #expect(access(root + "/dir", F_OK) == -1 && errno == ENOENT)

        // rename over an existing file replaces it; over a non-empty folder ENOTEMPTY; file onto folder EISDIR.
        #expect(Posix.create(root + "/b.txt", "bee"))
        #expect(rename(root + "/b.txt", root + "/a.txt") == 0)
        #expect(Posix.read(root + "/a.txt") == "bee")
        #expect(mkdir(root + "/empty", 0o755) == 0)
        #expect(rename(root + "/empty", root + "/dir2") == -1 && errno == ENOTEMPTY)
        #expect(rename(root + "/a.txt", root + "/empty") == -1 && errno == EISDIR)
        #expect(rmdir(root + "/empty") == 0)

        // unlink while open: the open descriptor still reads; the name is gone.
        #expect(Posix.create(root + "/gone.txt", "still here"))
        fd = open(root + "/gone.txt", O_RDONLY)
        #expect(unlink(root + "/gone.txt") == 0)
        #expect(access(root + "/gone.txt", F_OK) == -1)
        var buffer = [UInt8](repeating: 0, count: 32)
        #expect(read(fd, &buffer, 32) == 10)
        close(fd)

        // readdir after the changes.
        let names = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        #expect(names == ["a.txt", "dir2", "incoming", "keep", "sparse.bin"], "\(names)")

        // utimens sticks; chmod and chown are accepted (and change nothing on the server).
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, root + "/a.txt", &times, 0) == 0)
        #expect(stat(root + "/a.txt", &st) == 0 && st.st_mtim.tv_sec == 1_000_000_000)
        #expect(chmod(root + "/a.txt", 0o600) == 0)
        #expect(chown(root + "/a.txt", 0, 0) == 0)

        // Symbolic links work (PosixSuite has their cases); hard links and device nodes are refused.
        #expect(symlink("a.txt", root + "/link") == 0)
        #expect(link(root + "/a.txt", root + "/hard") == -1 && errno == EPERM)
        #expect(mkfifo(root + "/fifo", 0o644) == -1 && errno == EPERM)

        // A name Nextcloud forbids is refused before any request.
        let before = mark()
        #expect(open(root + "/bad\\name", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EINVAL)
        #expect(mkdir(root + "/x.part", 0o755) == -1 && errno == EINVAL)
        // (Uploads of the files above may run meanwhile; none may concern these names.)
        #expect(!requestPaths(before).contains { $0.contains("bad") || $0.contains("x.part") })

        // After the unmount drained the uploads, the server has exactly this.
        #expect(mount.unmount() == 0, "clean exit, every upload done")
        #expect(try client.get("a.txt").bytes == Array("bee".utf8))
        #expect(try client.get("keep/old.txt").bytes == Array("new".utf8))
        #expect(try client.get("dir2/inner.txt").bytes == Array("inner".utf8))
        #expect(try client.stat("sparse.bin").contentLength == 5_000_003)
        #expect(throws: DAVError.self) { try client.stat("gone.txt") }
        #expect(try client.stat("a.txt").lastModified?.timeIntervalSince1970 == 1_000_000_000)
    }

    @Test("cp -a and rsync -a of 500 files (0 bytes to 50 MB): exit 0, no upload of an rsync temp name, every file intact after a remount with an empty cache")
    func bulkCopies() throws {
        let source = FileManager.default.temporaryDirectory.appendingPathComponent("ncfs-bulk-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: source) }
        var rng = SeededGenerator(seed: 7)
        for i in 0..<499 {
            let size = i == 0 ? 0 : Int.random(in: 1...200_000, using: &rng)
            let dir = source.appendingPathComponent("sub\(i % 5)")
            try write(dir.appendingPathComponent("file \(i).bin"), (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) })
        }
        _ = run("/bin/sh", ["-c", "head -c 52428800 /dev/urandom > '\(source.path)/big.bin'"], timeout: 60)
        _ = run("/bin/sh", ["-c", "find '\(source.path)' -type f -exec touch -d '2021-03-04 05:06:07' {} +"])

        let server = try populatedServer { _ in }
        defer { server.stop() }
        var mount = try MountedServer(server)
        defer { mount.unmount() }
        let mark = server.mark()
        #expect(run("/bin/cp", ["-a", source.path, mount.path("cp")], timeout: 300).status == 0, "cp -a")
        #expect(run("/usr/bin/rsync", ["-a", source.path + "/", mount.path("rsync")], timeout: 300).status == 0, "rsync -a")
        _ = run("/bin/sync", [])
        #expect(mount.unmount() == 0, "unmount drains every upload")
        let status = runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user])
        #expect(status.out.hasPrefix("nothing pending"), "the journal is empty after the drain: \(status.out.prefix(300))")
        // rsync's temp files are `.name.XXXXXX`; chunked uploads (the 50 MB file) send their
        // chunks to uploads/…/N and assemble with a MOVE of uploads/…/.file, which are not files/.
        let temps = server.requests(since: mark).filter { request in
            request.method == "PUT" && request.path.contains("/dav/files/")
                && (request.path.split(separator: "/").last.map { $0.hasPrefix(".") } ?? false)
        }
        #expect(temps.isEmpty, "PUTs of rsync temp names: \(temps.map(\.path).prefix(3))")

        // A fresh mount with an empty cache reads everything back from the server.
        try? FileManager.default.removeItem(at: server.dataDir.appendingPathComponent("ncfs"))
        mount = try MountedServer(server)
        let expected = run("/bin/sh", ["-c", "cd '\(source.path)' && find . -type f -exec sha256sum {} + | sort"], timeout: 120).out
        let stamps = run("/bin/sh", ["-c", "cd '\(source.path)' && find . -type f -printf '%P %T@\\n' | sort"]).out
        for copy in ["cp", "rsync"] {
            let got = run("/bin/sh", ["-c", "cd '\(mount.path(copy))' && find . -type f -exec sha256sum {} + | sort"], timeout: 300).out
            #expect(got == expected, "\(copy): contents differ")
            let gotStamps = run("/bin/sh", ["-c", "cd '\(mount.path(copy))' && find . -type f -printf '%P %T@\\n' | sort"]).out
            #expect(gotStamps.replacingOccurrences(of: ".0000000000", with: "") == stamps.replacingOccurrences(of: ".0000000000", with: ""),
                    "\(copy): mtimes differ")
        }
        #expect(expected.split(separator: "\n").count == 500)
    }

    @Test("kill -9 while 200 closed files upload, their unsynced staging copies then emptied (as power loss may leave them): after a restart every file is on the server exactly once, intact; nothing stuck",
          arguments: ["durable", "crashsafe"])
    func crashResume(closeMode: String) throws {
        let server = try populatedServer { _ in }
        defer { server.stop() }
        // Uploads start 3 s after each close: the first files are uploading or uploaded when
        // the kill comes, the last ones surely pending. With close=crashsafe the small files'
        // journal commits were never fsynced either: a kill -9 must not lose them (only a
        // power cut may).
        var mount = try MountedServer(server, options: ["upload_delay=3", "close=\(closeMode)"])
        defer { mount.unmount() }
        // The manifest: what close() promised, kept (fsync'd) outside the mount.
        var manifest: [String: [UInt8]] = [:]
        var rng = SeededGenerator(seed: 3)
        for i in 0..<200 {
            // Mostly small files (kept in the journal at close, their staging copies never
            // fsynced), every 40th one larger than that (fsynced in place).
            let size = i % 40 == 39 ? 300_000 + i * 1000 : i * 997 + 1
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Plain open/write/close: Foundation's Data.write may fsync, which uploads at once.
            #expect(Posix.create(mount.path("c\(i).bin"), bytes))
            manifest["c\(i).bin"] = bytes
        }
        let manifestFile = server.dataDir.appendingPathComponent("manifest.json")
        try JSONSerialization.data(withJSONObject: manifest.mapValues { $0.count }).write(to: manifestFile)
        let fd = open(manifestFile.path, O_RDONLY)
        fsync(fd)
        close(fd)
        mount.kill()

        let uploadedBefore = (try? FileManager.default.contentsOfDirectory(atPath: server.filesDir.path).count) ?? 0
        let status = runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user])
        let pending = Int(status.out.prefix { $0.isNumber }) ?? 0
        try #require(pending > 0, "the kill hit nothing pending (\(uploadedBefore) uploaded already): \(status.out)")

        // A kill -9 leaves the page cache intact; power loss may not. A staging copy that was
        // never fsynced (a small file, whose bytes the journal holds) may come back empty:
        // empty them all, and the restart must rebuild them from the journal.
        let staging = try #require(FileManager.default.enumerator(at: server.dataDir, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.first { $0.lastPathComponent == "staging" }, "the staging folder")
        var emptied = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: staging.path) {
            let path = staging.appendingPathComponent(name).path
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            if size <= 256 << 10 {
                #expect(truncate(path, 0) == 0)
                emptied += 1
            }
        }
        try #require(emptied > 0, "no small file was pending")

        mount = try MountedServer(server)
        #expect(mount.unmount() == 0, "every upload done at unmount")
        let names = try FileManager.default.contentsOfDirectory(atPath: server.filesDir.path).sorted()
        #expect(names == manifest.keys.sorted(), "exactly the manifest, once each (no conflict copies): \(names.count) files")
        for (name, bytes) in manifest {
            #expect(try Array(Data(contentsOf: server.filesDir.appendingPathComponent(name))) == bytes, "\(name)")
        }
        #expect(runNCFS(server, ["status", "--url", server.baseURL, "--user", server.user]).out.hasPrefix("nothing pending"))
    }

    @Test("server down for 30 s during a copy: the copy completes at local speed; every file reaches the server once it is back")
    func serverOutage() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("in/.keep"), []) }
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["drain_timeout=120"])
        defer { mount.unmount() }
        #expect(run("/bin/ls", [mount.path("in")]).status == 0, "the target folder is listed before the outage")
        server.stop()
        let down = Date()
        var files: [String: [UInt8]] = [:]
        for i in 0..<50 {
            let bytes = Array("file \(i) ".utf8) + [UInt8](repeating: UInt8(i), count: i * 100)
            files["f\(i).txt"] = bytes
            #expect(Posix.create(mount.path("in/f\(i).txt"), bytes), "write-back: creating with the server down")
        }
        #expect(Date().timeIntervalSince(down) < 10, "the copy returned while the server was down")
        while Date().timeIntervalSince(down) < 30 { usleep(200_000) }
        try server.start()
        #expect(mount.unmount() == 0, "every upload done once the server was back")
        for (name, bytes) in files {
            #expect(try Array(Data(contentsOf: server.filesDir.appendingPathComponent("in/\(name)"))) == bytes, "\(name)")
        }
    }

    @Test("folder times set by rsync -a and cp -a survive the uploads into those folders (the server raises a folder's mtime at every upload below it)")
    func folderTimesSurviveUploads() throws {
        try Self.folderTimesSurviveUploads(on: try populatedServer { _ in }, client: { try $0.client() }, stop: { $0.stop() })
    }

    static func folderTimesSurviveUploads<S: DAVServer>(on server: S, client makeClient: (S) throws -> WebDAVClient,
                                                       stop: (S) -> Void) throws {
        defer { stop(server) }
        let source = server.dataDir.appendingPathComponent("src")
        for i in 0..<12 { try write(source.appendingPathComponent("a/b\(i % 2)/f\(i).txt"), Array("file \(i)".utf8)) }
        _ = run("/bin/sh", ["-c", "find '\(source.path)' -exec touch -d '2019-05-06 07:08:09 UTC' {} +"])
        let mount = try MountedServer(server)
        defer { mount.unmount() }
        #expect(run("/usr/bin/rsync", ["-a", source.path + "/", mount.path("r") + "/"], timeout: 120).status == 0)
        #expect(run("/bin/cp", ["-a", source.path, mount.path("c")], timeout: 120).status == 0)
        #expect(mount.unmount() == 0, "every upload done")
        let client = try makeClient(server)
        let expected = Date(timeIntervalSince1970: 1_557_126_489)
        for folder in ["r/a", "r/a/b0", "r/a/b1", "c/a", "c/a/b0", "c/a/b1"] {
            let got = try client.stat(folder).lastModified
            #expect(got == expected, "\(folder): \(got.map { String($0.timeIntervalSince1970) } ?? "nil")")
        }
        #expect(try client.stat("r/a/b1/f3.txt").lastModified == expected)
    }

    @Test("fsync returns once the file is on the server; a change on the server meanwhile keeps both versions")
    func fsyncAndConflict() throws {
        let server = try populatedServer { files in try write(files.appendingPathComponent("shared.txt"), Array("v1".utf8)) }
        defer { server.stop() }
        let mount = try MountedServer(server, options: ["upload_delay=60"])
        defer { mount.unmount() }

        let fd = open(mount.path("synced.txt"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(Posix.write(fd, "durable") == 7)
        #expect(fsync(fd) == 0)
        #expect(try String(contentsOf: server.filesDir.appendingPathComponent("synced.txt"), encoding: .utf8) == "durable",
                "on the server when fsync returned, despite the 60 s upload delay")
        close(fd)

        // Open the server's v1 for writing, change it on the server meanwhile, then sync ours.
        let local = open(mount.path("shared.txt"), O_WRONLY | O_TRUNC | O_CLOEXEC)
        _ = try server.client().put("shared.txt", body: .bytes(Array("server v2".utf8)))
        #expect(Posix.write(local, "local v2") == 8)
        #expect(fsync(local) == 0)
        close(local)
        let names = try FileManager.default.contentsOfDirectory(atPath: server.filesDir.path)
        let conflict = names.first { $0.hasPrefix("shared (conflict ") && $0.hasSuffix(").txt") }
        #expect(conflict != nil, "\(names)")
        #expect(try String(contentsOf: server.filesDir.appendingPathComponent("shared.txt"), encoding: .utf8) == "server v2")
        if let conflict {
            #expect(try String(contentsOf: server.filesDir.appendingPathComponent(conflict), encoding: .utf8) == "local v2")
        }
    }
}

/// Small wrappers over the C calls the POSIX tests make.
enum Posix {
    static func write(_ fd: Int32, _ text: String) -> Int {
        Glibc.write(fd, text, text.utf8.count)
    }

    static func create(_ path: String, _ text: String) -> Bool {
        create(path, Array(text.utf8))
    }

    static func create(_ path: String, _ bytes: [UInt8]) -> Bool {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        guard fd >= 0 else { return false }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        return close(fd) == 0 && written == bytes.count
    }

    static func bytes(_ path: String) -> [UInt8] {
        (try? Array(Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
    }

    static func read(_ path: String) -> String {
        String(decoding: bytes(path), as: UTF8.self)
    }
}
