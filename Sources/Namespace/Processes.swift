import CLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Supervision of the processes returnpath starts (the lab's service process, benchmark load generators, tools):
/// finding them again in /proc, telling whether they still run, stopping them, and the pipes they report on.
/// Everything here goes through `syscall`; nothing sleeps in a loop.
public enum ProcessTable {
    /// How long `terminate` waits after SIGTERM before SIGKILL.
    public static let terminationGraceMilliseconds: Int32 = 1000

    /// The argument vector of a running process (/proc/PID/cmdline), nil when there is no such process.
    public static func arguments(of pid: pid_t) -> [String]? {
        guard let data = readFile("/proc/\(pid)/cmdline") else { return nil }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every process whose arguments after the program are exactly `tail` (the program itself may be any path).
    public static func processes(withArguments tail: [String]) -> [pid_t] {
        allProcesses().filter { pid in
            guard let arguments = arguments(of: pid) else { return false }
            return arguments.count == tail.count + 1 && Array(arguments.dropFirst()) == tail
        }
    }

    /// The ids of every process (the numeric entries of /proc).
    public static func allProcesses() -> [pid_t] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [pid_t] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = pid_t(name) { pids.append(pid) }
        }
        return pids
    }

    /// Running: not gone, and not a zombie waiting for a parent that does not reap (/proc/PID/stat's state field,
    /// the first after the parenthesised command name).
    public static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")),
              close + 2 < stat.count else { return false }
        return stat[close + 2] != UInt8(ascii: "Z")
    }

    /// Stops a process: SIGTERM, then SIGKILL when it has not exited within `terminationGraceMilliseconds`.
    /// Reaps it when it is our child. Waits on a pidfd (no polling loop).
    public static func terminate(_ pid: pid_t) {
        guard pid > 0, case .success = syscall({ kill(pid, SIGTERM) }) else { return }
        if exits(pid, withinMilliseconds: terminationGraceMilliseconds) {
            var status: Int32 = 0
            _ = syscall { waitpid(pid, &status, WNOHANG) }
            return
        }
        _ = syscall { kill(pid, SIGKILL) }
        var status: Int32 = 0
        _ = syscall { waitpid(pid, &status, 0) }
    }

    /// True when `pid` has exited (or is a zombie) within the time given. A process that is already gone counts as
    /// exited. (Without pidfds, before Linux 5.3, there is no waiting: whether it still runs is the answer.)
    static func exits(_ pid: pid_t, withinMilliseconds timeout: Int32) -> Bool {
        guard case .success(let pidfd) = syscall({ clinux_pidfd_open(pid) }) else { return !isRunning(pid) }
        defer { close(pidfd) }
        let deadline = monotonicMilliseconds() + Int64(timeout)
        var ready = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        let polled = syscall { poll(&ready, 1, Int32(clamping: max(0, deadline - monotonicMilliseconds()))) }
        if case .success(let n) = polled, n > 0 { return true }
        return !isRunning(pid)
    }

    /// A whole small file (/proc entries, a log), or nil when it cannot be read.
    public static func readFile(_ path: String) -> [UInt8]? {
        guard case .success(let fd) = syscall({ open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            guard case .success(let n) = syscall({ chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } })
            else { return nil }
            if n == 0 { return data }
            data += chunk[0..<n]
        }
    }
}

/// A pipe with both ends close-on-exec (pipe2 with O_CLOEXEC: no window in which another thread's child could
/// inherit it). A child gets an end only by naming it in a `ChildDescriptor`.
public func makePipe(_ operation: String = "pipe") throws(NamespaceError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    _ = try syscall { clinux_pipe2(&fds, O_CLOEXEC) }.get { NamespaceError.from($0, operation) }
    return (fds[0], fds[1])
}

/// Reads `fd` until end of file, an error, or `timeoutMilliseconds` have passed, and returns what came.
public func readAvailable(_ fd: Int32, timeoutMilliseconds: Int64) -> [UInt8] {
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 512)
    let deadline = monotonicMilliseconds() + timeoutMilliseconds
    while true {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let left = Int32(clamping: max(0, deadline - monotonicMilliseconds()))
        guard case .success(let n) = syscall({ poll(&ready, 1, left) }), n > 0 else { break }
        guard case .success(let count) = syscall({ buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }),
              count > 0 else { break }
        received += buffer[0..<count]
    }
    return received
}
