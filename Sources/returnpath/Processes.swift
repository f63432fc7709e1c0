import CLinux
import Foundation
import Namespace
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program with an argument vector (never through a shell), in a namespace, and returns its status and
/// output. Our own posix_spawn: Foundation's Process costs ~30 ms a start here, which would distort every benchmark.
struct ProgramRun {
    var status: Int32
    var output: String
    var errors: String

    /// Standard input is /dev/null; output and errors are collected.
    @discardableResult
    static func run(_ arguments: [String], in namespace: NetworkNamespace = .current) throws -> ProgramRun {
        guard let program = arguments.first else { throw Failure(description: "no program to run") }
        let path = try locate(program).path
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard clinux_pipe2(&outPipe, O_CLOEXEC) == 0, clinux_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            throw Failure(description: "pipe: \(String(cString: strerror(errno)))")
        }
        let pid: pid_t
        do {
            pid = try namespace.spawn([path] + arguments.dropFirst(), descriptors: [
                ChildDescriptor(nil, as: 0), ChildDescriptor(outPipe[1], as: 1), ChildDescriptor(errPipe[1], as: 2),
            ])
        } catch {
            for fd in outPipe + errPipe { close(fd) }
            throw Failure(description: error.description)
        }
        close(outPipe[1])
        close(errPipe[1])
        let (output, errors) = drain(outPipe[0], errPipe[0])
        return ProgramRun(status: waitForExit(pid), output: String(decoding: output, as: UTF8.self),
                          errors: String(decoding: errors, as: UTF8.self))
    }

    /// Reads two pipes to their ends at once (poll), so neither can fill up and stall the child. Closes both.
    private static func drain(_ a: Int32, _ b: Int32) -> ([UInt8], [UInt8]) {
        var data: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var open = 2
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    data[i] += buffer[0..<n]
                } else if n == 0 || errno != EINTR {
                    close(fds[i].fd)
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        return (data[0], data[1])
    }

    /// Looks a program up in PATH (plus the sbin directories, where iproute2 lives).
    static func locate(_ program: String) throws -> URL {
        if program.contains("/") { return URL(fileURLWithPath: program) }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        throw Failure(description: "\(program) is not installed (needed for this command)")
    }
}
