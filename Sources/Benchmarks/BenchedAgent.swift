import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// An agent started by the benchmark (this binary) with our own posix_spawn, its standard error in a file;
/// stopped with SIGTERM, and by the scratch cleanup if the benchmark is interrupted.
final class BenchedAgent: @unchecked Sendable {
    let pid: pid_t
    let log: String
    private var exited = false

    init(_ arguments: [String], log: String, scratch: ScratchNamespaces, executable: String) throws {
        self.log = log
        let fd = try syscall { open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
            .get { BenchmarkError.failed("create \(log): \($0)") }
        defer { close(fd) }
        pid = try NetworkNamespace.current.spawn([executable, "agent"] + arguments,
                                                 descriptors: [ChildDescriptor(nil, as: 0), ChildDescriptor(nil, as: 1), ChildDescriptor(fd, as: 2)])
        let pid = self.pid
        scratch.onCleanup { kill(pid, SIGKILL) }
        let deadline = monotonicMilliseconds() + 60_000
        while !text.contains("watching") {
            guard isRunning, monotonicMilliseconds() < deadline else {
                _ = stop()
                throw BenchmarkError.failed("the agent did not start: \(text)")
            }
            usleep(10_000)
        }
    }

    var isRunning: Bool { !exited && ProcessTable.isRunning(pid) }

    var text: String { String(decoding: ProcessTable.readFile(log) ?? [], as: UTF8.self) }

    func metricsPort() -> Int? {
        let deadline = monotonicMilliseconds() + 10_000
        while monotonicMilliseconds() < deadline {
            let text = self.text
            if let range = text.firstRange(of: "metrics on http://127.0.0.1:") {
                return Int(text[range.upperBound...].prefix(while: \.isNumber))
            }
            usleep(10_000)
        }
        return nil
    }

    /// VmRSS and VmHWM in KiB.
    func memory() -> (Int, Int) {
        let status = String(decoding: ProcessTable.readFile("/proc/\(pid)/status") ?? [], as: UTF8.self)
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
        }
        return (field("VmRSS:"), field("VmHWM:"))
    }

    /// utime + stime of the agent, in seconds.
    func cpuSeconds() -> Double {
        let stat = String(decoding: ProcessTable.readFile("/proc/\(pid)/stat") ?? [], as: UTF8.self)
        guard let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 → indices 11, 12 here.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// SIGTERM, then the seconds until it exited (SIGKILL after 5 s); reaps it.
    func stop() -> Double {
        guard !exited else { return 0 }
        let start = monotonicMilliseconds()
        kill(pid, SIGTERM)
        while ProcessTable.isRunning(pid) && monotonicMilliseconds() - start < 5000 { usleep(1000) }
        if ProcessTable.isRunning(pid) { kill(pid, SIGKILL) }
        _ = waitForExit(pid)
        exited = true
        return Double(monotonicMilliseconds() - start) / 1000
    }
}

/// GET http://127.0.0.1:PORT/PATH over a plain socket (the agent's metrics and health endpoints): status and body.
/// The benchmark and the agent's tests both read the agent with it.
public func localHTTPGet(port: Int, _ path: String) throws(BenchmarkError) -> (status: Int, body: String) {
    guard let port16 = UInt16(exactly: port) else { throw .failed("port \(port) is out of range") }
    let fd = try syscall { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        .get { BenchmarkError.failed("socket: \($0)") }
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
