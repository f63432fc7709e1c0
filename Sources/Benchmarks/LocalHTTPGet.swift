import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// GET http://127.0.0.1:PORT/PATH over a plain socket (the agent's metrics and health endpoints): status and body.
/// The benchmark and the agent's tests both read the agent with it.
public func localHTTPGet(port: Int, _ path: String, in namespace: NetworkNamespace = .current) throws(BenchmarkError) -> (status: Int, body: String) {
    guard let port16 = UInt16(exactly: port) else { throw .failed("port \(port) is out of range") }
    let fd: Int32
    do { fd = try namespace.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue), protocol: 0) } catch {
        throw .failed("socket in \(namespace): \(error)")
    }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    _ = try syscall { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }
        .get { BenchmarkError.failed("set a receive timeout: \($0)") }
    _ = try syscall(retryOnInterrupt: false) { withSocketAddress(.v4(0x7f00_0001), port16) { connect(fd, $0, $1) } }
        .get { BenchmarkError.failed("connect 127.0.0.1:\(port): \($0)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
        sent += try syscall { request.withUnsafeBytes { send(fd, $0.baseAddress.map { $0 + sent }, $0.count - sent, Int32(MSG_NOSIGNAL)) } }
            .get { BenchmarkError.failed("send to 127.0.0.1:\(port): \($0)") }
    }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try syscall { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
            .get { BenchmarkError.failed("read from 127.0.0.1:\(port): \($0)") }
        if n == 0 { break }
        data += buffer[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let head = text.firstRange(of: "\r\n\r\n") else { throw .failed("no HTTP response from 127.0.0.1:\(port): \(text)") }
    let statusLine = text[..<head.lowerBound].split(separator: "\r\n").first ?? ""
    let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, String(text[head.upperBound...]))
}
