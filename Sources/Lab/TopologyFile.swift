import Foundation
import Netlink
import YAMLFile

/// A topology file that cannot be built. Nothing was created.
public typealias TopologyError = FileError

/// Reads and validates topology files (YAML). Every check runs before anything is created.
public enum TopologyFile {
    /// Reads a topology file from disk.
    public static func load(path: String) throws(TopologyError) -> Topology {
        try parse(try YAMLReader.read(path), file: path)
    }

    /// Parses and validates topology text. `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(TopologyError) -> Topology {
        let reader = YAMLReader(file: file)
        return try Parser(reader: reader).topology(try reader.compose(text))
    }
}

/// Walks the YAML tree with line numbers at hand.
private struct Parser {
    let reader: YAMLReader
    var file: String { reader.file }

    func checkName(_ name: String, _ node: Node, _ what: String, maxLength: Int) throws(TopologyError) {
        if let problem = Topology.nameProblem(name, what: what, maxLength: maxLength) { throw reader.fail(node, problem) }
    }

    func topology(_ root: Node) throws(TopologyError) -> Topology {
        let top = try reader.entries(root, "the topology", allowed: ["name", "networks", "hosts", "flows"])
        var name = "seed"
        if let node = reader.value(top, "name") {
            name = try reader.string(node, "name")
            try checkName(name, node, "lab name", maxLength: 32)
        }

        // Networks first: hosts refer to them.
        var networks: [Topology.Network] = []
        var subnetNodes: [(network: Int, subnet: IPPrefix, node: Node)] = []
        var invalidNetwork: TopologyError?
        guard let networksNode = reader.value(top, "networks") else { throw reader.fail(root, "no \"networks\" section") }
        for entry in try reader.entries(networksNode, "networks") {
            do throws(TopologyError) {
                try checkName(entry.key, entry.keyNode, "network name", maxLength: 32)
                let fields = try reader.entries(entry.value, "network \(entry.key)", allowed: ["subnet", "subnet6"])
                guard let subnetNode = reader.value(fields, "subnet") else { throw reader.fail(entry.value, "network \(entry.key) has no subnet") }
                // `subnet`, and for a dual-stack network `subnet6` (IPv6, beside an IPv4 subnet).
                var subnets: [IPPrefix] = []
                for (key, node) in [("subnet", subnetNode), ("subnet6", reader.value(fields, "subnet6"))] {
                    guard let node else { continue }
                    let subnet = try reader.prefix(node, "\(key) of network \(entry.key)")
                    guard subnet.isCanonical else {
                        throw reader.fail(node, "\(key) \(subnet.cidr) of network \(entry.key) has host bits set (did you mean \(subnet.network.cidr)?)")
                    }
                    if key == "subnet6" && (subnet.family != .inet6 || subnets.first?.family != .inet) {
                        throw reader.fail(node, "subnet6 of network \(entry.key) is the IPv6 subnet beside an IPv4 subnet")
                    }
                    subnets.append(subnet)
                    subnetNodes.append((networks.count, subnet, node))
                }
                networks.append(.init(name: entry.key, subnets: subnets))
            } catch {
                invalidNetwork = error
                break
            }
        }
        // The first network that overlaps an earlier one (before any later problem, as a check in the loop would).
        if let (index, other) = firstOverlap(subnetNodes.map(\.subnet)) {
            let (found, earlier) = (subnetNodes[index], subnetNodes[other])
            throw reader.fail(found.node, "subnet \(found.subnet.cidr) of network \(networks[found.network].name) overlaps network \(networks[earlier.network].name) (\(earlier.subnet.cidr))")
        }
        if let invalidNetwork { throw invalidNetwork }
        let networksByName = Dictionary(networks.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

        guard let hostsNode = reader.value(top, "hosts") else { throw reader.fail(root, "no \"hosts\" section") }
        var hosts: [Topology.Host] = []
        var seenAddresses: [IPAddress: String] = [:]
        var backends: [(host: String, node: Node, address: IPAddress)] = []
        for entry in try reader.entries(hostsNode, "hosts") {
            try checkName(entry.key, entry.keyNode, "host name", maxLength: 32)
            hosts.append(try host(entry.key, entry.value, networks: networksByName, seen: &seenAddresses, backends: &backends))
        }
        if hosts.isEmpty { throw reader.fail(hostsNode, "no hosts") }
        // A DNAT backend is a host of the lab (a pod, another node), which may come later in the file.
        let everyAddress = Set(hosts.flatMap(\.addresses))
        for backend in backends where !everyAddress.contains(backend.address) {
            throw reader.fail(backend.node, "DNAT backend \(backend.address) of host \(backend.host) is not an address of any host of the lab")
        }
        var members: [String: Int] = [:]
        for interface in hosts.lazy.flatMap(\.interfaces) {
            if let network = interface.network { members[network, default: 0] += 1 }
        }
        for network in networks {
            let count = members[network.name] ?? 0
            if count < 2 { throw reader.fail(networksNode, "network \(network.name) has \(count) member(s); it needs at least 2") }
        }

        var flows: [Topology.Flow] = []
        let hostNames = Set(hosts.map(\.name))
        if let flowsNode = reader.value(top, "flows") {
            for node in try reader.list(flowsNode, "flows") {
                let fields = try reader.entries(node, "a flow", allowed: ["from", "to"])
                guard let fromNode = reader.value(fields, "from"), let toNode = reader.value(fields, "to") else {
                    throw reader.fail(node, "a flow needs \"from\" (a host) and \"to\" (ADDRESS:PORT)")
                }
                let source = try reader.string(fromNode, "flow source")
                guard hostNames.contains(source) else { throw reader.fail(fromNode, "flow from unknown host \"\(source)\"") }
                let (address, port) = try endpoint(toNode)
                flows.append(.init(source: source, address: address, port: port))
            }
        }
        return Topology(name: name, networks: networks, hosts: hosts, flows: flows)
    }

    func endpoint(_ node: Node) throws(TopologyError) -> (IPAddress, UInt16) {
        let text = try reader.string(node, "flow destination")
        guard let endpoint = IPAddress.parseEndpoint(text) else {
            throw reader.fail(node, "flow destination \"\(text)\" is not ADDRESS:PORT")
        }
        return endpoint
    }

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
                if let other = seen[parsed.address] {
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

    /// `{service: ADDRESS:PORT, backend: ADDRESS:PORT, proto: tcp|udp, masquerade: false|true}`, and the backend's
    /// node (whether it is a host of the lab is checked once every host is known).
    func dnat(_ node: Node, host what: String, interfaces: [Topology.Interface],
              services: [Topology.Service]) throws(TopologyError) -> (Topology.DNAT, Node) {
        let fields = try reader.entries(node, "a DNAT entry of \(what)", allowed: ["service", "backend", "proto", "masquerade"])
        guard let serviceNode = reader.value(fields, "service"), let backendNode = reader.value(fields, "backend") else {
            throw reader.fail(node, "a DNAT entry of \(what) needs service (ADDRESS:PORT) and backend (ADDRESS:PORT)")
        }
        let serviceText = try reader.string(serviceNode, "DNAT service")
        guard let (address, port) = IPAddress.parseEndpoint(serviceText) else {
            throw reader.fail(serviceNode, "DNAT service \"\(serviceText)\" is not ADDRESS:PORT")
        }
        guard interfaces.contains(where: { $0.addresses.contains { $0.address == address } }) else {
            throw reader.fail(serviceNode, "DNAT service address \(address) is not an address of \(what) (put it on lo, as for services)")
        }
        let backendText = try reader.string(backendNode, "DNAT backend")
        guard let (backend, backendPort) = IPAddress.parseEndpoint(backendText) else {
            throw reader.fail(backendNode, "DNAT backend \"\(backendText)\" is not ADDRESS:PORT")
        }
        guard backend.family == address.family else {
            throw reader.fail(backendNode, "DNAT backend \(backend) is not of the service's address family")
        }
        if backend == address && backendPort == port {
            throw reader.fail(backendNode, "DNAT backend \(backendText) is the service itself")
        }
        var proto = Topology.DNAT.Proto.tcp
        if let protoNode = reader.value(fields, "proto") {
            let text = try reader.string(protoNode, "DNAT proto")
            guard let parsed = Topology.DNAT.Proto(rawValue: text) else {
                throw reader.fail(protoNode, "DNAT proto \"\(text)\" is not tcp or udp")
            }
            proto = parsed
        }
        var masquerade = false
        if let masqueradeNode = reader.value(fields, "masquerade") {
            let text = try reader.string(masqueradeNode, "DNAT masquerade")
            guard text == "true" || text == "false" else { throw reader.fail(masqueradeNode, "DNAT masquerade is true or false") }
            masquerade = text == "true"
        }
        if proto == .tcp, services.contains(where: { $0.address == address && $0.port == port }) {
            throw reader.fail(serviceNode, "DNAT of \(address.endpoint(port: port)) would take the connections of the service "
                              + "of \(what) on that address and port: give one of them another port")
        }
        return (Topology.DNAT(address: address, port: port, backend: backend, backendPort: backendPort, proto: proto,
                              masquerade: masquerade), backendNode)
    }

    /// A host's interfaces as routes and services see them.
    struct Local {
        var names: Set<String>
        var addresses: Set<IPAddress>
        /// Subnets of the networks the host is connected to.
        var subnets: Set<IPPrefix>

        init(interfaces: [Topology.Interface], networks: [String: Topology.Network]) {
            names = Set(interfaces.map(\.name))
            addresses = Set(interfaces.flatMap { $0.addresses.map(\.address) })
            subnets = Set(interfaces.compactMap { $0.network.flatMap { networks[$0]?.subnets } }.joined())
        }

        /// Whether a connected network's subnet contains `address` (one lookup per prefix length).
        func isConnected(_ address: IPAddress) -> Bool {
            (0...(address.family == .inet6 ? 128 : 32)).contains { length in
                (try? IPPrefix(address.masked(to: length), length: length)).map(subnets.contains) ?? false
            }
        }
    }

    func route(_ node: Node, host what: String, local: Local) throws(TopologyError) -> Topology.RouteSpec {
        let fields = try reader.entries(node, "a route of \(what)", allowed: ["to", "via", "dev", "table", "metric", "src"])
        guard let toNode = reader.value(fields, "to") else { throw reader.fail(node, "a route of \(what) has no \"to\"") }
        let destination = try reader.prefix(toNode, "route destination")
        guard destination.isCanonical else {
            throw reader.fail(toNode, "route destination \(destination.cidr) has host bits set (did you mean \(destination.network.cidr)?)")
        }
        var spec = Topology.RouteSpec(destination: destination)
        if let viaNode = reader.value(fields, "via") {
            let gateway = try reader.address(viaNode, "gateway")
            // The gateway must be on a network this host is connected to, and not the host itself.
            guard local.isConnected(gateway) else {
                throw reader.fail(viaNode, "gateway \(gateway) of \(what) is not on a network \(what) is connected to")
            }
            if local.addresses.contains(gateway) {
                throw reader.fail(viaNode, "gateway \(gateway) is an address of \(what) itself")
            }
            spec.gateway = gateway
        }
        if let devNode = reader.value(fields, "dev") {
            let dev = try reader.string(devNode, "route device")
            guard local.names.contains(dev) else {
                throw reader.fail(devNode, "route device \(dev) is not an interface of \(what)")
            }
            spec.device = dev
        }
        if spec.gateway == nil && spec.device == nil { throw reader.fail(node, "a route of \(what) needs via or dev") }
        if let tableNode = reader.value(fields, "table") {
            spec.table = UInt32(try reader.integer(tableNode, "route table", range: 1...Int(UInt32.max)))
        }
        if let metricNode = reader.value(fields, "metric") {
            spec.metric = UInt32(try reader.integer(metricNode, "route metric", range: 0...Int(UInt32.max)))
        }
        if let srcNode = reader.value(fields, "src") { spec.source = try reader.address(srcNode, "route source") }
        return spec
    }
}

extension IPPrefix {
    /// The same address with another prefix length (the length is within range by construction here).
    func with(length: Int) -> IPPrefix { (try? IPPrefix(address, length: length)) ?? self }
}

/// The first subnet (in order) that overlaps an earlier one, and the first earlier one it overlaps: what comparing
/// every pair gives, in O(n log n). (Comparing every pair took 20 s for 5000 networks in a debug build.) Prefixes
/// either nest or are disjoint, so in address order (wider first) the ones containing a prefix are a stack.
func firstOverlap(_ subnets: [IPPrefix]) -> (index: Int, other: Int)? {
    typealias Bound = (UInt64, UInt64)
    func span(_ prefix: IPPrefix) -> (start: Bound, end: Bound) {
        switch prefix.network.address {
        case .v4(let value):
            let host: UInt32 = prefix.length >= 32 ? 0 : UInt32.max >> UInt32(max(prefix.length, 0))
            return ((0, UInt64(value)), (0, UInt64(value | host)))
        case .v6(let high, let low):
            let hostHigh: UInt64 = prefix.length >= 64 ? 0 : UInt64.max >> UInt64(max(prefix.length, 0))
            let hostLow: UInt64 = prefix.length <= 64 ? UInt64.max : prefix.length >= 128 ? 0 : UInt64.max >> UInt64(prefix.length - 64)
            return ((high, low), (high | hostHigh, low | hostLow))
        }
    }
    let spans = subnets.map(span)
    let order = subnets.indices.sorted { a, b in
        let (x, y) = (spans[a], spans[b])
        if subnets[a].family != subnets[b].family { return subnets[a].family.rawValue < subnets[b].family.rawValue }
        if x.start != y.start { return x.start < y.start }
        if x.end != y.end { return x.end > y.end }
        return a < b
    }
    // For each subnet: the smallest index among the subnets containing it, and among those it contains.
    var containerMin = [Int](repeating: .max, count: subnets.count)
    var containedMin = [Int](repeating: .max, count: subnets.count)
    var stack: [(index: Int, end: Bound, minimum: Int)] = []   // minimum: smallest index in the stack up to here
    func pop() {
        let top = stack.removeLast()
        if let parent = stack.last?.index {
            containedMin[parent] = min(containedMin[parent], top.index, containedMin[top.index])
        }
    }
    for index in order {
        while let top = stack.last,
              subnets[top.index].family != subnets[index].family || top.end < spans[index].start {
            pop()
        }
        containerMin[index] = stack.last?.minimum ?? .max
        stack.append((index, spans[index].end, min(index, stack.last?.minimum ?? .max)))
    }
    while !stack.isEmpty { pop() }
    for index in subnets.indices {
        let other = min(containerMin[index], containedMin[index])
        if other < index { return (index, other) }
    }
    return nil
}
