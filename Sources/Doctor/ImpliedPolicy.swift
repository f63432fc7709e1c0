import Netlink
import ReturnRouting

/// Rebuilding a policy from the record of the last apply, when no policy is given: what drift is measured against.
extension Doctor {
    /// The policy the record and the kernel imply: the record's interfaces (by slot), each one's gateway from its
    /// table's default route (0.0.0.0 when it is gone), its services from returnpath's own objects (mark and
    /// ingress: the nftables sets; source: the from-rules; otherwise none), its clients from static routes.
    func impliedPolicy(_ record: AppliedRecord, lo: [IPPrefix], _ notes: inout [String]) -> Policy {
        let own = record.ownership
        var interfaces: [Policy.Interface] = []
        for (name, slot) in record.slots.sorted(by: { $0.value < $1.value }) {
            let table = own.tableBase + UInt32(slot)
            // A multipath default route (gateways: [A, B]) gives every router; the first is the gateway.
            let routers = state.routes(inTable: table, family: .inet).first { $0.destination.isDefault && $0.proto == own.routeProtocol }?.gateways ?? []
            let routers6 = state.routes(inTable: table, family: .inet6).first { $0.destination.isDefault && $0.proto == own.routeProtocol }?.gateways ?? []
            let gateway = routers.first, gateway6 = routers6.first
            var services: [IPPrefix] = []
            switch record.strategy {
            case .mark?, .ingress?:
                // mark's sets; ingress keeps the same sets (of the services listed on one interface) for its
                // by-source fallback.
                for set in ["svc_\(slot)", "svcnet_\(slot)", "svc6_\(slot)", "svcnet6_\(slot)"] {
                    if let collection = state.nftables.collection(family: "inet", table: "returnpath", name: set) {
                        services += Self.services(in: collection)
                    }
                }
            case .source?:
                services = state.rules.filter { $0.rule.proto == own.routeProtocol && own.ownsPriority($0.rule.priority ?? 0)
                                                && $0.rule.table == table }.compactMap(\.rule.source)
            default:
                services = []
            }
            let clients = record.strategy == .static
                ? state.routes(inTable: own.tableBase).filter { $0.device == name && $0.proto == own.routeProtocol }.map(\.destination)
                : []
            // An interface with IPv6 services (or an IPv6 default route in its table) has a gateway6; without a
            // default route its gateway is unknown (0.0.0.0 / ::), as for IPv4.
            let hasV6 = gateway6 != nil || services.contains { $0.family == .inet6 }
            let hasV4 = gateway != nil || services.contains { $0.family == .inet } || !hasV6
            if hasV4 && gateway == nil { notes.append("table \(table) of \(name) has no default route: its gateway is unknown") }
            if hasV6 && gateway6 == nil { notes.append("table \(table) of \(name) has no IPv6 default route: its gateway6 is unknown") }
            let first: IPAddress = hasV4 ? (gateway ?? .v4(0)) : (gateway6 ?? .v6(0, 0))
            var entry = Policy.Interface(name: name, gateway: first, gateway6: hasV4 && hasV6 ? (gateway6 ?? .v6(0, 0)) : nil,
                                         services: services, clients: clients)
            entry.alternateGateways = Array(routers.dropFirst()) + Array(routers6.dropFirst())
            interfaces.append(entry)
        }
        notes.append("no policy given: checking the interfaces of the last apply (\(interfaces.map(\.name).joined(separator: ", ")), strategy \(record.strategy?.rawValue ?? "unknown")) and the services returnpath's objects name")
        var policy = Policy(name: "recorded", strategy: record.strategy, interfaces: interfaces)
        policy.ownership = own
        return policy
    }

    /// The services an nftables set of returnpath's names: its address and prefix elements.
    static func services(in set: NftRuleset.Collection) -> [IPPrefix] {
        set.elements.compactMap { element -> IPPrefix? in
            switch element {
            // apply writes only addresses and prefixes into these sets; anything else (a hand edit) names no
            // service, and the drift check reports the set's elements as they are.
            case .string(let s): return try? IPPrefix(parsing: s)
            case .prefix(let a, let l): return IPAddress(a).flatMap { try? IPPrefix($0, length: l) }
            default: return nil
            }
        }
    }
}
