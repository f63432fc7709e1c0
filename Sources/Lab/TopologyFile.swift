import Foundation
import Netlink
import Yams

/// A topology file that cannot be built: names the file, the line, and the problem. Nothing was created.
public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var message: String

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Reads and validates topology files (YAML). Every check runs before anything is created.
public enum TopologyFile {
    /// Reads a topology file from disk.
    public static func load(path: String) throws(TopologyError) -> Topology {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TopologyError(file: path, line: nil, message: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TopologyError(file: path, line: nil, message: "the file is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    /// Parses and validates topology text. `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(TopologyError) -> Topology {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw TopologyError(file: file, line: nil, message: "the file is empty")
            }
            root = node
        } catch let error as TopologyError {
            throw error
        } catch let error as YamlError {
            throw TopologyError(file: file, line: Self.line(of: error, in: text), message: "malformed YAML: \(Self.problem(of: error))")
        } catch {
            throw TopologyError(file: file, line: nil, message: "malformed YAML: \(error)")
        }
        return try Parser(file: file).topology(root)
    }

    /// The line of a YAML error (Yams counts from 1). For a duplicate key: the line of its second occurrence.
    static func line(of error: YamlError, in text: String) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        case .duplicatedKeysInMapping(let duplicates, let context):
            if let key = duplicates.first {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                let hits = lines.indices.filter { index in
                    let stripped = lines[index].drop { $0 == " " || $0 == "-" }
                    return stripped.hasPrefix(key + ":") || stripped.hasPrefix("\"\(key)\":")
                }
                if hits.count >= 2 { return hits[1] + 1 }
            }
            return context.mark.line
        default: return nil
        }
    }

    static func problem(of error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
             .composer(let context, let problem, _, _):
            return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
        case .duplicatedKeysInMapping(let duplicates, _):
            return "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", "))"
        default:
            return "\(error)"
        }
    }
}

/// Walks the YAML tree with line numbers at hand.
private struct Parser {
    let file: String

    func fail(_ node: Node?, _ message: String) -> TopologyError {
        TopologyError(file: file, line: node?.mark?.line, message: message)
    }

    /// A mapping's entries, with unknown keys refused (naming the ones allowed).
    func entries(_ node: Node, _ what: String, allowed: [String]? = nil) throws(TopologyError) -> [(key: String, keyNode: Node, value: Node)] {
        guard let mapping = node.mapping else { throw fail(node, "\(what) must be a mapping") }
        var result: [(String, Node, Node)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string else { throw fail(key, "\(what): keys must be plain names") }
            if let allowed, !allowed.contains(name) {
                throw fail(key, "unknown key \"\(name)\" in \(what) (allowed: \(allowed.joined(separator: ", ")))")
            }
            result.append((name, key, value))
        }
        return result
    }

    func value(_ entries: [(key: String, keyNode: Node, value: Node)], _ key: String) -> Node? {
        entries.first { $0.key == key }?.value
    }

    func string(_ node: Node, _ what: String) throws(TopologyError) -> String {
        guard let scalar = node.scalar else { throw fail(node, "\(what) must be a single value") }
        return scalar.string
    }

    func integer(_ node: Node, _ what: String, range: ClosedRange<Int>) throws(TopologyError) -> Int {
        let text = try string(node, what)
        guard let n = Int(text), range.contains(n) else {
            throw fail(node, "\(what) \"\(text)\" is not a number in \(range.lowerBound)-\(range.upperBound)")
        }
        return n
    }

    func prefix(_ node: Node, _ what: String) throws(TopologyError) -> IPPrefix {
        let text = try string(node, what)
        do { return try IPPrefix(parsing: text) } catch { throw fail(node, "\(what): \(error)") }
    }

    func address(_ node: Node, _ what: String) throws(TopologyError) -> IPAddress {
        let text = try string(node, what)
        guard let address = IPAddress(text) else { throw fail(node, "\(what) \"\(text)\" is not an IP address") }
        return address
    }

    func list(_ node: Node, _ what: String) throws(TopologyError) -> [Node] {
        guard let sequence = node.sequence else { throw fail(node, "\(what) must be a list") }
        return Array(sequence)
    }

    /// Lab and host names: lower-case letters, digits and single dashes, so that rp-<lab>-<host> is unambiguous
    /// enough to read and interface-name-safe parts can be derived from them.
    func checkName(_ name: String, _ node: Node, _ what: String, maxLength: Int) throws(TopologyError) {
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        guard allowed, let first = name.first, first != "-", name.last != "-", !name.isEmpty else {
            throw fail(node, "\(what) \"\(name)\" must be lower-case letters, digits and dashes, starting and ending with a letter or digit")
        }
        guard name.count <= maxLength else { throw fail(node, "\(what) \"\(name)\" is longer than \(maxLength) characters") }
    }

    func topology(_ root: Node) throws(TopologyError) -> Topology {
        let top = try entries(root, "the topology", allowed: ["name", "networks", "hosts", "flows"])
        var name = "seed"
        if let node = value(top, "name") {
            name = try string(node, "name")
            try checkName(name, node, "lab name", maxLength: 32)
        }

        // Networks first: hosts refer to them.
        var networks: [Topology.Network] = []
        guard let networksNode = value(top, "networks") else { throw fail(root, "no \"networks\" section") }
        for entry in try entries(networksNode, "networks") {
            try checkName(entry.key, entry.keyNode, "network name", maxLength: 32)
            let fields = try entries(entry.value, "network \(entry.key)", allowed: ["subnet"])
            guard let subnetNode = value(fields, "subnet") else { throw fail(entry.value, "network \(entry.key) has no subnet") }
            let subnet = try prefix(subnetNode, "subnet of network \(entry.key)")
            guard subnet.isCanonical else {
                throw fail(subnetNode, "subnet \(subnet.cidr) of network \(entry.key) has host bits set (did you mean \(subnet.network.cidr)?)")
            }
            if let other = networks.first(where: { $0.subnet.contains(subnet) || subnet.contains($0.subnet) }) {
                throw fail(subnetNode, "subnet \(subnet.cidr) of network \(entry.key) overlaps network \(other.name) (\(other.subnet.cidr))")
            }
            networks.append(.init(name: entry.key, subnet: subnet))
        }

        guard let hostsNode = value(top, "hosts") else { throw fail(root, "no \"hosts\" section") }
        var hosts: [Topology.Host] = []
        var seenAddresses: [IPAddress: String] = [:]
        for entry in try entries(hostsNode, "hosts") {
            try checkName(entry.key, entry.keyNode, "host name", maxLength: 32)
            hosts.append(try host(entry.key, entry.value, networks: networks, seen: &seenAddresses))
        }
        if hosts.isEmpty { throw fail(hostsNode, "no hosts") }
        for network in networks {
            let count = hosts.reduce(0) { $0 + $1.interfaces.filter { $0.network == network.name }.count }
            if count < 2 { throw fail(networksNode, "network \(network.name) has \(count) member(s); it needs at least 2") }
        }

        var flows: [Topology.Flow] = []
        if let flowsNode = value(top, "flows") {
            for node in try list(flowsNode, "flows") {
                let fields = try entries(node, "a flow", allowed: ["from", "to"])
                guard let fromNode = value(fields, "from"), let toNode = value(fields, "to") else {
                    throw fail(node, "a flow needs \"from\" (a host) and \"to\" (ADDRESS:PORT)")
                }
                let source = try string(fromNode, "flow source")
                guard hosts.contains(where: { $0.name == source }) else { throw fail(fromNode, "flow from unknown host \"\(source)\"") }
                let (address, port) = try endpoint(toNode)
                flows.append(.init(source: source, address: address, port: port))
            }
        }
        return Topology(name: name, networks: networks, hosts: hosts, flows: flows)
    }

    func endpoint(_ node: Node) throws(TopologyError) -> (IPAddress, UInt16) {
        let text = try string(node, "flow destination")
        guard let colon = text.lastIndex(of: ":") else { throw fail(node, "flow destination \"\(text)\" is not ADDRESS:PORT") }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let address = IPAddress(host), let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw fail(node, "flow destination \"\(text)\" is not ADDRESS:PORT")
        }
        return (address, port)
    }

    func host(_ name: String, _ node: Node, networks: [Topology.Network],
              seen: inout [IPAddress: String]) throws(TopologyError) -> Topology.Host {
        let what = "host \(name)"
        let fields = try entries(node, what, allowed: ["role", "interfaces", "routes", "sysctls", "services"])
        var role = Topology.Role.host
        if let roleNode = value(fields, "role") {
            let text = try string(roleNode, "role of \(what)")
            guard let parsed = Topology.Role(rawValue: text) else {
                throw fail(roleNode, "role \"\(text)\" of \(what) is not host or client")
            }
            role = parsed
        }

        var interfaces: [Topology.Interface] = []
        guard let interfacesNode = value(fields, "interfaces") else { throw fail(node, "\(what) has no interfaces") }
        for entry in try entries(interfacesNode, "interfaces of \(what)") {
            if let problem = Link.validate(name: entry.key) { throw fail(entry.keyNode, "\(what): \(problem)") }
            let ifWhat = "interface \(entry.key) of \(what)"
            let ifFields = try entries(entry.value, ifWhat, allowed: ["network", "address", "addresses", "mtu"])
            var interface = Topology.Interface(name: entry.key, network: nil, addresses: [], mtu: nil)
            var network: Topology.Network?
            if let networkNode = value(ifFields, "network") {
                let networkName = try string(networkNode, "network of \(ifWhat)")
                guard let found = networks.first(where: { $0.name == networkName }) else {
                    throw fail(networkNode, "\(ifWhat) is on unknown network \"\(networkName)\"")
                }
                if interface.isLoopback { throw fail(networkNode, "lo of \(what) cannot join a network") }
                network = found
                interface.network = found.name
            } else if !interface.isLoopback {
                throw fail(entry.value, "\(ifWhat) is on no network (add network: NAME)")
            }
            var addressNodes: [Node] = []
            if let one = value(ifFields, "address") { addressNodes.append(one) }
            if let many = value(ifFields, "addresses") { addressNodes += try list(many, "addresses of \(ifWhat)") }
            for addressNode in addressNodes {
                let text = try string(addressNode, "address of \(ifWhat)")
                var parsed: IPPrefix
                do { parsed = try IPPrefix(parsing: text) } catch { throw fail(addressNode, "\(ifWhat): \(error)") }
                if let network {
                    // A bare address takes the network's prefix length.
                    if !text.contains("/") { parsed = IPPrefix(host: parsed.address).with(length: network.subnet.length) }
                    guard network.subnet.contains(parsed.address), parsed.length == network.subnet.length else {
                        throw fail(addressNode, "address \(parsed.cidr) of \(ifWhat) is not in network \(network.name) (\(network.subnet.cidr))")
                    }
                }
                if parsed.address == parsed.network.address && !parsed.isHost {
                    throw fail(addressNode, "address \(parsed.cidr) of \(ifWhat) is the network address")
                }
                if let other = seen[parsed.address] {
                    throw fail(addressNode, "address \(parsed.address) of \(ifWhat) is already used by \(other)")
                }
                seen[parsed.address] = ifWhat
                interface.addresses.append(parsed)
            }
            if let mtuNode = value(ifFields, "mtu") {
                interface.mtu = UInt32(try integer(mtuNode, "mtu of \(ifWhat)", range: 68...65535))
            }
            interfaces.append(interface)
        }
        if !interfaces.contains(where: { $0.network != nil }) { throw fail(interfacesNode, "\(what) is on no network") }

        var routes: [Topology.RouteSpec] = []
        if let routesNode = value(fields, "routes") {
            for routeNode in try list(routesNode, "routes of \(what)") {
                routes.append(try route(routeNode, host: what, interfaces: interfaces, networks: networks))
            }
        }

        var sysctls: [Topology.Sysctl] = []
        if let sysctlsNode = value(fields, "sysctls") {
            for entry in try entries(sysctlsNode, "sysctls of \(what)") {
                let text = try string(entry.value, "sysctl \(entry.key)")
                guard entry.key.hasPrefix("net."), !entry.key.contains("..") else {
                    throw fail(entry.keyNode, "sysctl \(entry.key) of \(what): only net.* keys belong to a network namespace")
                }
                sysctls.append(.init(key: entry.key, value: text))
            }
        }

        var services: [Topology.Service] = []
        if let servicesNode = value(fields, "services") {
            for serviceNode in try list(servicesNode, "services of \(what)") {
                let svcFields = try entries(serviceNode, "a service of \(what)", allowed: ["address", "port", "reply"])
                guard let addressNode = value(svcFields, "address"), let portNode = value(svcFields, "port") else {
                    throw fail(serviceNode, "a service of \(what) needs address and port")
                }
                let address = try address(addressNode, "service address")
                guard interfaces.contains(where: { $0.addresses.contains { $0.address == address } }) else {
                    throw fail(addressNode, "service address \(address) is not an address of \(what)")
                }
                let port = UInt16(try integer(portNode, "service port", range: 1...65535))
                if services.contains(where: { $0.address == address && $0.port == port }) {
                    throw fail(serviceNode, "service \(address):\(port) is declared twice on \(what)")
                }
                let reply = try value(svcFields, "reply").map { n throws(TopologyError) in try string(n, "service reply") } ?? "\(name)"
                if reply.contains("\n") { throw fail(serviceNode, "a service reply is one line") }
                services.append(.init(address: address, port: port, reply: reply))
            }
        }
        return Topology.Host(name: name, role: role, interfaces: interfaces, routes: routes, sysctls: sysctls,
                             services: services)
    }

    func route(_ node: Node, host what: String, interfaces: [Topology.Interface],
               networks: [Topology.Network]) throws(TopologyError) -> Topology.RouteSpec {
        let fields = try entries(node, "a route of \(what)", allowed: ["to", "via", "dev", "table", "metric", "src"])
        guard let toNode = value(fields, "to") else { throw fail(node, "a route of \(what) has no \"to\"") }
        let destination = try prefix(toNode, "route destination")
        guard destination.isCanonical else {
            throw fail(toNode, "route destination \(destination.cidr) has host bits set (did you mean \(destination.network.cidr)?)")
        }
        var spec = Topology.RouteSpec(destination: destination)
        if let viaNode = value(fields, "via") {
            let gateway = try address(viaNode, "gateway")
            // The gateway must be on a network this host is connected to, and not the host itself.
            let connected = interfaces.compactMap { i in i.network.flatMap { n in networks.first { $0.name == n } } }
            guard connected.contains(where: { $0.subnet.contains(gateway) }) else {
                throw fail(viaNode, "gateway \(gateway) of \(what) is not on a network \(what) is connected to")
            }
            if interfaces.contains(where: { $0.addresses.contains { $0.address == gateway } }) {
                throw fail(viaNode, "gateway \(gateway) is an address of \(what) itself")
            }
            spec.gateway = gateway
        }
        if let devNode = value(fields, "dev") {
            let dev = try string(devNode, "route device")
            guard interfaces.contains(where: { $0.name == dev }) else {
                throw fail(devNode, "route device \(dev) is not an interface of \(what)")
            }
            spec.device = dev
        }
        if spec.gateway == nil && spec.device == nil { throw fail(node, "a route of \(what) needs via or dev") }
        if let tableNode = value(fields, "table") {
            spec.table = UInt32(try integer(tableNode, "route table", range: 1...Int(UInt32.max)))
        }
        if let metricNode = value(fields, "metric") {
            spec.metric = UInt32(try integer(metricNode, "route metric", range: 0...Int(UInt32.max)))
        }
        if let srcNode = value(fields, "src") { spec.source = try address(srcNode, "route source") }
        return spec
    }
}

extension IPPrefix {
    /// The same address with another prefix length (the length is within range by construction here).
    func with(length: Int) -> IPPrefix { (try? IPPrefix(address, length: length)) ?? self }
}
