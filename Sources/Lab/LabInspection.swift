import Foundation
import Namespace
import Netlink

/// What a lab looks like right now, read back from the kernel (for `lab status`).
public struct LabInspection: Sendable, Codable {
    public struct InterfaceInfo: Sendable, Codable {
        public var name: String
        public var up: Bool
        public var addresses: [String]
    }

    public struct HostInfo: Sendable, Codable {
        public var name: String
        public var role: String
        public var namespace: String
        public var exists: Bool
        public var interfaces: [InterfaceInfo]
        public var routes: [String]
    }

    public struct ServiceInfo: Sendable, Codable {
        public var host: String
        public var address: String
        public var port: UInt16
        public var reply: String
        public var answers: Bool
        /// What a connection got: the reply line, "refused", "timeout" or an error.
        public var answer: String
    }

    /// A DNAT entry of a host: whether the lab's nat table on that host is as the topology says, and what a TCP
    /// connection from the host itself to the service gets (the `output` chain translates it too).
    public struct DNATInfo: Sendable, Codable {
        public var host: String
        public var service: String
        public var backend: String
        public var proto: String
        public var masquerade: Bool
        /// The host's table `inet returnpath-lab` holds exactly the topology's entries.
        public var installed: Bool
        /// The backend host's reply for that address and port, when the topology declares a service there.
        public var reply: String?
        /// nil for UDP (not checked).
        public var answers: Bool?
        public var answer: String?
    }

    public var name: String
    public var source: String
    public var complete: Bool
    public var hosts: [HostInfo]
    public var services: [ServiceInfo]
    public var dnat: [DNATInfo]

    /// Reads every host's links, addresses and routes, and connects to every service from its own host.
    public static func inspect(lab: String, state: LabState, topology: Topology) -> LabInspection {
        var hosts: [HostInfo] = []
        for host in topology.hosts {
            let name = Topology.namespaceName(lab: lab, host: host.name)
            var info = HostInfo(name: host.name, role: host.role.rawValue, namespace: name, exists: false, interfaces: [], routes: [])
            if let ns = try? NetworkNamespace(named: name), ns.exists, let socket = try? NetlinkSocket(namespace: ns),
               let links = try? socket.links(), let addresses = try? socket.addresses(), let routes = try? socket.routes() {
                info.exists = true
                info.interfaces = links.map { link in
                    InterfaceInfo(name: link.name, up: link.isUp,
                                  addresses: addresses.filter { $0.interface == link.name && $0.scope != .link
                                                                && !$0.prefix.address.isLoopback }.map(\.prefix.cidr))
                }
                info.routes = routes.filter { $0.table != RouteTable.local && $0.family == .inet
                                              || ($0.family == .inet6 && $0.proto == LabManager.routeProtocol) }
                    .map { route in
                        var text = route.description
                        if route.proto == .kernel { text = text.replacingOccurrences(of: " proto kernel", with: "") }
                        return text
                    }
            }
            hosts.append(info)
        }
        let services = state.services.map { entry -> ServiceInfo in
            var info = ServiceInfo(host: entry.host, address: entry.address, port: entry.port, reply: entry.reply,
                                   answers: false, answer: "")
            guard let address = IPAddress(entry.address), let ns = try? NetworkNamespace(named: entry.namespace), ns.exists else {
                info.answer = "namespace missing"
                return info
            }
            switch fetchLine(in: ns, to: address, port: entry.port, timeoutMilliseconds: 1000) {
            case .replied(let line):
                info.answer = line
                info.answers = line == entry.reply
            case .refused: info.answer = "refused"
            case .timedOut: info.answer = "timeout"
            case .failed(let why): info.answer = why
            }
            return info
        }
        var dnat: [DNATInfo] = []
        for host in topology.hosts where !host.dnat.isEmpty {
            let namespace = try? NetworkNamespace(named: Topology.namespaceName(lab: lab, host: host.name))
            let installed = namespace.flatMap { ns in ns.exists ? try? LabNat.current(in: ns) : nil }
                .map { LabNat.normalized($0) == LabNat.normalized(LabNat.listing(host.dnat, lab: lab)) } ?? false
            for entry in host.dnat {
                let reply = topology.owner(of: entry.backend)?.services
                    .first { $0.address == entry.backend && $0.port == entry.backendPort }?.reply
                var info = DNATInfo(host: host.name, service: entry.service, backend: entry.backendEndpoint,
                                    proto: entry.proto.rawValue, masquerade: entry.masquerade, installed: installed,
                                    reply: entry.proto == .tcp ? reply : nil, answers: nil, answer: nil)
                if entry.proto == .tcp {
                    if let namespace, namespace.exists {
                        switch fetchLine(in: namespace, to: entry.address, port: entry.port, timeoutMilliseconds: 1000) {
                        case .replied(let line): info.answer = line
                        case .refused: info.answer = "refused"
                        case .timedOut: info.answer = "timeout"
                        case .failed(let why): info.answer = why
                        }
                    } else {
                        info.answer = "namespace missing"
                    }
                    let answered = info.answer.map { !["refused", "timeout", "namespace missing"].contains($0) } ?? false
                    info.answers = answered && (reply == nil || info.answer == reply)
                }
                dnat.append(info)
            }
        }
        return LabInspection(name: lab, source: state.source, complete: state.complete, hosts: hosts, services: services,
                             dnat: dnat)
    }
}
