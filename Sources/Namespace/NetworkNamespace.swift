import CLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A network namespace: either a named one at /run/netns/NAME (what `ip netns add` creates, so `ip netns exec`
/// works on it), or `.current`, the caller's own.
///
/// Entering happens only on a dedicated pthread and only to create descriptors (sockets, sysctl files, child
/// processes): a socket stays in the namespace it was made in, so it can then be used from any thread.
public struct NetworkNamespace: Sendable, Hashable, CustomStringConvertible {
    /// Where `ip netns` keeps its bind mounts.
    public static let runDirectory = "/run/netns"
    /// The caller's own namespace.
    public static let current = NetworkNamespace(unchecked: nil)

    /// nil for `.current`.
    public let name: String?

    private init(unchecked name: String?) { self.name = name }

    /// A handle on the named namespace; the name is validated, existence is checked when it is used.
    public init(named name: String) throws(NamespaceError) {
        try Self.validate(name)
        self.name = name
    }

    public var path: String? { name.map { "\(Self.runDirectory)/\($0)" } }
    public var description: String { name ?? "(current namespace)" }

    static func validate(_ name: String) throws(NamespaceError) {
        if name.isEmpty { throw .invalidName(name, reason: "empty") }
        if name == "." || name == ".." { throw .invalidName(name, reason: "reserved") }
        if name.utf8.count > 255 { throw .invalidName(name, reason: "longer than 255 bytes") }
        if name.contains("/") || name.utf8.contains(0) {
            throw .invalidName(name, reason: "contains '/' or NUL")
        }
    }

    // MARK: create / delete / list

    /// Creates a named namespace exactly as `ip netns add NAME` does: /run/netns is made a shared mount point,
    /// an empty file NAME is created (O_EXCL), and a new namespace, made on a dedicated thread, is bind-mounted
    /// onto it. On failure nothing is left behind.
    @discardableResult
    public static func create(_ name: String) throws(NamespaceError) -> NetworkNamespace {
        let ns = try NetworkNamespace(named: name)
        guard let path = ns.path else { return ns }
        try prepareRunDirectory()
        let fd = try syscall { open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0) }.get { e in
            e == .fileExists ? NamespaceError.exists(name) : .from(e, "create \(path)")
        }
        close(fd)
        let outcome = onDedicatedThread { () -> Result<Int32, Errno> in
            syscall { clinux_unshare(clinux_CLONE_NEWNET) }.flatMap { _ in
                let own = "/proc/self/task/\(clinux_gettid())/ns/net"
                return syscall { clinux_mount(own, path, "none", clinux_MS_BIND, nil) }
            }
        }
        switch outcome {
        case .failure(let error):
            unlink(path)
            throw error
        case .success(.failure(let failed)):
            unlink(path)
            throw .from(failed, "create network namespace \(name)")
        case .success(.success):
            return ns
        }
    }

    /// Makes /run/netns exist and be a shared mount, so that namespace mounts propagate to other mount
    /// namespaces (iproute2's netns_add does the same).
    private static func prepareRunDirectory() throws(NamespaceError) {
        if case .failure(let e) = syscall({ mkdir(runDirectory, 0o755) }), e != .fileExists {
            throw .from(e, "mkdir \(runDirectory)")
        }
        var madeMountPoint = false
        while case .failure(let e) = syscall({ clinux_mount("", runDirectory, "none", clinux_MS_SHARED | clinux_MS_REC, nil) }) {
            guard e == .invalidArgument, !madeMountPoint else {
                throw .from(e, "make \(runDirectory) a shared mount")
            }
            _ = try syscall { clinux_mount(runDirectory, runDirectory, "none", clinux_MS_BIND | clinux_MS_REC, nil) }
                .get { NamespaceError.from($0, "bind-mount \(runDirectory) onto itself") }
            madeMountPoint = true
        }
    }

    /// Removes the namespace as `ip netns del` does (lazy unmount, then unlink). The kernel frees the namespace,
    /// and the veths in it, once no process or socket holds it any more.
    public func delete() throws(NamespaceError) {
        guard let path, let name else { throw .invalidName("", reason: "the current namespace cannot be deleted") }
        let unmounted = syscall { clinux_umount2(path, clinux_MNT_DETACH) }
        _ = try syscall { unlink(path) }.get { e in
            e == .noSuchFileOrDirectory ? NamespaceError.notFound(name) : .from(e, "unlink \(path)")
        }
        // EINVAL: not a mount point (a file left by an interrupted create); ENOENT: already gone.
        if case .failure(let e) = unmounted, e != .invalidArgument && e != .noSuchFileOrDirectory {
            throw .from(e, "unmount \(path)")
        }
    }

    /// Names of all namespaces in /run/netns, sorted.
    public static func list() -> [String] {
        guard let dir = opendir(runDirectory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// True when /run/netns/NAME is a live namespace mount (not a stale file left by an interrupted create).
    public var exists: Bool {
        guard let path else { return true }
        var fs = statfs()
        guard case .success = syscall({ statfs(path, &fs) }) else { return false }
        return UInt(fs.f_type) == Self.nsfsMagic
    }

    /// NSFS_MAGIC (linux/magic.h): the file system of namespace files and their bind mounts.
    static let nsfsMagic: UInt = 0x6e73_6673

    /// The namespace's inode number: its identity, the same one `ip netns identify` and /proc/PID/ns/net show.
    public func inode() throws(NamespaceError) -> UInt64 {
        let target = path ?? "/proc/self/ns/net"
        var st = stat()
        _ = try syscall { stat(target, &st) }.get { mapOpenError($0, "stat \(target)") }
        return UInt64(st.st_ino)
    }

    // MARK: entering

    /// Opens the namespace file (O_RDONLY|O_CLOEXEC): used for setns and for IFLA_NET_NS_FD. Caller closes it.
    public func openDescriptor() throws(NamespaceError) -> Int32 {
        let target = path ?? "/proc/self/ns/net"
        return try syscall { open(target, O_RDONLY | O_CLOEXEC) }.get { mapOpenError($0, "open \(target)") }
    }

    private func mapOpenError(_ e: Errno, _ operation: String) -> NamespaceError {
        if e == .noSuchFileOrDirectory, let name { return .notFound(name) }
        return .from(e, operation)
    }

    /// Runs `body` on a dedicated pthread that has entered this namespace, and returns its result. `body` must
    /// only create descriptors (sockets, files, child processes): they keep the namespace after the thread ends.
    /// For `.current`, `body` runs on the calling thread.
    public func perform<T>(_ body: () -> T) throws(NamespaceError) -> T {
        guard name != nil else { return body() }
        let fd = try openDescriptor()
        defer { close(fd) }
        let outcome = onDedicatedThread { () -> Result<T, NamespaceError> in
            syscall { clinux_setns(fd, clinux_CLONE_NEWNET) }
                .mapError { NamespaceError.from($0, "enter network namespace \(self)") }
                .map { _ in body() }
        }
        return try outcome.flatMap { $0 }.get()
    }

    /// A socket created inside this namespace (SOCK_CLOEXEC is added). The caller owns and closes it.
    public func socket(domain: Int32, type: Int32, protocol proto: Int32) throws(NamespaceError) -> Int32 {
        try perform { syscall { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) } }
            .get { NamespaceError.from($0, "socket(\(domain), \(type), \(proto)) in \(self)") }
    }
}
