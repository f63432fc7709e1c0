import FoundationEssentials
import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// What a lab owns, kept under /run/returnpath/labs/<name>.json so that `lab down` works after `lab up` was killed
/// at any point and after the topology file is gone. Namespaces are recorded *before* they are created.
public struct LabState: Codable, Sendable, Equatable {
    public struct ServiceEntry: Codable, Sendable, Equatable {
        public var host: String
        public var namespace: String
        /// Written in the file as text ("192.168.1.1"); a file whose address does not parse does not load.
        public var address: IPAddress
        public var port: UInt16
        public var reply: String

        public init(host: String, namespace: String, address: IPAddress, port: UInt16, reply: String) {
            self.host = host
            self.namespace = namespace
            self.address = address
            self.port = port
            self.reply = reply
        }

        enum CodingKeys: String, CodingKey { case host, namespace, address, port, reply }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            host = try container.decode(String.self, forKey: .host)
            namespace = try container.decode(String.self, forKey: .namespace)
            let text = try container.decode(String.self, forKey: .address)
            guard let address = IPAddress(text) else {
                throw DecodingError.dataCorruptedError(forKey: .address, in: container,
                                                       debugDescription: "\"\(text)\" is not an IP address")
            }
            self.address = address
            port = try container.decode(UInt16.self, forKey: .port)
            reply = try container.decode(String.self, forKey: .reply)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(host, forKey: .host)
            try container.encode(namespace, forKey: .namespace)
            try container.encode(address.description, forKey: .address)
            try container.encode(port, forKey: .port)
            try container.encode(reply, forKey: .reply)
        }
    }

    public var name: String
    /// Every namespace the lab owns or was about to create.
    public var namespaces: [String]
    /// The service process (`returnpath lab serve`), when running.
    public var servicePID: Int32?
    public var services: [ServiceEntry]
    /// Where the topology came from (a path, or the built-in seed).
    public var source: String
    /// The topology text the lab was built from, so status and graph need no file.
    public var topology: String
    /// False while `lab up` is still running (or was killed).
    public var complete: Bool
}

/// The directory of lab state files and their locks.
public struct LabStore: Sendable {
    public let directory: String

    public static let defaultDirectory = "/run/returnpath/labs"

    public init(directory: String = LabStore.defaultDirectory) { self.directory = directory }

    func path(_ name: String) -> String { "\(directory)/\(name).json" }

    /// The lab's state, nil when it has no state file. A file that does not decode is an error naming it (it is
    /// not "no such lab": the lab's namespaces may well exist).
    public func load(_ name: String) throws(LabError) -> LabState? {
        guard let data = FileManager.default.contents(atPath: path(name)) else { return nil }
        do { return try JSONDecoder().decode(LabState.self, from: data) } catch {
            throw LabError(lab: name, step: "read state \(path(name))", host: nil,
                           reason: "it does not decode (\(error)); `returnpath lab down --name \(name)` removes the lab by its markers")
        }
    }

    /// Writes atomically (temporary file, then rename): a kill never leaves half a state file.
    public func save(_ state: LabState) throws(LabError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: URL(fileURLWithPath: path(state.name)), options: .atomic)
        } catch {
            throw LabError(lab: state.name, step: "save state to \(path(state.name))", host: nil, reason: "\(error)")
        }
    }

    /// Removes the lab's state file and the service log.
    public func remove(_ name: String) {
        try? FileManager.default.removeItem(atPath: path(name))
        try? FileManager.default.removeItem(atPath: logPath(name))
    }

    /// Standard error of the lab's service process.
    public func logPath(_ name: String) -> String { "\(directory)/\(name).log" }

    /// Names of all labs with a state file.
    public func labs() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// Holds an exclusive lock (flock on the state directory itself) while `body` runs: `up` and `down` never
    /// interleave, and no lock file is left behind.
    public func locked<T>(_ name: String, _ body: () throws(LabError) -> T) throws(LabError) -> T {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw LabError(lab: name, step: "create \(directory)", host: nil, reason: "\(error)")
        }
        func failed(_ error: Errno) -> LabError { LabError(lab: name, step: "lock \(directory)", host: nil, reason: "\(error)") }
        let fd = try syscall { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }.get(or: failed)
        defer { close(fd) }
        _ = try syscall { flock(fd, LOCK_EX) }.get(or: failed)
        return try body()
    }
}

/// A lab operation that failed: which lab, which step, on which host, and why (the kernel's words).
public struct LabError: Error, CustomStringConvertible, Sendable {
    public var lab: String
    public var step: String
    public var host: String?
    public var reason: String

    public init(lab: String, step: String, host: String?, reason: String) {
        self.lab = lab
        self.step = step
        self.host = host
        self.reason = reason
    }

    public var description: String {
        "lab \(lab): \(step)" + (host.map { " on host \($0)" } ?? "") + ": \(reason)"
    }
}
