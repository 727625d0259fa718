import Foundation
internal import CCurl
internal import SystemPackage

/// libcurl's process-wide setup. `curl_global_init` is not thread-safe, so it runs once, from
/// a lazily initialised global (Swift guarantees that runs exactly once).
private let curlGlobalInit: Void = {
    _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}()

/// One libcurl easy handle. Confined: a handle is used by one thread at a time (the pool hands
/// it out and takes it back), which is all libcurl asks. The handle keeps its connection cache
/// across `curl_easy_reset`, so reusing handles is what reuses TCP/TLS connections.
final class CurlEasy {
    let handle: UnsafeMutableRawPointer
    /// libcurl's CURLOPT_ERRORBUFFER: the specific reason behind a CURLcode ("SSL certificate
    /// problem: certificate has expired", "no alternative certificate subject name matches
    /// target host name …") where `curl_easy_strerror` only says "SSL peer certificate … was not
    /// OK". Owned by the handle and freed after it, since libcurl may write to it until cleanup.
    private let errorBuffer: UnsafeMutablePointer<CChar>

    init() {
        _ = curlGlobalInit
        guard let h = curl_easy_init() else { fatalError("curl_easy_init failed (out of memory)") }
        handle = h
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// What may end an attempt besides the transport's own timeouts.
    struct Limits {
        /// Polled by libcurl's progress callback (at least once a second): true aborts the
        /// transfer with `HTTPError.cancelled`.
        var abort: (() -> Bool)?
        /// The longest this attempt may take (on top of the request's own `timeout`).
        var timeout: Duration?
    }

    /// Runs one attempt of `request`. Throws `HTTPError` for transport failures and rethrows what
    /// a `.stream` sink threw; any HTTP status is a successful return.
    func perform(
        _ request: HTTPRequest,
        configuration: HTTPClientConfiguration,
        sink: ResponseSink,
        progress: ((Int64, Int64) -> Void)?,
        limits: Limits = Limits()
    ) throws -> AttemptOutcome {
        curl_easy_reset(handle)
        let ctx = try TransferContext(request: request, sink: sink, progress: progress)
        ctx.abort = limits.abort
        defer { ctx.close() }
        let unmanaged = Unmanaged.passUnretained(ctx).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        for (name, value) in request.headers {
            headerList = curl_slist_append(headerList, "\(name): \(value)")
        }
        // libcurl adds "Expect: 100-continue" to bodies over 1 MiB; keep it (a 401 or 507 then
        // costs no upload), but not for small bodies where it only adds a round trip.
        if request.body.length > 0 && request.body.length < (1 << 20) && request.headers["Expect"] == nil {
            headerList = curl_slist_append(headerList, "Expect:")
        }

        errorBuffer[0] = 0
        _ = ncfs_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        try check(ncfs_curl_setopt_string(handle, CURLOPT_URL, request.url))
        _ = ncfs_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        // 256 KiB receive buffer (default 16 KiB): a sixteenth of the write callbacks on bulk
        // downloads, for 4 MiB across a full pool of handles.
        _ = ncfs_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 256 << 10)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        // libcurl resends a request by itself when a reused connection dies before the first
        // byte of the answer ("Connection died, retrying a fresh connect"): right for a stale
        // idle connection, wrong for a MOVE/COPY/MKCOL/POST the server may already have applied
        // (the copy then answers 404 or 405 for an operation that succeeded, or a POST happens
        // twice). Such requests get a new connection, on which libcurl never resends; the
        // connection joins the pool afterwards, so idempotent requests reuse it.
        if !request.idempotent { _ = ncfs_curl_setopt_long(handle, CURLOPT_FRESH_CONNECT, 1) }
        _ = ncfs_curl_setopt_long(handle, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        _ = ncfs_curl_setopt_string(handle, CURLOPT_USERAGENT, configuration.userAgent)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, configuration.connectTimeout.milliseconds)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, configuration.lowSpeedBytesPerSecond)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, configuration.stallTimeout.milliseconds / 1000))
        if let timeout = [request.timeout, limits.timeout].compactMap({ $0 }).min() {
            _ = ncfs_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, timeout.milliseconds))
        }
        _ = ncfs_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, configuration.verifyTLS ? 1 : 0)
        _ = ncfs_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, configuration.verifyTLS ? 2 : 0)
        if let ca = configuration.caFile { _ = ncfs_curl_setopt_string(handle, CURLOPT_CAINFO, ca) }
        if let pin = configuration.pinnedPublicKey { _ = ncfs_curl_setopt_string(handle, CURLOPT_PINNEDPUBLICKEY, pin) }
        if request.acceptCompressed { _ = ncfs_curl_setopt_string(handle, CURLOPT_ACCEPT_ENCODING, "") }
        if let credentials = configuration.credentials {
            _ = ncfs_curl_setopt_long(handle, CURLOPT_HTTPAUTH, ncfs_curlauth_basic())
            _ = ncfs_curl_setopt_string(handle, CURLOPT_USERNAME, credentials.user)
            _ = ncfs_curl_setopt_string(handle, CURLOPT_PASSWORD, credentials.password)
        }
        _ = ncfs_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)

        switch request.method.uppercased() {
        case "GET": _ = ncfs_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)
        case "HEAD": _ = ncfs_curl_setopt_long(handle, CURLOPT_NOBODY, 1)
        default: _ = ncfs_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method)
        }
        if request.body.length > 0 || request.method.uppercased() == "PUT" {
            // Every body goes through the read callback with a known size, so PROPFIND bodies,
            // PUTs from files and form POSTs share one path (UPLOAD + CUSTOMREQUEST keeps the verb).
            _ = ncfs_curl_setopt_long(handle, CURLOPT_UPLOAD, 1)
            _ = ncfs_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length))
            _ = ncfs_curl_setopt_data_cb(handle, CURLOPT_READFUNCTION, transferRead)
            _ = ncfs_curl_setopt_pointer(handle, CURLOPT_READDATA, unmanaged)
            _ = ncfs_curl_setopt_seek_cb(handle, transferSeek)
            _ = ncfs_curl_setopt_pointer(handle, CURLOPT_SEEKDATA, unmanaged)
            if request.method.uppercased() != "PUT" {
                _ = ncfs_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method)
            }
        }
        _ = ncfs_curl_setopt_data_cb(handle, CURLOPT_HEADERFUNCTION, transferHeader)
        _ = ncfs_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, unmanaged)
        _ = ncfs_curl_setopt_data_cb(handle, CURLOPT_WRITEFUNCTION, transferWrite)
        _ = ncfs_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged)
        if progress != nil || limits.abort != nil {
            _ = ncfs_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
            _ = ncfs_curl_setopt_xferinfo_cb(handle, transferProgress)
            _ = ncfs_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, unmanaged)
        }

        let code = curl_easy_perform(handle)
        if let thrown = ctx.thrown { throw thrown }
        if code != CURLE_OK { return .failed(mapCurlError(code, ctx: ctx), delivered: ctx.delivered) }

        var status = 0
        _ = ncfs_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var connects = 0
        _ = ncfs_curl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &connects)
        do { try ctx.finishFile() } catch let error as HTTPError { return .failed(error, delivered: true) }
        let response = HTTPResponse(
            status: status,
            headers: ctx.headers,
            body: ctx.memory,
            bytesReceived: ctx.received,
            attempts: 1,
            openedConnection: connects > 0
        )
        return .answered(response, delivered: ctx.delivered)
    }

    private func check(_ code: CURLcode) throws {
        if code != CURLE_OK { throw HTTPError.invalidURL(String(cString: curl_easy_strerror(code))) }
    }

    private func mapCurlError(_ code: CURLcode, ctx: TransferContext) -> HTTPError {
        let detail = String(cString: errorBuffer).trimmingCharacters(in: .whitespacesAndNewlines)
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return .timedOut(message: message)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            return .tlsVerificationFailed(message: message)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .invalidURL(message)
        case CURLE_WRITE_ERROR where ctx.overLimit:
            return .responseTooLarge(limit: ctx.memoryLimit)
        case CURLE_ABORTED_BY_CALLBACK, CURLE_READ_ERROR:
            if let e = ctx.bodyError { return e }
            if ctx.aborted { return .cancelled }
            return .transport(code: Int(code.rawValue), message: message)
        default:
            return .transport(code: Int(code.rawValue), message: message)
        }
    }
}

/// What one attempt produced. `delivered` says whether body bytes already went to a file or
/// stream sink, in which case the attempt cannot be repeated transparently.
enum AttemptOutcome {
    case answered(HTTPResponse, delivered: Bool)
    case failed(HTTPError, delivered: Bool)
}

extension Duration {
    var milliseconds: Int {
        Int(components.seconds) * 1000 + Int(components.attoseconds / 1_000_000_000_000_000)
    }
}

/// Per-attempt state shared with the C callbacks through `Unmanaged` userdata. It lives on the
/// stack frame of `CurlEasy.perform`, and libcurl calls back only from inside
/// `curl_easy_perform` on that same thread, so no synchronisation is needed.
private final class TransferContext {
    let body: HTTPRequestBody
    var bodyPosition: Int64 = 0
    var bodyFD: Int32 = -1
    var bodyError: HTTPError?

    let sink: ResponseSink
    let memoryLimit: Int
    let progress: ((Int64, Int64) -> Void)?
    /// `Limits.abort`, and whether it ended the transfer.
    var abort: (() -> Bool)?
    var aborted = false
    var headers = HTTPHeaders()
    var status = 0
    var memory: [UInt8] = []
    var received: Int64 = 0
    var delivered = false
    var overLimit = false
    var thrown: (any Error)?
    var outFD: Int32 = -1
    var outPath: String?
    var tempPath: String?

    /// Error bodies are kept for parsing but capped: a proxy's HTML page can be large.
    static let errorBodyLimit = 64 << 10

    init(request: HTTPRequest, sink: ResponseSink, progress: ((Int64, Int64) -> Void)?) throws {
        body = request.body
        self.sink = sink
        self.progress = progress
        if case .memory(let limit) = sink { memoryLimit = limit } else { memoryLimit = TransferContext.errorBodyLimit }
        if case .file(let path, _, _) = body {
            bodyFD = open(path, O_RDONLY | O_CLOEXEC)
            if bodyFD < 0 { throw HTTPError.bodyUnreadable(path: path, errno: errno) }
        }
    }

    func close() {
        if bodyFD >= 0 { _ = Glibc.close(bodyFD); bodyFD = -1 }
        if outFD >= 0 { _ = Glibc.close(outFD); outFD = -1 }
        if let tempPath { unlink(tempPath) }
    }

    var successful: Bool { (200..<300).contains(status) }

    // MARK: request body

    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        switch body {
        case .empty:
            return 0
        case .bytes(let bytes):
            let n = min(capacity, bytes.count - Int(bodyPosition))
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { src in
                UnsafeMutableRawPointer(buffer).copyMemory(from: src.baseAddress! + Int(bodyPosition), byteCount: n)
            }
            bodyPosition += Int64(n)
            return n
        case .file(let path, let offset, let length):
            let want = min(Int64(capacity), length - bodyPosition)
            guard want > 0 else { return 0 }
            while true {
                let n = pread(bodyFD, buffer, Int(want), off_t(offset + bodyPosition))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    // A short file would make the server answer 400 for a length mismatch; stop now.
                    bodyError = .bodyUnreadable(path: path, errno: n < 0 ? errno : EIO)
                    return ncfs_curl_readfunc_abort()
                }
                bodyPosition += Int64(n)
                return n
            }
        }
    }

    func seek(to offset: Int64) -> Bool {
        guard offset >= 0, offset <= body.length else { return false }
        bodyPosition = offset
        return true
    }

    // MARK: response

    func header(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("HTTP/") {
            // A new status line (after 100 Continue or a 401 challenge): start over.
            headers = HTTPHeaders()
            let parts = trimmed.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            return
        }
        guard let colon = trimmed.firstIndex(of: ":") else { return }
        let name = String(trimmed[..<colon])
        let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers.add(name, value)
    }

    /// Returns false to abort the transfer.
    func write(_ chunk: UnsafeRawBufferPointer) -> Bool {
        received += Int64(chunk.count)
        guard successful else {
            // Error bodies never reach a file or stream: they are kept (capped) for parsing.
            if memory.count < TransferContext.errorBodyLimit {
                memory.append(contentsOf: chunk.prefix(TransferContext.errorBodyLimit - memory.count))
            }
            return true
        }
        switch sink {
        case .memory(let limit):
            if memory.count + chunk.count > limit { overLimit = true; return false }
            memory.append(contentsOf: chunk)
        case .file(let path):
            if outFD < 0 {
                // Written to a temporary name and renamed at the end, so a failed transfer never
                // leaves a half file under the real name.
                let temp = path + ".ncfs-partial-\(getpid())"
                outFD = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                if outFD < 0 { thrown = HTTPError.sinkFailed(message: "\(temp): \(Errno(rawValue: errno).description)"); return false }
                tempPath = temp
                outPath = path
            }
            var offset = 0
            while offset < chunk.count {
                let n = Glibc.write(outFD, chunk.baseAddress! + offset, chunk.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { thrown = HTTPError.sinkFailed(message: Errno(rawValue: errno).description); return false }
                offset += n
            }
            delivered = true
        case .stream(let consume):
            do {
                delivered = true
                try consume(chunk)
            } catch {
                thrown = error
                return false
            }
        }
        return true
    }

    /// Moves a completed file sink into place (an empty 2xx body still creates the file).
    func finishFile() throws {
        guard case .file(let path) = sink, successful else { return }
        if outFD < 0 {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if fd < 0 { throw HTTPError.sinkFailed(message: "\(path): \(Errno(rawValue: errno).description)") }
            _ = Glibc.close(fd)
            return
        }
        _ = Glibc.close(outFD)
        outFD = -1
        if let tempPath, rename(tempPath, path) != 0 {
            throw HTTPError.sinkFailed(message: "\(path): \(Errno(rawValue: errno).description)")
        }
        tempPath = nil
    }
}

// MARK: C callbacks (no captures: they find their context through the userdata pointer)

private func context(_ userdata: UnsafeMutableRawPointer?) -> TransferContext {
    Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
}

private let transferRead: ncfs_curl_data_cb = { buffer, size, count, userdata in
    let ctx = context(userdata)
    return ctx.read(into: buffer!, capacity: size * count)
}

private let transferSeek: ncfs_curl_seek_cb = { userdata, offset, origin in
    guard origin == SEEK_SET else { return ncfs_curl_seekfunc_fail() }
    return context(userdata).seek(to: Int64(offset)) ? ncfs_curl_seekfunc_ok() : ncfs_curl_seekfunc_fail()
}

private let transferHeader: ncfs_curl_data_cb = { buffer, size, count, userdata in
    let n = size * count
    let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: n), as: UTF8.self)
    context(userdata).header(line)
    return n
}

private let transferWrite: ncfs_curl_data_cb = { buffer, size, count, userdata in
    let n = size * count
    let ok = context(userdata).write(UnsafeRawBufferPointer(start: buffer, count: n))
    return ok ? n : 0
}

private let transferProgress: ncfs_curl_xferinfo_cb = { userdata, _, _, ultotal, ulnow in
    let ctx = context(userdata)
    if let abort = ctx.abort, abort() {
        ctx.aborted = true
        return 1
    }
    ctx.progress?(Int64(ulnow), Int64(ultotal))
    return 0
}
