import ArgumentParser
import Foundation
import HTTPTransport
import SystemPackage
import WebDAV

struct List: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List a folder (one PROPFIND Depth: 1).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .short, help: "Long format: permissions, size (folders: recursive size), modified time.") var long = false
    @Flag(name: .short, help: "Human-readable sizes.") var human = false
    @Flag(name: .long, help: "JSON output.") var json = false
    @Argument(help: "Folder or file (default: the root).") var path: String = ""

    func run(client: WebDAVClient) throws {
        let entries: [DAVResource]
        let first = try client.propfind(path, depth: .one)
        let target = DAVLocation.normalize(path)
        if let me = first.first(where: { $0.path == target }), !me.isCollection {
            entries = [me]
        } else {
            entries = first.filter { $0.path != target }.sorted { $0.name < $1.name }
        }
        if json { try JSONOutput.print(entries.map(ResourceJSON.init)); return }
        var out = ""
        for e in entries {
            let name = e.name + (e.isCollection ? "/" : "")
            if long {
                let kind = e.isCollection ? "d" : "-"
                let size = Format.size(e.isCollection ? e.size : (e.contentLength ?? e.size), human: human)
                out += "\(kind)\((e.permissions ?? "").padding(toLength: 8, withPad: " ", startingAt: 0)) \(size.leftPadded(12)) \(Format.date(e.lastModified)) \(name)\n"
            } else {
                out += name + "\n"
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

struct Stat: RemoteCommand {
    static let configuration = CommandConfiguration(abstract: "Show one file's or folder's properties (one PROPFIND Depth: 0).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "JSON output.") var json = false
    @Argument var path: String = ""

    func run(client: WebDAVClient) throws {
        let r = try client.stat(path)
        if json {
            var o = ResourceJSON(r)
            if !r.checksums.isEmpty { o.checksums = r.checksums }
            try JSONOutput.print(o)
            return
        }
        let size = Format.size(r.isCollection ? r.size : (r.contentLength ?? r.size), human: false)
        let lines = [
            ("path", "/" + r.path),
            ("type", r.isCollection ? "folder" : "file"),
            ("size", size + (r.isCollection ? " (recursive)" : "")),
            ("modified", Format.date(r.lastModified)),
            ("etag", r.etag ?? "-"),
            ("fileid", r.fileID.map(String.init) ?? "-"),
            ("permissions", r.permissions ?? "-"),
        ]
        for (key, value) in lines { print("\(key.leftPadded(11)): \(value)") }
    }
}

struct DiskUsage: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "du", abstract: "A folder's total size from the server (one request, any tree size).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .short, help: "Human-readable size.") var human = false
    @Argument var path: String = ""

    func run(client: WebDAVClient) throws {
        let r = try client.stat(path, properties: .etagAndSize)
        guard let size = r.isCollection ? r.size : (r.size ?? r.contentLength) else {
            throw CLIError(message: "the server does not report folder sizes (no oc:size: not Nextcloud?); run `du -s` on a mount instead")
        }
        print("\(Format.size(size, human: human))\t/\(r.path)")
    }
}

struct Get: RemoteCommand {
    static let configuration = CommandConfiguration(abstract: "Download a file (to LOCAL, or stdout with -).")
    @OptionGroup var connection: ConnectionOptions
    @Argument var remote: String
    @Argument(help: "Local path (default: the file's name in the current folder; - for stdout).") var local: String?

    func run(client: WebDAVClient) throws {
        let name = DAVLocation.normalize(remote).split(separator: "/").last.map(String.init) ?? "download"
        let target = local ?? name
        if target == "-" {
            try client.get(remote, range: nil, sink: .stream({ chunk in
                // writeAll goes on after short writes and EINTR.
                do { _ = try FileDescriptor.standardOutput.writeAll(chunk) } catch {
                    throw CLIError(message: "cannot write to stdout: \(error)")
                }
            }))
            return
        }
        var isDir: ObjCBool = false
        let path = FileManager.default.fileExists(atPath: target, isDirectory: &isDir) && isDir.boolValue ? target + "/" + name : target
        let bar = ProgressBar(name)
        try client.download(remote, to: path, progress: { now, total in bar.update(now, total) })
        bar.finish()
        // Keep the server's modification time, as `cp -p` would.
        if let modified = try? client.stat(remote).lastModified {
            try? FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: path)
        }
    }
}

struct Put: RemoteCommand {
    static let configuration = CommandConfiguration(abstract: "Upload a file (chunked above --chunk-size), keeping its modification time.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Chunk size in MiB; larger files use Nextcloud's chunked upload.") var chunkSize: Int = 10
    @Option(help: "Chunks uploaded in parallel.") var parallel: Int = 3
    @Flag(name: .long, help: "Fail instead of replacing an existing file.") var noClobber = false
    @Argument var local: String
    @Argument(help: "Remote path (a folder keeps the local name).") var remote: String

    func run(client: WebDAVClient) throws {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: local),
              (attributes[.type] as? FileAttributeType) == .typeRegular else {
            throw CLIError(message: "\(local): not a regular file", code: 1)
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let mtime = attributes[.modificationDate] as? Date
        var target = DAVLocation.normalize(remote)
        if remote.hasSuffix("/") || target.isEmpty || ((try? client.stat(target))?.isCollection ?? false) {
            target = (target.isEmpty ? "" : target + "/") + URL(fileURLWithPath: local).lastPathComponent
        }
        let conditions = WebDAVClient.WriteConditions(createOnly: noClobber)
        let bar = ProgressBar(URL(fileURLWithPath: local).lastPathComponent)
        let chunk = Int64(max(1, chunkSize)) << 20
        _ = try client.sendFile(local, to: target, size: size, mtime: mtime, conditions: conditions, chunkAbove: chunk, chunkOptions: {
            var options = WebDAVClient.ChunkedUploadOptions()
            options.chunkSize = chunk
            options.parallelism = max(1, parallel)
            return options
        }, progress: { now, total in bar.update(now, total) })
        bar.finish()
    }
}

struct MakeDirectory: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "mkdir", abstract: "Create a folder (MKCOL).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .short, help: "Create missing parents; an existing folder is not an error.") var parents = false
    @Argument var path: String

    func run(client: WebDAVClient) throws {
        let target = DAVLocation.normalize(path)
        guard parents else { try client.mkcol(target); return }
        var prefix = ""
        for part in target.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            do { try client.mkcol(prefix) } catch let e as DAVError where e.kind == .alreadyExists {}
        }
    }
}

struct Move: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "mv", abstract: "Rename or move (MOVE; the file id is kept).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Fail instead of replacing an existing target.") var noClobber = false
    @Argument var source: String
    @Argument var target: String
    func run(client: WebDAVClient) throws { try client.move(source, to: target, overwrite: !noClobber) }
}

struct Copy: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "cp", abstract: "Copy on the server (COPY).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .long, help: "Fail instead of replacing an existing target.") var noClobber = false
    @Argument var source: String
    @Argument var target: String
    func run(client: WebDAVClient) throws { try client.copy(source, to: target, overwrite: !noClobber) }
}

struct Remove: RemoteCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete (into the Nextcloud trash bin).")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .short, help: "Allow deleting folders (with everything inside).") var recursive = false
    @Flag(name: .long, help: "Skip the trash bin (Nextcloud 31+).") var permanent = false
    @Argument var path: String

    func run(client: WebDAVClient) throws {
        let target = DAVLocation.normalize(path)
        if target.isEmpty { throw CLIError(message: "refusing to delete the root folder", code: 8) }
        if !recursive, try client.stat(target).isCollection {
            throw CLIError(message: "/\(target) is a folder; use -r to delete it and everything inside", code: 1)
        }
        try client.delete(target, permanently: permanent)
    }
}

struct Trash: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The Nextcloud trash bin.", subcommands: [TrashList.self, TrashRestore.self, TrashRemove.self, TrashEmpty.self])

    struct TrashList: RemoteCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List deleted items.")
        @OptionGroup var connection: ConnectionOptions
        @Flag(name: .long, help: "JSON output.") var json = false
        func run(client: WebDAVClient) throws {
            let items = try client.trashList().sorted { ($0.trash?.deletionTime ?? .distantPast) > ($1.trash?.deletionTime ?? .distantPast) }
            if json {
                try JSONOutput.print(items.map { r in
                    var o = ResourceJSON(r)
                    o.trash = .init(item: r.path, originalLocation: r.trash?.originalLocation, deleted: r.trash?.deletionTime)
                    return o
                })
                return
            }
            for r in items {
                print("\(r.path)\t\(Format.date(r.trash?.deletionTime))\t/\(r.trash?.originalLocation ?? r.name)")
            }
        }
    }

    struct TrashRestore: RemoteCommand {
        static let configuration = CommandConfiguration(commandName: "restore", abstract: "Restore an item (name from `trash list`) to where it was.")
        @OptionGroup var connection: ConnectionOptions
        @Argument var item: String
        func run(client: WebDAVClient) throws { try client.trashRestore(item) }
    }

    struct TrashRemove: RemoteCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete one item from the trash bin for good.")
        @OptionGroup var connection: ConnectionOptions
        @Argument var item: String
        func run(client: WebDAVClient) throws { try client.trashDelete(item) }
    }

    struct TrashEmpty: RemoteCommand {
        static let configuration = CommandConfiguration(commandName: "empty", abstract: "Delete everything in the trash bin for good.")
        @OptionGroup var connection: ConnectionOptions
        func run(client: WebDAVClient) throws { try client.trashDelete(nil) }
    }
}

struct Search: RemoteCommand {
    static let configuration = CommandConfiguration(abstract: "Find files by name (server-side SEARCH; % and _ are wildcards, otherwise a substring match).")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Only below this folder.") var under: String = ""
    @Option(help: "At most this many results.") var limit: Int = 500
    @Flag(name: .long, help: "JSON output.") var json = false
    @Argument var pattern: String

    func run(client: WebDAVClient) throws {
        let like = pattern.contains("%") || pattern.contains("_") ? pattern : "%\(pattern)%"
        let results = try client.search(name: like, under: under, limit: limit).sorted { $0.path < $1.path }
        if json { try JSONOutput.print(results.map(ResourceJSON.init)); return }
        for r in results { print("/" + r.path + (r.isCollection ? "/" : "")) }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
