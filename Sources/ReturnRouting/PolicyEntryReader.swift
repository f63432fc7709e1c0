import Netlink
import YAMLFile

/// One interface entry of a policy file: which interface (`name`, `network`), its routers (`gateway`,
/// `gateway6`, `gateways`, `onlink`), its services and clients.
enum PolicyEntryReader {
    static let keys = ["name", "network", "gateway", "gateway6", "gateways", "onlink", "services", "servicesFrom", "clients"]

    static func entry(_ node: Node, _ reader: YAMLReader) throws(FileError) -> PolicyDocument.Entry {
        let fields = try reader.entries(node, "an interface", allowed: keys)
        var name: String?, network: IPPrefix?
        if let nameNode = reader.value(fields, "name") {
            let text = try reader.string(nameNode, "interface name")
            if let problem = Link.validate(name: text) { throw reader.fail(nameNode, problem) }
            name = text
        }
        if let networkNode = reader.value(fields, "network") {
            let prefix = try reader.prefix(networkNode, "network")
            guard prefix.isCanonical else {
                throw reader.fail(networkNode, "network \(prefix.cidr) has host bits set (did you mean \(prefix.network.cidr)?)")
            }
            network = prefix
        }
        guard name != nil || network != nil else { throw reader.fail(node, "an interface needs name or network") }
        var entry = PolicyDocument.Entry(name: name, network: network, gateway: nil, origin: "\(reader.file):\(node.mark?.line ?? 0)")
        let label = entry.label
        let gatewayNode = reader.value(fields, "gateway"), gateway6Node = reader.value(fields, "gateway6")
        let gatewaysNode = reader.value(fields, "gateways")
        if let gatewaysNode {
            if let other = gatewayNode ?? gateway6Node {
                throw reader.fail(other, "\(label): give gateway/gateway6 or gateways, not both")
            }
            for item in try reader.list(gatewaysNode, "gateways of \(label)") {
                let address = try reader.address(item, "gateways of \(label)")
                if entry.gateways.contains(address) { throw reader.fail(item, "gateway \(address) of \(label) is listed twice") }
                entry.gateways.append(address)
            }
            guard !entry.gateways.isEmpty else { throw reader.fail(gatewaysNode, "gateways of \(label) lists no routers") }
        } else {
            guard let gatewayNode else { throw reader.fail(node, "an interface needs gateway (or gateways)") }
            entry.gateway = try gateway(gatewayNode, "gateway of \(label)", auto: network?.family ?? .inet, reader)
            if let gateway6Node {
                let gateway6 = try gateway(gateway6Node, "gateway6 of \(label)", auto: .inet6, reader)
                guard gateway6.family == .inet6 else { throw reader.fail(gateway6Node, "gateway6 of \(label) must be an IPv6 address") }
                guard entry.gateway?.family == .inet else {
                    throw reader.fail(gateway6Node, "gateway of \(label) is already IPv6: give the IPv4 router as gateway and the IPv6 one as gateway6")
                }
                entry.gateway6 = gateway6
            }
        }
        if let onlinkNode = reader.value(fields, "onlink") {
            entry.onlink = try PolicyOwnershipReader.boolean(onlinkNode, "onlink of \(label)", reader)
        }
        let families = entry.families
        for key in ["services", "clients"] {
            guard let listNode = reader.value(fields, key) else { continue }
            // Per list, not per item: the lists hold up to 100,000 entries.
            let what = "\(key) of \(label)"
            let items = try reader.list(listNode, what)
            let hasInet = families.contains(.inet), hasInet6 = families.contains(.inet6)
            var prefixes: [IPPrefix] = []
            prefixes.reserveCapacity(items.count)
            for item in items {
                let prefix = try reader.prefix(item, what)
                guard prefix.isCanonical else {
                    throw reader.fail(item, "\(prefix.cidr) has host bits set (did you mean \(prefix.network.cidr)?)")
                }
                guard prefix.family == .inet6 ? hasInet6 : hasInet else {
                    let family = prefix.family == .inet6 ? "IPv6" : "IPv4"
                    throw reader.fail(item, "\(prefix.cidr) is \(family) but \(label) has no \(family) gateway (\(prefix.family == .inet6 ? "gateway6" : "gateway"): …)")
                }
                prefixes.append(prefix)
            }
            if key == "services" { entry.services = prefixes } else { entry.clients = prefixes }
        }
        if let fromNode = reader.value(fields, "servicesFrom") {
            entry.servicesFrom = try servicesFrom(fromNode, label, families, reader)
        }
        return entry
    }

    /// An address, or `auto` (the node's own gateway of `family` for the interface).
    static func gateway(_ node: Node, _ what: String, auto family: AddressFamily, _ reader: YAMLReader) throws(FileError) -> PolicyDocument.Gateway {
        if try reader.string(node, what) == "auto" { return .auto(family) }
        return .address(try reader.address(node, what))
    }

    static func servicesFrom(_ fromNode: Node, _ label: String, _ families: Set<AddressFamily>,
                             _ reader: YAMLReader) throws(FileError) -> Policy.ServicesFrom {
        let from = try reader.entries(fromNode, "servicesFrom of \(label)", allowed: ["interface", "prefixes"])
        guard let fromInterface = reader.value(from, "interface"), let prefixesNode = reader.value(from, "prefixes") else {
            throw reader.fail(fromNode, "servicesFrom of \(label) needs interface and prefixes")
        }
        let source = try reader.string(fromInterface, "servicesFrom interface")
        if let problem = Link.validate(name: source) { throw reader.fail(fromInterface, problem) }
        var prefixes: [IPPrefix] = []
        for item in try reader.list(prefixesNode, "servicesFrom prefixes of \(label)") {
            let prefix = try reader.prefix(item, "servicesFrom prefixes of \(label)")
            guard prefix.isCanonical else { throw reader.fail(item, "\(prefix.cidr) has host bits set (did you mean \(prefix.network.cidr)?)") }
            guard families.contains(prefix.family) else {
                throw reader.fail(item, "\(prefix.cidr): \(label) has no gateway of its family")
            }
            prefixes.append(prefix)
        }
        guard !prefixes.isEmpty else { throw reader.fail(prefixesNode, "servicesFrom of \(label) lists no prefixes") }
        return Policy.ServicesFrom(interface: source, prefixes: prefixes)
    }
}
