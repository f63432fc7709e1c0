import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Why a TCP exchange failed.
public enum ConnectOutcome: Sendable, Equatable {
    case replied(String)
    case refused
    case timedOut
    case failed(String)

    /// What `lab status` shows: the reply line, "refused", "timeout" or the error.
    public var text: String {
        switch self {
        case .replied(let line): return line
        case .refused: return "refused"
        case .timedOut: return "timeout"
        case .failed(let why): return why
        }
    }

    /// ECONNREFUSED is an answer (nothing listens); any other errno is a failure, in the kernel's words.
    init(_ error: Errno) {
        self = error == .connectionRefused ? .refused : .failed("\(error)")
    }
}

/// Connects from inside `namespace` to address:port, reads one line, and closes: what `nc ADDR PORT` shows.
public func fetchLine(in namespace: NetworkNamespace, from source: IPAddress? = nil, to address: IPAddress,
                      port: UInt16, timeoutMilliseconds: Int32) -> ConnectOutcome {
    let target = SocketAddress(address, port: port)
    let fd: Int32
    do {
        fd = try namespace.socket(domain: target.domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                  protocol: 0)
    } catch {
        return .failed(error.description)
    }
    defer { close(fd) }
    if let source, case .failure(let error) = syscall({ SocketAddress(source, port: 0).withSockaddr { bind(fd, $0, $1) } }) {
        return .failed("bind \(source): \(error)")
    }
    // A non-blocking connect: EINPROGRESS means under way (not retried on EINTR: that would be EALREADY).
    let connected = syscall(retryOnInterrupt: false) { target.withSockaddr { connect(fd, $0, $1) } }
    if case .failure(let error) = connected, error != .nowInProgress { return ConnectOutcome(error) }

    // Wait for the connection, then for the reply line (or EOF).
    let start = monotonicMilliseconds()
    func wait(for events: Int32) -> Bool {
        var ready = pollfd(fd: fd, events: Int16(events), revents: 0)
        let left = timeoutMilliseconds - Int32(clamping: monotonicMilliseconds() - start)
        guard left > 0, case .success(let n) = syscall({ poll(&ready, 1, left) }) else { return false }
        return n > 0
    }
    if case .failure = connected {
        guard wait(for: POLLOUT) else { return .timedOut }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
        if soError != 0 { return ConnectOutcome(Errno(rawValue: soError)) }
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 512)
    while true {
        guard wait(for: POLLIN) else { return .timedOut }
        switch syscall({ buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }) {
        case .success(0):
            break
        case .success(let n):
            received += buffer[0..<n]
            if received.contains(UInt8(ascii: "\n")) { break }
            continue
        case .failure(.resourceTemporarilyUnavailable):
            continue
        case .failure(let error):
            return ConnectOutcome(error)
        }
        break
    }
    let line = String(decoding: received.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    return .replied(line)
}
