import Netlink
import ReturnRouting

/// How fix commands address the node, and what doctor checks it against.
public struct DoctorRequest: Sendable {
    /// Where the services and their interfaces came from.
    public enum PolicySource: Sendable, Hashable {
        case file(String)
        case lab(String)
        /// The record of the last apply (and what the kernel has of it).
        case record
        /// The global addresses on lo: interfaces and gateways unknown.
        case addresses
    }

    public var policy: Policy?
    public var source: PolicySource
    /// `ip -n NS` (or `ip`) for fix commands.
    public var ip: [String]
    /// `ip netns exec NS sysctl -w` (or `sysctl -w`).
    public var sysctl: [String]
    /// returnpath's target options for fix commands: `--lab seed`, `--netns NS`, nothing for the current namespace.
    public var returnpathTarget: [String]
    /// The machine's own namespace: systemd-networkd is checked.
    public var isHostNamespace: Bool
    /// Service ports (from a lab's topology), so that rules on ports can be evaluated.
    public var servicePorts: [IPAddress: UInt16]
    /// Filesystem root for the systemd-networkd check.
    public var systemRoot: String

    public init(policy: Policy?, source: PolicySource, ip: [String], sysctl: [String], returnpathTarget: [String],
                isHostNamespace: Bool, servicePorts: [IPAddress: UInt16] = [:], systemRoot: String = "/") {
        self.policy = policy
        self.source = source
        self.ip = ip
        self.sysctl = sysctl
        self.returnpathTarget = returnpathTarget
        self.isHostNamespace = isHostNamespace
        self.servicePorts = servicePorts
        self.systemRoot = systemRoot
    }
}

/// One row of doctor's table: would a reply from the service to a client behind the interface leave by it?
public struct ReplyCheck: Sendable {
    public enum Verdict: String, Sendable, Encodable {
        case ok, asymmetric, unreachable
        /// The interface the service is announced on is not known (services found on lo only).
        case unknown
    }
    public var service: IPPrefix
    /// The address the checks use for the service (the prefix itself for a host prefix).
    public var address: IPAddress
    /// For a service the node DNATs (a nat chain's `dnat to`): the port, and the backend ADDRESS:PORT. Its reply is
    /// the backend's, forwarded.
    public var port: UInt16?
    public var backend: String?
    /// "192.168.1.1", or "192.168.1.1:3000" for a DNATed port.
    public var label: String { port.map { service.isHost ? address.endpoint(port: $0) : "\(service):\($0)" } ?? service.description }
    public var interface: String?
    public var client: IPAddress
    public var clientPrefix: IPPrefix?
    /// The request (client → service, in on the interface): its prerouting, route and reverse-path check.
    public var requestTrace: NftTrace?
    public var requestResult: PathResult?
    public var reversePath: ReversePathCheck?
    public var requestKernel: KernelAnswer?
    public var requestMark: UInt32
    /// The reply (service → client): the output chains and the route that decides it.
    public var replyTrace: NftTrace
    public var replyResult: PathResult
    public var replyMark: UInt32
    public var replyKernel: KernelAnswer
    public var verdict: Verdict
    /// Why, in a few words ("via 10.111.220.1 in table main", "request dropped by rp_filter").
    public var reason: String
    /// The deciding rule of the reply.
    public var rule: DetailedRule? { replyResult.lookup?.outcome.rule }
    public var table: UInt32? { replyResult.lookup?.outcome.table }
}

public struct DoctorReport: Sendable {
    /// "rp-seed-node", "(current namespace)".
    public var target: String
    public var source: DoctorRequest.PolicySource
    public var strategy: Strategy?
    public var checks: [ReplyCheck]
    public var findings: [Finding]
    public var notes: [String]

    /// 1 when a finding is an error, else 0.
    public var exitCode: Int32 { findings.contains { $0.severity == .error } ? 1 : 0 }
}
