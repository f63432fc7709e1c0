import Netlink
import YAMLFile

/// A host of a topology file: its role, interfaces, addresses, routes, sysctls, services and DNAT entries.
extension TopologyParser {
    func host(_ name: String, _ node: Node, networks: [String: Topology.Network], seen: inout [IPAddress: String],
              backends: inout [(host: String, node: Node, address: IPAddress)]) throws(TopologyError) -> Topology.Host {
        let what = "host \(name)"
        let fields = try reader.entries(node, what, allowed: ["role", "interfaces", "routes", "sysctls", "services", "dnat"])
        var role = Topology.Role.host
        if let roleNode = reader.value(fields, "role") {
            let text = try reader.string(roleNode, "role of \(what)")
            guard let parsed = Topology.Role(rawValue: text) else {
                throw reader.fail(roleNode, "role \"\(text)\" of \(what) is not host or client")
            }
            role = parsed
        }

        var interfaces: [Topology.Interface] = []
        guard let interfacesNode = reader.value(fields, "interfaces") else { throw reader.fail(node, "\(what) has no interfaces") }
        for entry in try reader.entries(interfacesNode, "interfaces of \(what)") {
            if let problem = Link.validate(name: entry.key) { throw reader.fail(entry.keyNode, "\(what): \(problem)") }
            let ifWhat = "interface \(entry.key) of \(what)"
            let ifFields = try reader.entries(entry.value, ifWhat, allowed: ["network", "address", "addresses", "mtu"])
            var interface = Topology.Interface(name: entry.key, network: nil, addresses: [], mtu: nil)
            var network: Topology.Network?
            if let networkNode = reader.value(ifFields, "network") {
                let networkName = try reader.string(networkNode, "network of \(ifWhat)")
                guard let found = networks[networkName] else {
                    throw reader.fail(networkNode, "\(ifWhat) is on unknown network \"\(networkName)\"")
                }
                if interface.isLoopback { throw reader.fail(networkNode, "lo of \(what) cannot join a network") }
                network = found
                interface.network = found.name
            } else if !interface.isLoopback {
                throw reader.fail(entry.value, "\(ifWhat) is on no network (add network: NAME)")
            }
            var addressNodes: [Node] = []
            if let one = reader.value(ifFields, "address") { addressNodes.append(one) }
            if let many = reader.value(ifFields, "addresses") { addressNodes += try reader.list(many, "addresses of \(ifWhat)") }
            for addressNode in addressNodes {
                let text = try reader.string(addressNode, "address of \(ifWhat)")
                var parsed: IPPrefix
                do { parsed = try IPPrefix(parsing: text) } catch { throw reader.fail(addressNode, "\(ifWhat): \(error)") }
                if let network {
                    // A bare address takes the prefix length of the network's subnet that contains it.
                    let subnet = network.subnet(containing: parsed.address)
                    if !text.contains("/"), let subnet { parsed = IPPrefix(host: parsed.address).with(length: subnet.length) }
                    guard let subnet, parsed.length == subnet.length else {
                        throw reader.fail(addressNode, "address \(parsed.cidr) of \(ifWhat) is not in network \(network.name) (\(network.subnets.map(\.cidr).joined(separator: ", ")))")
                    }
                }
                if parsed.address == parsed.network.address && !parsed.isHost {
                    throw reader.fail(addressNode, "address \(parsed.cidr) of \(ifWhat) is the network address")
                }
                // The same address on the loopback of several hosts is anycast (a LoadBalancer IP every node of a
                // cluster announces); anywhere else it is a mistake.
                let anycast = interface.isLoopback && seen[parsed.address].map { $0.hasPrefix("interface lo of host ") && $0 != ifWhat } == true
                if let other = seen[parsed.address], !anycast {
                    throw reader.fail(addressNode, "address \(parsed.address) of \(ifWhat) is already used by \(other)")
                }
                seen[parsed.address] = ifWhat
                interface.addresses.append(parsed)
            }
            if let mtuNode = reader.value(ifFields, "mtu") {
                interface.mtu = UInt32(try reader.integer(mtuNode, "mtu of \(ifWhat)", range: 68...65535))
            }
            interfaces.append(interface)
        }
        if !interfaces.contains(where: { $0.network != nil }) { throw reader.fail(interfacesNode, "\(what) is on no network") }

        // What routes and services are checked against, once per host rather than once per route or service.
        let local = Local(interfaces: interfaces, networks: networks)
        var routes: [Topology.RouteSpec] = []
        if let routesNode = reader.value(fields, "routes") {
            for routeNode in try reader.list(routesNode, "routes of \(what)") {
                routes.append(try route(routeNode, host: what, local: local))
            }
        }

        var sysctls: [Topology.Sysctl] = []
        if let sysctlsNode = reader.value(fields, "sysctls") {
            for entry in try reader.entries(sysctlsNode, "sysctls of \(what)") {
                let text = try reader.string(entry.value, "sysctl \(entry.key)")
                guard entry.key.hasPrefix("net."), !entry.key.contains("..") else {
                    throw reader.fail(entry.keyNode, "sysctl \(entry.key) of \(what): only net.* keys belong to a network namespace")
                }
                sysctls.append(.init(key: entry.key, value: text))
            }
        }

        var services: [Topology.Service] = []
        var endpoints = Set<String>()
        if let servicesNode = reader.value(fields, "services") {
            for serviceNode in try reader.list(servicesNode, "services of \(what)") {
                let svcFields = try reader.entries(serviceNode, "a service of \(what)", allowed: ["address", "port", "reply"])
                guard let addressNode = reader.value(svcFields, "address"), let portNode = reader.value(svcFields, "port") else {
                    throw reader.fail(serviceNode, "a service of \(what) needs address and port")
                }
                let address = try reader.address(addressNode, "service address")
                guard local.addresses.contains(address) else {
                    throw reader.fail(addressNode, "service address \(address) is not an address of \(what)")
                }
                let port = UInt16(try reader.integer(portNode, "service port", range: 1...65535))
                if !endpoints.insert(address.endpoint(port: port)).inserted {
                    throw reader.fail(serviceNode, "service \(address):\(port) is declared twice on \(what)")
                }
                let reply = try reader.value(svcFields, "reply").map { n throws(TopologyError) in try reader.string(n, "service reply") } ?? "\(name)"
                if reply.contains("\n") { throw reader.fail(serviceNode, "a service reply is one line") }
                services.append(.init(address: address, port: port, reply: reply))
            }
        }

        var dnat: [Topology.DNAT] = []
        if let dnatNode = reader.value(fields, "dnat") {
            for entryNode in try reader.list(dnatNode, "dnat of \(what)") {
                let (entry, backendNode) = try self.dnat(entryNode, host: what, interfaces: interfaces, services: services)
                if dnat.contains(where: { $0.address == entry.address && $0.port == entry.port && $0.proto == entry.proto }) {
                    throw reader.fail(entryNode, "DNAT of \(entry.proto.rawValue) \(entry.service) is declared twice on \(what)")
                }
                backends.append((name, backendNode, entry.backend))
                dnat.append(entry)
            }
            // DNATed connections are forwarded to their backends: the host forwards unless its sysctls say otherwise.
            let implied: [(AddressFamily, String)] = [(.inet, "net.ipv4.ip_forward"), (.inet6, "net.ipv6.conf.all.forwarding")]
            for (family, key) in implied where dnat.contains(where: { $0.address.family == family })
                && !sysctls.contains(where: { $0.key == key }) {
                sysctls.append(.init(key: key, value: "1"))
            }
        }
        return Topology.Host(name: name, role: role, interfaces: interfaces, routes: routes, sysctls: sysctls,
                             services: services, dnat: dnat)
    }
}
