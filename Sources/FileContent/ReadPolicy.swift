public import Foundation

/// Where read file content is kept on disk, keyed by file id + ETag, least recently used
/// evicted first once `limit` bytes are exceeded.
public struct ContentCacheOptions: Sendable {
    /// The cache folder (created 0700). nil: a private folder under the system's temporary
    /// directory, removed when the filesystem is closed.
    public var directory: URL?
    /// Bytes of content kept; a file larger than this is still read through the cache but
    /// evicted as soon as it is closed.
    public var limit: Int64 = 2 << 30
    public init() {}
}

/// How reads fetch (see `ReadStream` for the state machine).
///
/// A sequential reader gets one GET streaming from where it reads to the end of the file
/// (the Range header names the end, which is what an open-ended `bytes=N-` asks for with a
/// known size): a request costs a real server tens of milliseconds before its first byte
/// (PHP, authentication, file cache lookup), so window after window of GETs never reaches
/// the stream rate. The stream may run `initialWindow` (1 MiB) ahead of its readers at
/// first, then as far ahead as they have read since it began, up to `streamAhead` (32 MiB:
/// 80 ms at 400 MB/s, enough to ride out a reader's pauses, while a `head` of a large file
/// that closes early costs little). Past that the stream waits for its readers
/// (back-pressure: the socket fills and the server waits); a stream kept waiting longer
/// than `parkLimit` (2 s) ends, and the reader's next read starts another. Not longer:
/// Nextcloud holds a shared lock on a file while a GET of it runs, and anyone's upload
/// of that file meanwhile fails with 423 Locked. A read away
/// from the stream (a seek) cancels it. A read up to `sequentialSlack` (8 MiB) past the
/// previous one still counts as sequential: the kernel's readahead sends reads for its
/// whole window at once (`read_ahead_kb`, 128 KiB by default, often raised to a few MiB),
/// and FUSE workers answer them in any order.
///
/// Random reads fetch the asked range rounded up to `randomGranule` (128 KiB, the kernel's
/// usual largest FUSE read). The second random read of a file of at most `wholeFileMax`
/// bytes starts one background GET of the whole file (of the part not held yet), once per
/// version: after that every read is local. Until the whole-file GET gets to a read's
/// offset, the read is served by its own ranged GET, unless the whole-file GET will get
/// there sooner than a ranged GET usually answers. 256 MiB: at 100 MB/s a second or two
/// of transfer, against a ranged GET per miss at tens of milliseconds each on a real
/// server (64 misses already cost more); davfs2 downloads every file whole on open.
/// Only from a server whose ranged GETs take `wholeFileMinLatency` (10 ms) or more, as
/// measured on this mount's random reads: one that answers sooner (a LAN server with
/// little work per request) serves each miss about as fast as it would stream the whole
/// file, and a whole-file GET would only compete with the misses.
///
/// A read that has not got its bytes after `timeout` seconds fails with EIO (the reader
/// client's own stall and retry limits normally end a failing fetch sooner; this bounds
/// every wait).
public struct ReadAhead: Sendable {
    public var initialWindow: Int64 = 1 << 20
    public var streamAhead: Int64 = 32 << 20
    public var sequentialSlack: Int64 = 8 << 20
    public var parkLimit: Double = 2
    public var randomGranule: Int64 = 128 << 10
    public var wholeFileMax: Int64 = 256 << 20
    public var wholeFileMinLatency: Double = 0.01
    public var timeout: Double = 30
    public init() {}
}

