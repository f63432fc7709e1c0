import Netlink

/// A lab: networks, hosts (each a network namespace), their interfaces, routes, sysctls and services. Built from a
/// topology file; the seed lab is a built-in one. Names and order are as the file gives them.
public struct Topology: Sendable, Equatable {
    public var name: String
    public var networks: [Network]
    public var hosts: [Host]
    /// Flows the file lists; when empty, `defaultFlows` applies.
    public var flows: [Flow]

    public struct Network: Sendable, Equatable {
        public var name: String
        /// One subnet per family at most (a dual-stack network has an IPv4 and an IPv6 one); the first is `subnet`.
        public var subnets: [IPPrefix]
        public var subnet: IPPrefix { subnets[0] }

        public init(name: String, subnets: [IPPrefix]) {
            self.name = name
            self.subnets = subnets
        }

        /// The subnet that contains `address`, if any.
        public func subnet(containing address: IPAddress) -> IPPrefix? { subnets.first { $0.contains(address) } }
    }

    public enum Role: String, Sendable, Equatable {
        case host, client
    }

    public struct Host: Sendable, Equatable {
        public var name: String
        public var role: Role
        public var interfaces: [Interface]
        public var routes: [RouteSpec]
        public var sysctls: [Sysctl]
        public var services: [Service]
        /// Destination NAT in kube-proxy's shape: connections to a service address and port of this host are sent to
        /// a backend (a pod: another host of the lab). Installed as nftables rules in the table `inet returnpath-lab`.
        public var dnat: [DNAT] = []

        public func interface(_ name: String) -> Interface? { interfaces.first { $0.name == name } }
        /// Every address of the host (all interfaces, lo included).
        public var addresses: [IPAddress] { interfaces.flatMap { $0.addresses.map(\.address) } }
    }

    public struct Interface: Sendable, Equatable {
        public var name: String
        /// nil for lo (and only lo).
        public var network: String?
        public var addresses: [IPPrefix]
        public var mtu: UInt32?
        public var isLoopback: Bool { name == "lo" }
    }

    public struct RouteSpec: Sendable, Equatable {
        public var destination: IPPrefix
        public var gateway: IPAddress?
        /// `via: [A, B]`: a multipath route over these routers (then `gateway` is nil).
        public var gateways: [IPAddress] = []
        public var device: String?
        public var table: UInt32?
        public var metric: UInt32?
        public var source: IPAddress?
        /// `proto: dhcp` (a name of iproute2's or a number): how the route says it was made; default static, the
        /// lab's own marker.
        public var proto: UInt8?
        /// `onlink: true`: the gateway is used on-link (an interface without an address on its subnet).
        public var onlink = false
    }

    public struct Sysctl: Sendable, Equatable {
        public var key: String
        public var value: String
    }

    public struct Service: Sendable, Equatable, CustomStringConvertible {
        public var address: IPAddress
        public var port: UInt16
        public var reply: String
        public var endpoint: String { address.endpoint(port: port) }
        public var description: String { endpoint }
    }

    /// One DNAT entry: SERVICE:PORT → BACKEND:PORT (TCP unless `proto` says udp), optionally masqueraded (the
    /// backend then sees the host's own address as source, as kube-proxy does for externalTrafficPolicy: Cluster).
    public struct DNAT: Sendable, Equatable, CustomStringConvertible {
        public enum Proto: String, Sendable, Equatable, CaseIterable {
            case tcp, udp
        }

        public var address: IPAddress
        public var port: UInt16
        public var backend: IPAddress
        public var backendPort: UInt16
        public var proto: Proto
        public var masquerade: Bool

        public init(address: IPAddress, port: UInt16, backend: IPAddress, backendPort: UInt16, proto: Proto = .tcp,
                    masquerade: Bool = false) {
            self.address = address
            self.port = port
            self.backend = backend
            self.backendPort = backendPort
            self.proto = proto
            self.masquerade = masquerade
        }

        /// "192.168.1.1:3000"
        public var service: String { address.endpoint(port: port) }
        /// "10.244.0.10:3000"
        public var backendEndpoint: String { backend.endpoint(port: backendPort) }
        /// "192.168.1.1:3000 → 10.244.0.10:3000" (with "udp", "masquerade" when they apply).
        public var description: String {
            "\(service) → \(backendEndpoint)" + (proto == .tcp ? "" : " \(proto.rawValue)") + (masquerade ? " masquerade" : "")
        }
    }

    public struct Flow: Sendable, Equatable {
        public var source: String
        public var address: IPAddress
        public var port: UInt16
    }

    public func host(_ name: String) -> Host? { hosts.first { $0.name == name } }
    public func network(_ name: String) -> Network? { networks.first { $0.name == name } }

    /// (host, interface) pairs attached to a network, in file order.
    public func members(of network: String) -> [(host: Host, interface: Interface)] {
        hosts.flatMap { host in host.interfaces.filter { $0.network == network }.map { (host, $0) } }
    }

    /// The host that owns an address (a service's host, for a flow's destination).
    public func owner(of address: IPAddress) -> Host? { hosts.first { $0.addresses.contains(address) } }

    /// Every service, with its host.
    public var services: [(host: Host, service: Service)] {
        hosts.flatMap { host in host.services.map { (host, $0) } }
    }

    /// Every DNAT entry, with the host that does it.
    public var dnat: [(host: Host, dnat: DNAT)] {
        hosts.flatMap { host in host.dnat.map { (host, $0) } }
    }

    /// The DNAT entry of the host owning `address` for TCP connections to `address`:`port`, if there is one.
    public func dnat(to address: IPAddress, port: UInt16) -> (host: Host, dnat: DNAT)? {
        dnat.first { $0.dnat.proto == .tcp && $0.dnat.address == address && $0.dnat.port == port }
    }

    /// The file's flows, or else every client to every TCP endpoint it has a route to: services, then DNAT entries
    /// (seed: client1 → svc1, client2 → svc2).
    public var defaultFlows: [Flow] {
        if !flows.isEmpty { return flows }
        let endpoints = hosts.flatMap { host in
            host.services.map { ($0.address, $0.port) } + host.dnat.filter { $0.proto == .tcp }.map { ($0.address, $0.port) }
        }
        return hosts.filter { $0.role == .client }.flatMap { client in
            endpoints.filter { endpoint in
                client.routes.contains { $0.destination.contains(endpoint.0) }
            }.map { Flow(source: client.name, address: $0.0, port: $0.1) }
        }
    }

    /// What is wrong with a lab, host or network name, or nil: lower-case letters, digits and dashes, starting and
    /// ending with a letter or digit, at most `maxLength` characters (so rp-<lab>-<host> stays readable).
    public static func nameProblem(_ name: String, what: String, maxLength: Int = 32) -> String? {
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        guard allowed, !name.isEmpty, name.first != "-", name.last != "-" else {
            return "\(what) \"\(name)\" must be lower-case letters, digits and dashes, starting and ending with a letter or digit"
        }
        guard name.count <= maxLength else { return "\(what) \"\(name)\" is longer than \(maxLength) characters" }
        return nil
    }

    /// The namespace of a host in lab `lab`: rp-<lab>-<host>, as `ip netns` shows it.
    public static func namespaceName(lab: String, host: String) -> String { "rp-\(lab)-\(host)" }
    /// The namespace holding the bridges of networks with more than two members.
    public static func switchNamespaceName(lab: String) -> String { "rp-\(lab)-_switch" }
}
