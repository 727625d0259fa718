// swift-tools-version:6.0
// ncfs — a Nextcloud media store as a local directory (FUSE), with an ingest pipeline.
//
// Layering (arrows point at what a target may import):
//   C shims  →  HTTPTransport  →  WebDAV  →  RemoteCache  →  FileSystem  →  FUSEBridge  →  ncfs
//   CSQLite  →  SQLiteStore  →  Journal (the upload journal, FileSystem's write-back)
//                            →  Ingest's catalog
//   FileSystemInterface (FSError, the incoming/ protocols, WorkerPool)  ←  FileSystem, Ingest
// Ingest never imports FileSystem; docs/ARCHITECTURE.md draws the whole picture.
// Each C library sits behind a system-library target whose shim.h holds the typed wrappers
// Swift cannot call directly (variadic functions, function-like macros, global function pointers).
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// glib's include folders, which <vips/vips.h> needs (Debian's multiarch layout).
#if arch(arm64)
let multiarch = "aarch64-linux-gnu"
#else
let multiarch = "x86_64-linux-gnu"
#endif
let vipsHeaders: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-I/usr/include/glib-2.0", "-Xcc", "-I/usr/lib/\(multiarch)/glib-2.0/include"]),
]

let package = Package(
    name: "ncfs",
    products: [
        .executable(name: "ncfs", targets: ["ncfs"]),
        .executable(name: "ncfs-derive", targets: ["ncfs-derive"]),
        // Hostile-input fuzzer (`scripts/fuzz`); a plain build makes it a corpus replay tool.
        .executable(name: "ncfs-fuzz", targets: ["ncfs-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // FileDescriptor (EINTR-retrying writes) for the CLI, and Errno (strerror text) wherever
        // a C call's failure is reported.
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // MARK: C libraries (system libraries found through pkg-config; apt names the Debian package)
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        // libvips without pkgConfig: its .pc pulls in glib's `-pthread`, which SwiftPM drops with a
        // warning on every build. Its headers need only glib's include folders (`vipsHeaders`).
        .systemLibrary(name: "CVips", providers: [.apt(["libvips-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // MARK: Layers
        .target(
            name: "HTTPTransport",
            dependencies: ["CCurl", .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "WebDAV",
            dependencies: ["HTTPTransport", "CLibXML2", "CCrypto", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "RemoteCache",
            dependencies: ["WebDAV", "HTTPTransport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // File content on local disk: the content cache (one sparse file per version), the
        // readers' fetch planning (streams, random misses, whole-file fetches) and the GETs
        // filling it. Beside RemoteCache, which holds the metadata.
        .target(
            name: "FileContent",
            dependencies: ["RemoteCache", "WebDAV", "HTTPTransport", "FileSystemInterface",
                           .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "FileSystem",
            dependencies: ["RemoteCache", "FileContent", "WebDAV", "Journal", "FileSystemInterface",
                           .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "FUSEBridge",
            dependencies: ["CFuse3", "FileSystem", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // What the filesystem and the ingest pipeline both speak, so that Ingest need not import
        // FileSystem: the error type (and its errno), the incoming/ folder's two protocols, and
        // the worker pool both run blocking jobs on. FileSystem re-exports it.
        .target(
            name: "FileSystemInterface",
            dependencies: ["WebDAV", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // SQLite as Swift: a connection, typed values and rows, transactions, durability levels.
        // Knows no schema; the upload journal and the ingest catalog are built on it.
        .target(
            name: "SQLiteStore",
            dependencies: ["CSQLite", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        // The upload journal (the write-back's durable record of what the server is owed).
        .target(
            name: "Journal",
            dependencies: ["SQLiteStore", "CSQLite"],
            swiftSettings: strict
        ),
        // The JSON `ncfs-derive` prints and the pipeline reads: one definition for both sides,
        // in a target of its own so the daemon does not link libvips to read it.
        .target(
            name: "DerivationFormat",
            swiftSettings: strict
        ),
        // Image derivatives with libvips. Runs in its own process (`ncfs-derive`), so a decoder
        // crash or a huge image never takes the mount down, and each worker's memory is its own.
        .target(
            name: "Imaging",
            dependencies: ["CVips", "DerivationFormat", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict + vipsHeaders,
            linkerSettings: [.linkedLibrary("gobject-2.0"), .linkedLibrary("glib-2.0")]
        ),
        .executableTarget(
            name: "ncfs-derive",
            dependencies: ["Imaging"],
            swiftSettings: strict
        ),
        // The incoming/ pipeline: catalog, date paths, uploads, derivatives (through
        // `ncfs-derive`, so the daemon itself never links libvips), repair.
        .target(
            name: "Ingest",
            dependencies: ["SQLiteStore", "WebDAV", "HTTPTransport", "FileSystemInterface", "CCrypto", "DerivationFormat",
                           .product(name: "Logging", package: "swift-log"), .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ncfs",
            dependencies: [
                "WebDAV", "HTTPTransport", "RemoteCache", "FileSystem", "FUSEBridge", "Journal", "Ingest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // MARK: Hostile input
        // The invariants every parse of server bytes must keep, shared by the fuzzer and
        // WebDAVTests' hostile-input suite.
        .target(
            name: "WebDAVInvariants",
            dependencies: ["WebDAV"],
            swiftSettings: strict
        ),
        // libFuzzer entry point when built with `--sanitize fuzzer -Xswiftc -DNCFS_LIBFUZZER`
        // (only `scripts/fuzz` does, in its own scratch path); otherwise a replay tool.
        .executableTarget(
            name: "ncfs-fuzz",
            dependencies: ["WebDAVInvariants"],
            swiftSettings: strict
        ),

        // MARK: Tests
        .target(
            name: "TestSupport",
            dependencies: ["WebDAV", "HTTPTransport", "FileSystemInterface"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "HTTPTransportTests",
            dependencies: ["HTTPTransport", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WebDAVTests",
            dependencies: ["WebDAV", "WebDAVInvariants", "TestSupport"],
            resources: [.copy("Fixtures"), .copy("Hostile")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FileSystemTests",
            dependencies: ["FileSystem", "FileContent", "RemoteCache", "WebDAV", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MountTests",
            dependencies: ["WebDAV", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ImagingTests",
            dependencies: ["Imaging", "DerivationFormat"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IngestTests",
            dependencies: ["Ingest", "SQLiteStore", "FileSystemInterface", "WebDAV", "TestSupport", "DerivationFormat",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "JournalTests",
            dependencies: ["Journal", "SQLiteStore"],
            swiftSettings: strict
        ),
    ]
)
