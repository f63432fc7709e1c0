import Glibc
import Netlink

/// A policy as one node applies it, and where each value came from.
public struct Resolution: Sendable {
    /// One resolved value and its source: ("gateway 10.1.2.1", "main table, default via 10.1.2.1 dev ens5 proto dhcp metric 101").
    public struct Value: Sendable, Equatable {
        public var what: String
        public var from: String
        public init(what: String, from: String) {
            self.what = what
            self.from = from
        }
    }

    /// One entry of the document as this node sees it.
    public struct Entry: Sendable {
        /// FILE:LINE.
        public var origin: String
        public var label: String
        /// The interface it resolved to.
        public var interface: Policy.Interface?
        public var values: [Value]
        /// Why it does not resolve on this node.
        public var problem: String?
    }

    public var node: String
    public var nodeSource: String
    /// The spec.nodes item that applies to this node, if any.
    public var group: PolicyDocument.NodeGroup?
    /// The resolved entries only: an entry that does not resolve is left out.
    public var policy: Policy
    public var entries: [Entry]
    /// "spec.exempt", or the spec.nodes item whose exempt replaced it.
    public var exemptFrom: String
    /// A problem that is no entry's (no interfaces for this node at all).
    public var problem: String?

    /// Every reason the policy does not resolve whole on this node, as FILE:LINE: what, the node, what was looked for.
    public var problems: [String] {
        (problem.map { [$0] } ?? []) + entries.compactMap { entry in
            entry.problem.map { "\(entry.origin): \(entry.label) on node \(node): \($0)" }
        }
    }

    public var isResolved: Bool { problems.isEmpty }
}

public enum PolicyResolver {
    /// Resolves `document` for the node `facts` describe. Pure: the same document and facts give the same answer.
    public static func resolve(_ document: PolicyDocument, facts: NodeFacts) -> Resolution {
        let group = document.nodes.first { item in item.names.contains { fnmatch($0, facts.name, 0) == 0 } }
        let entries = group?.interfaces ?? document.interfaces
        var resolved: [Resolution.Entry] = []
        var claimed: [String: String] = [:]
        for entry in entries {
            var result = resolve(entry, facts: facts)
            if let name = result.interface?.name {
                if let other = claimed[name] {
                    result.problem = "resolves to \(name), as the entry at \(other) does"
                    result.interface = nil
                } else {
                    claimed[name] = entry.origin
                }
            }
            resolved.append(result)
        }
        var problem: String?
        if entries.isEmpty {
            problem = document.nodes.isEmpty ? "the policy lists no interfaces"
                : "node \(facts.name) matches no spec.nodes item (\(document.nodes.map { $0.names.joined(separator: ", ") }.joined(separator: "; "))) and spec.interfaces is empty"
        }
        let policy = Policy(name: document.name, strategy: document.strategy, interfaces: resolved.compactMap(\.interface),
                            exempt: group?.exempt ?? document.exempt, ownership: document.ownership,
                            ingressTracking: document.ingressTracking)
        return Resolution(node: facts.name, nodeSource: facts.nameSource, group: group, policy: policy, entries: resolved,
                          exemptFrom: group?.exempt != nil ? "spec.nodes item \(group?.index ?? 0)" : "spec.exempt", problem: problem)
    }

    /// A document that needs no node (checked by the caller): its entries as they are, interfaces not checked.
    public static func fixed(_ document: PolicyDocument) -> Policy {
        let facts = NodeFacts(name: "", nameSource: "", links: [])
        let interfaces = document.interfaces.compactMap { resolve($0, facts: facts, checkLinks: false).interface }
        return Policy(name: document.name, strategy: document.strategy, interfaces: interfaces, exempt: document.exempt,
                      ownership: document.ownership, ingressTracking: document.ingressTracking)
    }

    static func resolve(_ entry: PolicyDocument.Entry, facts: NodeFacts, checkLinks: Bool = true) -> Resolution.Entry {
        var result = Resolution.Entry(origin: entry.origin, label: entry.label, interface: nil, values: [], problem: nil)
        // The interface.
        let name: String
        if let network = entry.network {
            let found = facts.addresses.filter { network.contains($0.prefix.address) }
            let names = Array(Set(found.map(\.interface))).sorted()
            guard let only = names.first else {
                result.problem = "no interface has an address in \(network.cidr)"
                return result
            }
            guard names.count == 1 else {
                result.problem = "\(network.cidr) has addresses on several interfaces: \(names.joined(separator: ", "))"
                return result
            }
            if let given = entry.name, given != only {
                result.problem = "the address in \(network.cidr) is on \(only), not on \(given)"
                return result
            }
            let addresses = found.map(\.prefix.cidr).joined(separator: ", ")
            result.values.append(.init(what: "interface \(only)", from: "network \(network.cidr): \(addresses) on \(only)"))
            name = only
        } else if let given = entry.name {
            if checkLinks && !facts.links.contains(given) {
                result.problem = "unknown interface \(given) on this node"
                return result
            }
            result.values.append(.init(what: "interface \(given)", from: "policy"))
            name = given
        } else {
            result.problem = "an interface needs name or network"
            return result
        }
        // The routers.
        var routers: [IPAddress] = [], onlink = entry.onlink
        if entry.onlink { result.values.append(.init(what: "onlink", from: "policy")) }
        for address in entry.gateways {
            routers.append(address)
            result.values.append(.init(what: "gateway \(address)", from: "policy (gateways)"))
        }
        for gateway in [entry.gateway, entry.gateway6].compactMap({ $0 }) {
            switch gateway {
            case .address(let address):
                routers.append(address)
                result.values.append(.init(what: "gateway \(address)", from: "policy"))
            case .auto(let family):
                guard let (route, found) = autoGateway(family, interface: name, routes: facts.routes) else {
                    result.problem = "gateway\(family == .inet6 && entry.gateway6 != nil ? "6" : ""): auto found no \(family == .inet6 ? "IPv6" : "IPv4") route with a gateway through \(name) in a table returnpath does not own (main first, a default route first, lowest metric first)"
                    return result
                }
                let source = "\(RouteTable.name(route.table)) table, \(summary(route))"
                for address in found where !routers.contains(address) {
                    routers.append(address)
                    result.values.append(.init(what: "gateway \(address)", from: source))
                }
                if !onlink && (route.onlink || route.nexthops.contains(where: \.onlink)) {
                    onlink = true
                    result.values.append(.init(what: "onlink", from: source))
                }
            }
        }
        let v4 = routers.filter { $0.family == .inet }, v6 = routers.filter { $0.family == .inet6 }
        guard let primary = v4.first ?? v6.first else {
            result.problem = "no gateway"
            return result
        }
        var interface = Policy.Interface(name: name, gateway: primary, gateway6: primary.family == .inet ? v6.first : nil,
                                         services: entry.services, clients: entry.clients, origin: entry.origin)
        interface.alternateGateways = Array(v4.dropFirst()) + Array(v6.dropFirst())
        interface.onlink = onlink
        interface.servicesFrom = entry.servicesFrom
        for prefix in entry.services { result.values.append(.init(what: "service \(prefix.cidr)", from: "policy")) }
        for prefix in entry.clients { result.values.append(.init(what: "client \(prefix.cidr)", from: "policy")) }
        result.interface = interface
        return result
    }

    /// `gateway: auto`: the first route of `family` with a gateway through `interface` — main first (the routes
    /// come so), a default route before others, the lowest metric first — and its gateways through it.
    static func autoGateway(_ family: AddressFamily, interface: String, routes: [Route]) -> (Route, [IPAddress])? {
        let candidates = routes.enumerated().compactMap { (i, route) -> (Int, Route, [IPAddress])? in
            guard route.family == family, route.type == .unicast else { return nil }
            let through: [IPAddress]
            if route.nexthops.isEmpty {
                guard route.device == interface, let gateway = route.gateway else { return nil }
                through = [gateway]
            } else {
                through = route.nexthops.filter { $0.device == interface }.compactMap(\.gateway)
            }
            return through.isEmpty ? nil : (i, route, through)
        }
        func rank(_ c: (Int, Route, [IPAddress])) -> (UInt32, Int, UInt32, Int) {
            (c.1.table == RouteTable.main ? 0 : c.1.table, c.1.destination.length == 0 ? 0 : 1, c.1.effectiveMetric, c.0)
        }
        guard let best = candidates.min(by: { rank($0) < rank($1) }) else { return nil }
        return (best.1, best.2)
    }

    /// A route as `ip route` shows it, without its table: "default via 10.1.2.1 dev ens5 proto dhcp metric 101".
    static func summary(_ route: Route) -> String {
        var copy = route
        copy.table = RouteTable.main
        var args = copy.ipArguments
        if route.destination.length == 0, let i = args.firstIndex(of: route.destination.description) { args[i] = "default" }
        return args.joined(separator: " ")
    }
}
