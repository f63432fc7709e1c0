import FoundationEssentials
import Namespace
#if canImport(Glibc)
import Glibc
#endif

/// The netlink port ids of this process's sockets in a namespace (rtnetlink, nfnetlink, libnftables'): the kernel
/// stamps every notification with the port id of the socket whose request caused it, so events with one of these
/// are our own changes. Read from /proc/thread-self/net/netlink on the namespace thread (the Inode column) matched
/// against /proc/self/fd.
enum OwnSockets {
    static func portIDs(in namespace: NetworkNamespace) -> Set<UInt32> {
        let inodes = socketInodes()
        guard !inodes.isEmpty,
              let table = (try? namespace.perform({ readFile("/proc/thread-self/net/netlink") })) ?? nil else { return [] }
        var ports: Set<UInt32> = []
        // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        for line in table.split(separator: "\n").dropFirst() {
            let columns = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard columns.count >= 10, let port = UInt32(columns[2]), let inode = UInt64(columns[9]) else { continue }
            if inodes.contains(inode) { ports.insert(port) }
        }
        return ports
    }

    /// Inodes of this process's sockets ("socket:[12345]" links in /proc/self/fd).
    static func socketInodes() -> Set<UInt64> {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return [] }
        var inodes: Set<UInt64> = []
        for entry in entries {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)"),
                  target.hasPrefix("socket:["), target.hasSuffix("]") else { continue }
            if let inode = UInt64(target.dropFirst(8).dropLast()) { inodes.insert(inode) }
        }
        return inodes
    }

    /// A whole (small) file with open/read: safe on the namespace thread.
    static func readFile(_ path: String) -> String? {
        // Unreadable is "no own sockets known": the agent then only ignores fewer of its own events (see the caller).
        guard case .success(let fd) = syscall({ open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while case .success(let n) = syscall({ chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }), n > 0 {
            data += chunk[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
