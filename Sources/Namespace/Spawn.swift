import CLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// One descriptor of a child process: `target` gets a copy of `source`, or /dev/null when `source` is nil.
public struct ChildDescriptor: Sendable {
    public var source: Int32?
    public var target: Int32
    public init(_ source: Int32?, as target: Int32) {
        self.source = source
        self.target = target
    }
}

extension NetworkNamespace {
    /// Starts a program inside this namespace (posix_spawn from the namespace thread: the child inherits the
    /// thread's namespace). The argument vector goes to the program as is, never through a shell. Every descriptor
    /// not listed is closed in the child, even ones a library left without CLOEXEC (a leaked pipe would keep a
    /// caller waiting for EOF forever); signal dispositions and mask are reset to the defaults.
    /// `newSession` detaches the child from the caller's terminal and process group (setsid).
    public func spawn(_ arguments: [String], descriptors: [ChildDescriptor],
                      newSession: Bool = false) throws(NamespaceError) -> pid_t {
        guard let program = arguments.first else { throw .system(operation: "spawn: no program", errno: .invalidArgument) }
        let (pid, rc) = try perform { () -> (pid_t, Int32) in
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            for descriptor in descriptors {
                if let source = descriptor.source {
                    posix_spawn_file_actions_adddup2(&actions, source, descriptor.target)
                } else {
                    posix_spawn_file_actions_addopen(&actions, descriptor.target, "/dev/null", O_RDWR, 0)
                }
            }
            clinux_spawn_closefrom(&actions, (descriptors.map(\.target).max() ?? 2) + 1)
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var all = sigset_t(), none = sigset_t()
            sigfillset(&all)
            sigemptyset(&none)
            posix_spawnattr_setsigdefault(&attributes, &all)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setflags(&attributes, Int16(0x04 | 0x08 | (newSession ? 0x80 : 0)))
            let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
            defer { for arg in argv { free(arg) } }
            var pid: pid_t = 0
            let rc = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
            return (pid, rc)
        }
        guard rc == 0 else { throw .from(Errno(rawValue: rc), "run \(program) in \(self)") }
        return pid
    }
}

/// Waits for a child and returns its exit status (128 + signal number when a signal ended it).
public func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        if errno != EINTR { return 127 }
    }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}
