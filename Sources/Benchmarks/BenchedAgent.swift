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
