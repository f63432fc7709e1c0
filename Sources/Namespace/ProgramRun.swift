import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program with an argument vector (never through a shell), in a namespace, and returns its status and
/// output. Our own posix_spawn (`NetworkNamespace.spawn`): Foundation's Process costs ~30 ms a start here, which
/// would distort every benchmark.
public struct ProgramRun: Sendable {
    public var status: Int32
    public var output: String
    public var errors: String

    /// Standard input is /dev/null; output and errors are collected.
    @discardableResult
    public static func run(_ arguments: [String], in namespace: NetworkNamespace = .current) throws(ProgramError) -> ProgramRun {
        guard let program = arguments.first else { throw .noProgram }
        let path = try locate(program)
        let out: (read: Int32, write: Int32), err: (read: Int32, write: Int32)
        do {
            out = try makePipe()
        } catch { throw .system(error) }
        do {
            err = try makePipe()
        } catch {
            close(out.read)
            close(out.write)
            throw .system(error)
        }
        let pid: pid_t
        do {
            pid = try namespace.spawn([path] + arguments.dropFirst(), descriptors: [
                ChildDescriptor(nil, as: 0), ChildDescriptor(out.write, as: 1), ChildDescriptor(err.write, as: 2),
            ])
        } catch {
            for fd in [out.read, out.write, err.read, err.write] { close(fd) }
            throw .system(error)
        }
        close(out.write)
        close(err.write)
        let (output, errors) = drain(out.read, err.read)
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
            guard case .success = syscall({ poll(&fds, nfds_t(fds.count), -1) }) else { break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let fd = fds[i].fd
                if case .success(let n) = syscall({ buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }), n > 0 {
                    data[i] += buffer[0..<n]
                } else {
                    close(fd)
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        for descriptor in fds where descriptor.fd >= 0 { close(descriptor.fd) }
        return (data[0], data[1])
    }

    /// The path of `program`: as given when it contains a '/', else the first executable file of that name in
    /// PATH (plus the sbin directories, where iproute2 lives).
    public static func locate(_ program: String) throws(ProgramError) -> String {
        if program.contains("/") { return program }
        let path = (getenv("PATH").map { String(cString: $0) } ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            var info = stat()
            if case .success = syscall({ stat(candidate, &info) }), info.st_mode & S_IFMT == S_IFREG,
               case .success = syscall({ access(candidate, X_OK) }) {
                return candidate
            }
        }
        throw .notInstalled(program)
    }
}

/// A program that could not be run.
public enum ProgramError: Error, CustomStringConvertible, Sendable {
    /// An empty argument vector.
    case noProgram
    /// Not found in PATH.
    case notInstalled(String)
    /// A pipe or the spawn failed.
    case system(NamespaceError)

    public var description: String {
        switch self {
        case .noProgram: return "no program to run"
        case .notInstalled(let program): return "\(program) is not installed (needed for this command)"
        case .system(let error): return error.description
        }
    }
}
