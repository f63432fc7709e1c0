import FoundationEssentials
import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// What apply recorded about one namespace: the ownership in use (and any it is leaving), the strategy, the slot
/// of each interface (its table, mark and set), and the original values of the sysctls it changed (restored by
/// remove). Written ahead of every change it describes, atomically (temporary file, fsync, rename, fsync of the
/// directory), so that a crash at any point leaves a record that covers what is on the node.
public struct AppliedRecord: Codable, Equatable, Sendable {
    public var strategy: Strategy?
    public var ownership: Ownership
    /// Ownerships whose objects may still be on the node: a change of band or table range in progress.
    public var retiring: [Ownership] = []
    /// Original values of sysctls apply changed, by key.
    public var sysctls: [String: String] = [:]
    /// Interface name → slot (1…): its table (tableBase + slot), its mark and its nftables set. Kept across applies
    /// so that adding or removing an interface never moves another one's replies.
    public var slots: [String: Int] = [:]

    public init(ownership: Ownership) { self.ownership = ownership }

    /// Every ownership whose objects may be on the node.
    var ownerships: [Ownership] { [ownership] + retiring.filter { $0 != ownership } }
}

/// The record's file: /run/returnpath/applied/<key>.json.
struct RecordStore {
    let path: String

    static let directory = "/run/returnpath/applied"

    init(key: String) { path = "\(Self.directory)/\(key).json" }

    /// The record, nil when there is none. A file that exists but does not decode is an error: silently reading
    /// it as "nothing to restore" would lose the original values.
    func load() throws(ApplyError) -> AppliedRecord? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .record(path: path, reason: "cannot be read")
        }
        do { return try JSONDecoder().decode(AppliedRecord.self, from: data) } catch {
            throw .record(path: path, reason: "does not decode (\(error)); it holds the original sysctl values remove restores: fix or move it")
        }
    }

    /// Writes the record atomically and durably.
    func save(_ record: AppliedRecord) throws(ApplyError) {
        let data: Data
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            data = try encoder.encode(record)
        } catch { throw .record(path: path, reason: "encode: \(error)") }
        do throws(Errno) {
            try Self.makeDirectory(Self.directory)
            try Self.writeDurably(Array(data), to: path)
        } catch {
            throw .record(path: path, reason: "write: \(error)")
        }
        Failpoint.step("save record")
    }

    func delete() throws(ApplyError) {
        if case .failure(let e) = syscall({ unlink(path) }), e != .noSuchFileOrDirectory {
            throw .record(path: path, reason: "delete: \(e)")
        }
    }

    /// mkdir -p, mode 0755.
    static func makeDirectory(_ path: String) throws(Errno) {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            if case .failure(let e) = syscall({ mkdir(current, 0o755) }), e != .fileExists { throw e }
        }
    }

    /// Temporary file in the same directory, fsync, rename over `path`, fsync of the directory.
    static func writeDurably(_ bytes: [UInt8], to path: String) throws(Errno) {
        let temporary = "\(path).tmp.\(getpid())"
        let fd = try syscall { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }.get { $0 }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temporary) }
        }
        var offset = 0
        while offset < bytes.count {
            let n = try syscall { bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) } }.get { $0 }
            offset += n
        }
        _ = try syscall { fsync(fd) }.get { $0 }
        _ = try syscall { rename(temporary, path) }.get { $0 }
        ok = true
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let dfd = try syscall { open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }.get { $0 }
        defer { close(dfd) }
        _ = try syscall { fsync(dfd) }.get { $0 }
    }
}
