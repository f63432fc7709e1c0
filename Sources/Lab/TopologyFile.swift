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
        return try TopologyParser(reader: reader).topology(try reader.compose(text))
    }
}

/// Walks the YAML tree with line numbers at hand.
struct TopologyParser {
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
}
