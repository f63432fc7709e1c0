import Dispatch
import FoundationEssentials
import Namespace
import Netlink
import ReturnRouting
#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` every 10 ms until it holds or `seconds` pass; whether it held.
public func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
    while DispatchTime.now().uptimeNanoseconds < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// One node's agent: this very binary, spawned inside the node's namespace (as hostNetwork puts the DaemonSet's pod
/// there) with its own NODE_NAME, its output in a file. The cluster demo and `bench cluster` run one per node.
public final class ClusterAgent {
    public let host: String
    public let namespace: NetworkNamespace
    public let logPath: String
    private var pid: pid_t?

    public init(host: String, namespace: NetworkNamespace, arguments: [String], logDirectory: String) throws(BenchmarkError) {
        self.host = host
        self.namespace = namespace
        logPath = "\(logDirectory)/\(host).log"
        let fd = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .failed("create \(logPath)") }
        defer { close(fd) }
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        do {
            pid = try namespace.spawn(["/usr/bin/env", "NODE_NAME=\(host)", binary] + arguments,
                                      descriptors: [ChildDescriptor(nil, as: 0), ChildDescriptor(fd, as: 1), ChildDescriptor(fd, as: 2)],
                                      newSession: true)
        } catch { throw .namespace(error) }
    }

    public func waitReady(seconds: Double) -> Bool {
        waitFor(seconds: seconds) { (try? localHTTPGet(port: 9712, "/readyz", in: namespace).status) == 200 }
    }

    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM; its exit status (SIGKILL after the grace period).
    @discardableResult
    public func stop() -> Int32 {
        guard let pid else { return 0 }
        self.pid = nil
        kill(pid, SIGTERM)
        return waitForExit(pid)
    }
}

/// A directory laid out as kubelet lays out a ConfigMap volume: each version in its own directory, `..data` a link
/// to the current one (swapped with one rename), `policy.yaml` a link through it. The cluster demo and `bench
/// cluster` swap versions the way kubelet does.
public struct ConfigMapVolume: Sendable {
    public let directory: String
    public var policyPath: String { "\(directory)/policy.yaml" }

    /// A new volume holding `text` as its first version.
    public init(directory: String, text: String) throws(BenchmarkError) {
        self.directory = directory
        try? FileManager.default.removeItem(atPath: directory)
        try publish(version: "..v0", text)
        do { try FileManager.default.createSymbolicLink(atPath: policyPath, withDestinationPath: "..data/policy.yaml") } catch {
            throw .failed("link \(policyPath): \(error)")
        }
    }

    /// `text` as version `version`, made current with one rename of `..data_tmp` over `..data`.
    public func publish(version: String, _ text: String) throws(BenchmarkError) {
        do {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(version)", withIntermediateDirectories: true)
            try text.write(toFile: "\(directory)/\(version)/policy.yaml", atomically: false, encoding: .utf8)
            try? FileManager.default.removeItem(atPath: "\(directory)/..data_tmp")
            try FileManager.default.createSymbolicLink(atPath: "\(directory)/..data_tmp", withDestinationPath: version)
        } catch { throw .failed("write ConfigMap version \(version): \(error)") }
        guard rename("\(directory)/..data_tmp", "\(directory)/..data") == 0 else { throw .failed("swap \(directory)/..data") }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// The gateways of the IPv4 default route in returnpath's first interface table (table base + 1): what a rack
/// node's replies are sent to; empty when there is none or the table cannot be read.
public func firstTableGateways(_ socket: NetlinkSocket) -> [String] {
    ((try? socket.routes(family: .inet, table: Ownership().tableBase + 1))?.first { $0.destination.length == 0 }?.gateways ?? [])
        .map(\.description)
}

