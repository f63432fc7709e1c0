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
        /// Why the host's links, addresses or routes could not be read (the namespace exists); nil when they were.
        public var error: String?
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
        /// "192.168.1.1:3000", "[fd00::1]:80" (for the table; not in the JSON, which has address and port).
        public var endpoint = ""

        enum CodingKeys: String, CodingKey { case host, address, port, reply, answers, answer }
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
        /// Why the host's table could not be read (then `installed` is false); nil when it was.
        public var error: String?
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
            guard let ns = try? NetworkNamespace(named: name), ns.exists else {
                hosts.append(info)
                continue
            }
            info.exists = true
            do throws(NetlinkError) {
                let socket = try NetlinkSocket(namespace: ns)
                let links = try socket.links(), addresses = try socket.addresses(), routes = try socket.routes()
                info.interfaces = links.map { link in
                    InterfaceInfo(name: link.name, up: link.isUp,
                                  addresses: addresses.filter { $0.interface == link.name && $0.scope != .link
                                                                && !$0.prefix.address.isLoopback }.map(\.prefix.cidr))
                }
                info.routes = routes.filter { $0.table != RouteTable.local && $0.family == .inet
                                              || ($0.family == .inet6 && $0.proto == LabManager.routeProtocol) }
                    .map { route in
                        var text = route.description
                        if route.proto == .kernel { text = text.replacing(" proto kernel", with: "") }
                        return text
                    }
            } catch {
                info.error = error.description
            }
            hosts.append(info)
        }
        let services = state.services.map { entry -> ServiceInfo in
            var info = ServiceInfo(host: entry.host, address: entry.address.description, port: entry.port, reply: entry.reply,
                                   answers: false, answer: "", endpoint: entry.address.endpoint(port: entry.port))
            guard let ns = try? NetworkNamespace(named: entry.namespace), ns.exists else {
                info.answer = "namespace missing"
                return info
            }
            let outcome = fetchLine(in: ns, to: entry.address, port: entry.port, timeoutMilliseconds: 1000)
            info.answer = outcome.text
            info.answers = outcome == .replied(entry.reply)
            return info
        }
        var dnat: [DNATInfo] = []
        for host in topology.hosts where !host.dnat.isEmpty {
            let namespace = (try? NetworkNamespace(named: Topology.namespaceName(lab: lab, host: host.name))).flatMap { $0.exists ? $0 : nil }
            var installed = false
            var rulesError: String?
            if let namespace {
                do {
                    installed = try LabNat.current(in: namespace)
                        .map { LabNat.normalized($0) == LabNat.normalized(LabNat.listing(host.dnat, lab: lab)) } ?? false
                } catch {
                    rulesError = error.description
                }
            }
            for entry in host.dnat {
                let reply = topology.owner(of: entry.backend)?.services
                    .first { $0.address == entry.backend && $0.port == entry.backendPort }?.reply
                var info = DNATInfo(host: host.name, service: entry.service, backend: entry.backendEndpoint,
                                    proto: entry.proto.rawValue, masquerade: entry.masquerade, installed: installed,
                                    error: rulesError, reply: entry.proto == .tcp ? reply : nil, answers: nil, answer: nil)
                if entry.proto == .tcp {
                    guard let namespace else {
                        info.answer = "namespace missing"
                        info.answers = false
                        dnat.append(info)
                        continue
                    }
                    let outcome = fetchLine(in: namespace, to: entry.address, port: entry.port, timeoutMilliseconds: 1000)
                    info.answer = outcome.text
                    if case .replied(let line) = outcome {
                        info.answers = reply == nil || line == reply
                    } else {
                        info.answers = false
                    }
                }
                dnat.append(info)
            }
        }
        return LabInspection(name: lab, source: state.source, complete: state.complete, hosts: hosts, services: services,
                             dnat: dnat)
    }
}
