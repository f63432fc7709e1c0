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
        let spawned = try perform { () -> Result<pid_t, Errno> in
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
            var flags = Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
            if newSession { flags |= clinux_POSIX_SPAWN_SETSID }
            posix_spawnattr_setflags(&attributes, flags)
            let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
            defer { for arg in argv { free(arg) } }
            var pid: pid_t = 0
            return syscall(returningErrno: posix_spawnp(&pid, program, &actions, &attributes, argv, environ)).map { pid }
        }
        return try spawned.get { NamespaceError.from($0, "run \(program) in \(self)") }
    }
}

/// Waits for a child and returns its exit status: the code it exited with, 128 + the signal number when a signal
/// ended it (as shells report it), 127 when it cannot be waited for.
public func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    guard case .success = syscall({ waitpid(pid, &status, 0) }) else { return 127 }
    return exitCode(ofWaitStatus: status)
}

/// The W* macros of <sys/wait.h>, which Swift does not import: the low 7 bits are the terminating signal
/// (WTERMSIG, 0 for a normal exit), the next byte the exit code (WEXITSTATUS).
func exitCode(ofWaitStatus status: Int32) -> Int32 {
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
}
