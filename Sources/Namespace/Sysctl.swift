import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

extension NetworkNamespace {
    /// The /proc/sys path of a `net.` sysctl key. Keys use dots (`net.ipv4.conf.eth1.rp_filter`) or, for interface
    /// names that contain dots, slashes (`net/ipv4/conf/eth0.100/rp_filter`), as sysctl(8) accepts. Only `net.`
    /// keys are allowed: they are the ones that belong to a network namespace.
    public static func sysctlPath(_ key: String) throws(NamespaceError) -> String {
        let parts = key.contains("/") ? key.split(separator: "/", omittingEmptySubsequences: false)
                                       : key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.first == "net" else {
            throw .invalidSysctl(key, reason: "only net.* keys belong to a network namespace")
        }
        guard parts.count >= 3 else { throw .invalidSysctl(key, reason: "incomplete key") }
        for part in parts where part.isEmpty || part == "." || part == ".." || part.utf8.contains(0) {
            throw .invalidSysctl(key, reason: "malformed component \"\(part)\"")
        }
        return "/proc/sys/" + parts.joined(separator: "/")
    }

    /// Reads a sysctl of this namespace (not the caller's), trimmed of its newline.
    public func readSysctl(_ key: String) throws(NamespaceError) -> String {
        let fd = try openSysctl(key, flags: O_RDONLY)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        while true {
            let n = try syscall { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
                .get { NamespaceError.from($0, "read sysctl \(key) in \(self)") }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.last == "\n" { text.removeLast() }
        return text
    }

    /// Writes a sysctl of this namespace (not the caller's).
    public func writeSysctl(_ key: String, _ value: String) throws(NamespaceError) {
        if value.contains("\n") || value.utf8.contains(0) {
            throw .invalidSysctl(key, reason: "value contains a newline or NUL")
        }
        let fd = try openSysctl(key, flags: O_WRONLY)
        defer { close(fd) }
        let data = Array((value + "\n").utf8)
        _ = try syscall { data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }.get { e in
            e == .invalidArgument ? NamespaceError.invalidSysctl(key, reason: "the kernel rejected the value \"\(value)\"")
                                  : .from(e, "write sysctl \(key)=\(value) in \(self)")
        }
    }

    /// The sysctl file, opened from inside the namespace: /proc/sys/net shows the namespace of the task that
    /// looks it up, and an open file keeps it.
    private func openSysctl(_ key: String, flags: Int32) throws(NamespaceError) -> Int32 {
        let path = try Self.sysctlPath(key)
        return try perform { syscall { open(path, flags | O_CLOEXEC) } }.get { e in
            e == .noSuchFileOrDirectory ? NamespaceError.invalidSysctl(key, reason: "no such sysctl in \(self)")
                                        : .from(e, "open \(path) in \(self)")
        }
    }
}
