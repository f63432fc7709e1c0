import Netlink
import YAMLFile

/// The entries a host of a topology file lists under `dnat` and `routes`.
extension TopologyParser {
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
        let fields = try reader.entries(node, "a route of \(what)", allowed: ["to", "via", "dev", "table", "metric", "src", "proto", "onlink"])
        guard let toNode = reader.value(fields, "to") else { throw reader.fail(node, "a route of \(what) has no \"to\"") }
        let destination = try reader.prefix(toNode, "route destination")
        guard destination.isCanonical else {
            throw reader.fail(toNode, "route destination \(destination.cidr) has host bits set (did you mean \(destination.network.cidr)?)")
        }
        var spec = Topology.RouteSpec(destination: destination)
        if let onlinkNode = reader.value(fields, "onlink") {
            let text = try reader.string(onlinkNode, "route onlink")
            guard text == "true" || text == "false" else { throw reader.fail(onlinkNode, "route onlink is true or false") }
            spec.onlink = text == "true"
        }
        if let viaNode = reader.value(fields, "via") {
            // One router, or a list: a multipath route over them (the spine's ECMP to every node of a service).
            let items = viaNode.sequence.map(\.items) ?? [viaNode]
            guard !items.isEmpty else { throw reader.fail(viaNode, "via of a route of \(what) lists no gateways") }
            var gateways: [IPAddress] = []
            for item in items {
                let gateway = try reader.address(item, "gateway")
                // The gateway must be on a network this host is connected to (unless onlink), and not the host itself.
                guard spec.onlink || local.isConnected(gateway) else {
                    throw reader.fail(item, "gateway \(gateway) of \(what) is not on a network \(what) is connected to")
                }
                if local.addresses.contains(gateway) {
                    throw reader.fail(item, "gateway \(gateway) is an address of \(what) itself")
                }
                guard gateway.family == destination.family else {
                    throw reader.fail(item, "gateway \(gateway) is not of the destination's family")
                }
                if gateways.contains(gateway) { throw reader.fail(item, "gateway \(gateway) is listed twice") }
                gateways.append(gateway)
            }
            if viaNode.sequence == nil || gateways.count == 1 { spec.gateway = gateways[0] } else { spec.gateways = gateways }
        }
        if spec.onlink && spec.gateway == nil && spec.gateways.isEmpty { throw reader.fail(node, "onlink needs via") }
        if let protoNode = reader.value(fields, "proto") {
            let text = try reader.string(protoNode, "route proto")
            let names: [String: UInt8] = ["static": 4, "boot": 3, "ra": 9, "dhcp": 16, "bgp": 186, "ospf": 188, "zebra": 11, "bird": 12]
            guard let value = names[text] ?? UInt8(text), value >= 3 else {
                throw reader.fail(protoNode, "route proto \"\(text)\" is not one of \(names.keys.sorted().joined(separator: ", ")) or a number from 3 to 255")
            }
            spec.proto = value
        }
        if let devNode = reader.value(fields, "dev") {
            let dev = try reader.string(devNode, "route device")
            guard local.names.contains(dev) else {
                throw reader.fail(devNode, "route device \(dev) is not an interface of \(what)")
            }
            spec.device = dev
        }
        if spec.gateway == nil && spec.gateways.isEmpty && spec.device == nil { throw reader.fail(node, "a route of \(what) needs via or dev") }
        if spec.onlink && spec.device == nil { throw reader.fail(node, "an onlink route of \(what) needs dev") }
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
