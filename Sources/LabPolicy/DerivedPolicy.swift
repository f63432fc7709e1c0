import Lab
import Netlink
import ReturnRouting

extension Policy {
    /// The policy a lab implies for host `host` (default node): for each of its interfaces, the neighbour that routes
    /// some of the host's service addresses (its services and its DNAT entries) to it is its gateway — one per
    /// family, for a dual-stack network; those services; and the networks of the clients that reach them through
    /// that neighbour. A neighbour's default route does not count: a pod whose default route is the node is not a
    /// router of the node's services.
    public static func derived(from topology: Topology, host name: String) -> Policy? {
        guard let host = topology.host(name) else { return nil }
        var interfaces: [Interface] = []
        var serviceAddresses: [IPAddress] = []
        for address in host.services.map(\.address) + host.dnat.map(\.address) where !serviceAddresses.contains(address) {
            serviceAddresses.append(address)
        }
        for interface in host.interfaces {
            guard let network = interface.network else { continue }
            let mine = interface.addresses.map(\.address)
            guard !mine.isEmpty else { continue }
            for (neighbour, theirs) in topology.members(of: network) where neighbour.name != host.name {
                let routed = serviceAddresses.filter { service in
                    neighbour.routes.contains { route in
                        route.gateway.map(mine.contains) == true && route.destination.length > 0 && route.destination.contains(service)
                    }
                }
                // The neighbour's address of each family the routed services have, on this network.
                let gateways = [AddressFamily.inet, .inet6].compactMap { family in
                    routed.contains { $0.family == family } ? theirs.addresses.first { $0.family == family }?.address : nil
                }
                guard let gateway = gateways.first else { continue }
                let clients = topology.hosts.filter { $0.role == .client }.filter { client in
                    client.routes.contains { route in
                        routed.contains { route.destination.contains($0) }
                            && route.gateway.map { gw in neighbour.addresses.contains(gw) } == true
                    }
                }.flatMap { client in
                    client.interfaces.compactMap { $0.network }.compactMap { topology.network($0)?.subnets }.joined()
                }.filter { client in gateways.contains { $0.family == client.family } }
                interfaces.append(Interface(name: interface.name, gateway: gateway, gateway6: gateways.count > 1 ? gateways[1] : nil,
                                            services: routed.filter { s in gateways.contains { $0.family == s.family } }.map { IPPrefix(host: $0) },
                                            clients: Array(Set(clients)).sorted()))
            }
        }
        guard !interfaces.isEmpty else { return nil }
        return Policy(name: "\(topology.name)-\(name)", interfaces: interfaces)
    }
}
