import Netlink

/// Everything a strategy needs on the node: rules, routes, an nftables table, sysctls. Pure: computed from the
/// policy and the interfaces' slots, compared with the kernel's state by `ReturnRouter`.
public struct Plan: Sendable, Equatable {
    public var strategy: Strategy
    public var rules: [Rule]
    public var routes: [Route]
    /// nil: no nftables table (static, source).
    public var nftables: NftTable?
    /// key → value, in order.
    public var sysctls: [Sysctl]

    public struct Sysctl: Sendable, Equatable {
        public var key: String
        public var value: String
    }
}

public enum Planner {
    /// Rules of the strategy start this far into the band. The places before hold rules that keep the main table:
    /// exempt destinations from the bottom up, and (ingress) requests arriving on a policy interface from the top
    /// down (priorityBase + 99 for slot 1, + 98 for slot 2, …).
    public static let exemptPlaces: UInt32 = 100

    /// Table of the interface in `slot` (1…): tableBase + slot. tableBase itself holds static routes.
    static func table(_ ownership: Ownership, _ slot: Int) -> UInt32 { ownership.tableBase + UInt32(slot) }

    /// Slots for the policy's interfaces: each keeps the slot `previous` gave it; a new interface takes the lowest
    /// slot no interface of the policy or of `previous` holds (so that replies of an interface being removed keep
    /// their table until its rule is gone), else the lowest one the policy does not use. Slots run 1…`capacity`;
    /// nil when the policy has more interfaces than that.
    public static func slots(for policy: Policy, previous: [String: Int], capacity: Int) -> [String: Int]? {
        var slots: [String: Int] = [:]
        for entry in policy.interfaces {
            if let slot = previous[entry.name], slot >= 1, slot <= capacity { slots[entry.name] = slot }
        }
        let taken = Swift.Set(slots.values), heldBefore = Swift.Set(previous.values)
        var fresh = (1...max(1, capacity)).filter { !taken.contains($0) && !heldBefore.contains($0) }
            + (1...max(1, capacity)).filter { !taken.contains($0) && heldBefore.contains($0) }
        for entry in policy.interfaces where slots[entry.name] == nil {
            guard !fresh.isEmpty, capacity >= 1 else { return nil }
            slots[entry.name] = fresh.removeFirst()
        }
        return slots
    }

    /// How many slots the ownership offers for `strategy`: marks tell interfaces apart (mark, ingress); tables
    /// hold one interface each (all strategies but static).
    public static func capacity(_ own: Ownership, _ strategy: Strategy) -> Int {
        let tables = Int(own.tableCount) - 1
        return strategy == .mark || strategy == .ingress ? min(tables, own.markValues) : tables
    }

    /// The plan; `slots` defaults to the policy's order (1, 2, …).
    public static func plan(_ policy: Policy, strategy: Strategy, slots given: [String: Int]? = nil) -> Plan {
        let slots = given ?? Dictionary(uniqueKeysWithValues: policy.interfaces.enumerated().map { ($1.name, $0 + 1) })
        let own = policy.ownership
        let proto = own.routeProtocol
        var rules: [Rule] = []
        var routes: [Route] = []
        var nft: NftTable?
        var sysctls: [Plan.Sysctl] = []
        // Interfaces in slot order: tables, marks, rules and sets come out sorted.
        let entries = policy.interfaces.sorted { (slots[$0.name] ?? 0) < (slots[$1.name] ?? 0) }

        // Exempt destinations keep the main table, ahead of everything else of ours.
        for (i, prefix) in policy.exempt.enumerated() {
            rules.append(Rule(family: prefix.family, priority: own.priorityBase + UInt32(i), destination: prefix,
                              table: RouteTable.main, proto: proto))
        }
        let first = own.priorityBase + exemptPlaces
        // The kernel keeps a rule list per family: each family gets the same band, the same priorities.
        let families = [AddressFamily.inet, .inet6].filter { family in entries.contains { $0.gateway(for: family) != nil } }

        switch strategy {
        case .static:
            for entry in entries {
                for client in entry.clients where entry.gateway(for: client.family) != nil {
                    routes.append(route(client, table: own.tableBase, proto: proto, entry))
                }
            }
            for family in families {
                rules.append(Rule(family: family, priority: first, table: own.tableBase, proto: proto))
            }
        case .source:
            var n: UInt32 = 0
            for entry in entries {
                let slot = slots[entry.name] ?? 0
                routes += defaultRoutes(own, slot, entry)
                for service in entry.services where entry.gateway(for: service.family) != nil {
                    rules.append(Rule(family: service.family, priority: first + n, source: service, table: table(own, slot), proto: proto))
                    n += 1
                }
            }
        case .mark, .ingress:
            let keep = hex(~own.markMask), mask = hex(own.markMask)
            var output: [String] = [], prerouting: [String] = [], fallback: [String] = []
            var sets: [NftTable.Set] = []
            let names = "{ " + entries.map { "\"\($0.name)\"" }.joined(separator: ", ") + " }"
            // (ingress) Services listed on several interfaces (anycast): no source address tells their replies apart.
            var ambiguous = Swift.Set<IPPrefix>()
            if strategy == .ingress {
                var count: [IPPrefix: Int] = [:]
                for entry in entries { for service in Swift.Set(entry.services) { count[service, default: 0] += 1 } }
                ambiguous = Swift.Set(count.filter { $0.value > 1 }.keys)
            }
            for entry in entries {
                let slot = slots[entry.name] ?? 0
                let value = own.mark(slot)
                let mark = hex(value), setMark = "meta mark set meta mark & \(keep) | \(mark)"
                let iif = "iifname \"\(entry.name)\""
                routes += defaultRoutes(own, slot, entry)
                for family in entry.families {
                    rules.append(Rule(family: family, priority: first + UInt32(slot - 1), fwmark: value, fwmask: own.markMask,
                                      table: table(own, slot), proto: proto))
                    // Requests marked on their way in (below, for rp_filter) keep main for their own route lookup: a
                    // request DNATed to a pod must go to the pod, not back out the interface. (The reverse-path
                    // check looks up with iif lo, so this rule does not apply to it.)
                    rules.append(Rule(family: family, priority: own.priorityBase + exemptPlaces - UInt32(slot), fwmark: value,
                                      fwmask: own.markMask, inputInterface: entry.name, table: RouteTable.main, proto: proto))
                }
                // The reverse-path check (rp_filter, IPv4 only) of a packet that carries our mark looks it up with the
                // mark.
                if entry.gateway(for: .inet) != nil {
                    sysctls.append(.init(key: "net.ipv4.conf.\(entry.name).src_valid_mark", value: "1"))
                }
                if strategy == .mark {
                    for set in serviceSets(entry, slot: slot, skipping: []) {
                        sets.append(set)
                        // Requests to the services carry the mark too: a strict rp_filter then checks their source
                        // against the interface's table, not main (where it would point at eth0 and drop them).
                        prerouting.append("\(iif) \(set.match) daddr @\(set.name) \(setMark)")
                        output.append("\(set.match) saddr @\(set.name) \(setMark)")
                    }
                } else if policy.ingressTracking == .socket {
                    // Requests to local addresses carry the mark; the accepted socket takes it (tcp_fwmark_accept):
                    // its replies carry it with no connection tracking. Also what a strict rp_filter needs.
                    prerouting.append("\(iif) fib daddr type local \(setMark)")
                    for set in serviceSets(entry, slot: slot, skipping: ambiguous) where !set.elements.isEmpty || entry.servicesFrom != nil {
                        sets.append(set)
                        // Sockets accepted before (no mark of their own): by source address.
                        output.append("meta mark & \(mask) == 0 \(set.match) saddr @\(set.name) \(setMark)")
                    }
                } else {
                    // Replies of connections that ingress has not seen come in (opened under another strategy, or
                    // while nothing tracked connections): by their source address, when the policy lists the service
                    // on this interface only. The restore rules come after and win for every tracked connection.
                    for set in serviceSets(entry, slot: slot, skipping: ambiguous) where !set.elements.isEmpty || entry.servicesFrom != nil {
                        sets.append(set)
                        fallback.append("\(set.match) saddr @\(set.name) \(setMark)")
                    }
                    // Every packet of a connection whose initiator is behind the interface, while the connection
                    // has no ingress mark yet: new connections, and those that existed before ingress was applied.
                    prerouting.append("\(iif) ct direction original ct mark & \(mask) == 0 ct mark set ct mark & \(keep) | \(mark)")
                    // Requests to a local address (a service, before any DNAT) carry the mark, for a strict
                    // rp_filter; their own route lookup keeps main (the iif rule above), so DNAT to pods still works.
                    prerouting.append("\(iif) fib daddr type local \(setMark)")
                    // Replies that are forwarded, not sent by a local socket (DNAT to a pod here, or a backend on
                    // another node): their mark comes back from the connection before they are routed.
                    prerouting.append("iifname != \(names) ct direction reply ct mark & \(mask) == \(mark) \(setMark)")
                    // Replies of local sockets.
                    output.append("ct mark & \(mask) == \(mark) \(setMark)")
                }
            }
            if strategy == .ingress && policy.ingressTracking == .socket {
                sysctls.append(.init(key: "net.ipv4.tcp_fwmark_accept", value: "1"))
                sysctls.append(.init(key: "net.ipv4.fwmark_reflect", value: "1"))
                if families.contains(.inet6) { sysctls.append(.init(key: "net.ipv6.fwmark_reflect", value: "1")) }
            }
            var chains: [NftTable.Chain] = []
            // Before routing (and, at mangle, before kube-proxy's DNAT).
            chains.append(.init(name: "prerouting", hook: "type filter hook prerouting priority mangle; policy accept;",
                                rules: prerouting))
            // A route-type chain: the kernel routes the packet again when its mark changed here.
            chains.append(.init(name: "output", hook: "type route hook output priority mangle; policy accept;", rules: fallback + output))
            nft = NftTable(sets: sets, chains: chains)
        }
        rules.sort { ($0.priority ?? 0, $0.family == .inet ? 0 : 1) < ($1.priority ?? 0, $1.family == .inet ? 0 : 1) }
        return Plan(strategy: strategy, rules: rules, routes: routes, nftables: nft, sysctls: sysctls)
    }

    static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

    /// The sets of an interface's services, one per family it has a gateway for (and services, or a servicesFrom
    /// prefix, of that family; always one of its gateway's family), without `skipping`.
    static func serviceSets(_ entry: Policy.Interface, slot: Int, skipping: Swift.Set<IPPrefix>) -> [NftTable.Set] {
        entry.families.compactMap { family in
            let services = entry.services.filter { $0.family == family && !skipping.contains($0) }
            let wanted = !services.isEmpty || family == entry.gateway.family
                || entry.servicesFrom?.prefixes.contains { $0.family == family } == true
            return wanted ? NftTable.Set(slot: slot, interface: entry.name, elements: services, family: family) : nil
        }
    }

    /// The interface's table: a default route per family it has a gateway for.
    static func defaultRoutes(_ own: Ownership, _ slot: Int, _ entry: Policy.Interface) -> [Route] {
        entry.families.map { route(.defaultRoute($0), table: table(own, slot), proto: own.routeProtocol, entry) }
    }

    /// A route to `destination` through the entry's routers of its family: via the gateway, or multipath over all
    /// of them (`gateways: [A, B]`), on-link when the entry says so.
    static func route(_ destination: IPPrefix, table: UInt32, proto: RouteProtocol, _ entry: Policy.Interface) -> Route {
        let routers = entry.routers(for: destination.family)
        guard routers.count > 1 else {
            return Route(destination: destination, table: table, proto: proto, gateway: routers.first, device: entry.name,
                         onlink: entry.onlink)
        }
        return Route(destination: destination, table: table, proto: proto,
                     nexthops: routers.map { Route.NextHop(gateway: $0, device: entry.name, onlink: entry.onlink) })
    }
}
