import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A TCP socket address for an IP address and port.
public func withSocketAddress<T>(_ address: IPAddress, _ port: UInt16,
                          _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    switch address {
    case .v4(let value):
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = value.bigEndian
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    case .v6:
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}

/// Why a TCP exchange failed.
public enum ConnectOutcome: Sendable, Equatable {
    case replied(String)
    case refused
    case timedOut
    case failed(String)
}

/// Connects from inside `namespace` to address:port, reads one line, and closes: what `nc ADDR PORT` shows.
public func fetchLine(in namespace: NetworkNamespace, from source: IPAddress? = nil, to address: IPAddress,
                      port: UInt16, timeoutMilliseconds: Int32) -> ConnectOutcome {
    let domain = address.family == .inet6 ? AF_INET6 : AF_INET
    let fd: Int32
    do {
        fd = try namespace.socket(domain: domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                  protocol: 0)
    } catch {
        return .failed(error.description)
    }
    defer { close(fd) }
    if let source {
        let bound = withSocketAddress(source, 0) { bind(fd, $0, $1) }
        if bound != 0 { return .failed("bind \(source): \(Errno(rawValue: errno))") }
    }
    let rc = withSocketAddress(address, port) { connect(fd, $0, $1) }
    if rc != 0 && errno != EINPROGRESS { return errno == ECONNREFUSED ? .refused : .failed("\(Errno(rawValue: errno))") }

    // Wait for the connection, then for the reply line (or EOF).
    var deadline = timeoutMilliseconds
    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    let start = monotonicMilliseconds()
    if rc != 0 {
        guard poll(&pfd, 1, deadline) > 0 else { return .timedOut }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
        if soError == ECONNREFUSED { return .refused }
        if soError != 0 { return .failed("\(Errno(rawValue: soError))") }
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 512)
    while true {
        deadline = timeoutMilliseconds - Int32(monotonicMilliseconds() - start)
        pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard deadline > 0, poll(&pfd, 1, deadline) > 0 else { return .timedOut }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            received += buffer[0..<n]
            if received.contains(UInt8(ascii: "\n")) { break }
        } else if n == 0 {
            break
        } else if errno != EAGAIN && errno != EINTR {
            return errno == ECONNREFUSED ? .refused : .failed("\(Errno(rawValue: errno))")
        }
    }
    let line = String(decoding: received.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    return .replied(line)
}

func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
