import Netlink

extension ReturnRouter {
    /// Every check that needs the node's state, before any change. Throws `.invalid` (exit 2, nothing changed).
    public func validate(_ policy: Policy, strategy: Strategy) throws(ApplyError) {
        let own = policy.ownership
        guard !policy.interfaces.isEmpty else { throw .invalid("the policy lists no interfaces") }
        let links: [Link]
        do { links = try socket.links() } catch { throw .netlink(error) }
        var seen: [IPPrefix: String] = [:]
        seen.reserveCapacity(policy.interfaces.reduce(0) { $0 + $1.services.count })
        for entry in policy.interfaces {
            let at = entry.origin.map { "\($0): " } ?? ""
            guard links.contains(where: { $0.name == entry.name }) else {
                throw .invalid("\(at)unknown interface \(entry.name) in \(namespace)")
            }
            if let from = entry.servicesFrom, !links.contains(where: { $0.name == from.interface }) {
                throw .invalid("\(at)servicesFrom: unknown interface \(from.interface) in \(namespace)")
            }
            for gateway in entry.routers {
                let family = gateway.family
                // Local addresses are what the kernel routes as local: asked directly, no dump of every address.
                if try isLocal(gateway) {
                    throw .invalid("\(at)gateway \(gateway) of \(entry.name) is an address of this node itself (the POC's typo: the router is the other end)")
                }
                // A link-local IPv6 router is on the link by definition (routers announce themselves so); onlink
                // says the router is on the link whatever the interface's addresses.
                if gateway.isLinkLocal || entry.onlink { continue }
                let connected: [IPPrefix]
                do { connected = try socket.addresses(family: family, interface: entry.name).map(\.prefix) } catch {
                    throw .netlink(error)
                }
                guard connected.contains(where: { $0.contains(gateway) && !$0.address.isLinkLocal }) else {
                    throw .invalid("\(at)gateway \(gateway) is not on a subnet connected to \(entry.name) (\(connected.filter { !$0.address.isLinkLocal }.map(\.cidr).joined(separator: ", "))); onlink: true uses it on the link anyway")
                }
            }
            for prefix in entry.services + entry.clients where entry.gateway(for: prefix.family) == nil {
                let family = prefix.family == .inet6 ? "IPv6" : "IPv4"
                throw .invalid("\(at)\(prefix.cidr) is \(family) but \(entry.name) has no \(family) gateway")
            }
            for service in entry.services {
                // Source and mark tell interfaces apart by the reply's source address: one address, one interface.
                // Static routes by destination and ingress by the request's interface: an address announced
                // through several routers (anycast, ECMP) is theirs to handle.
                if let other = seen[service], strategy == .source || strategy == .mark {
                    throw .invalid("\(at)service \(service) is on both \(other) and \(entry.name): \(strategy) routes replies by their source address, which is the same on both paths; use --strategy ingress (replies leave by the interface the request came in on)")
                }
                seen[service] = seen[service] ?? entry.name
            }
            // An interval set holds disjoint intervals only (the kernel refuses an overlap; nft's auto-merge is not
            // set): a prefix inside another of the same interface would fail the apply half-way. Adjacent prefixes
            // (10.0.0.0/30, 10.0.0.4/30) are fine, and are kept as they are.
            if strategy == .mark, let (outer, inner) = Self.nestedServices(entry.services) {
                throw .invalid("\(at)service \(inner.cidr) of \(entry.name) is inside its service \(outer.cidr): an nftables interval set cannot hold both; list only \(outer.cidr)")
            }
            // An exempt prefix that covers the gateway or the clients would send their replies to main: the very
            // asymmetry the policy is for (Kubernetes' default service CIDR 10.96.0.0/12 covers 10.96–10.111.x.x).
            for exempt in policy.exempt {
                if let gateway = entry.routers.first(where: exempt.contains) {
                    throw .invalid("\(at)exempt prefix \(exempt.cidr) covers \(gateway), the gateway of \(entry.name): replies would keep using the main table")
                }
                if let client = entry.clients.first(where: { exempt.contains($0) || $0.contains(exempt) }) {
                    throw .invalid("\(at)exempt prefix \(exempt.cidr) overlaps client prefix \(client.cidr) of \(entry.name): replies would keep using the main table")
                }
            }
            switch strategy {
            case .static where entry.clients.isEmpty:
                throw .invalid("\(at)static needs client prefixes on \(entry.name) (clients: […])")
            case .source where entry.services.isEmpty && entry.servicesFrom == nil,
                 .mark where entry.services.isEmpty && entry.servicesFrom == nil:
                throw .invalid("\(at)\(strategy) needs service addresses on \(entry.name) (services: […] or servicesFrom: {interface: lo, prefixes: […]})")
            default: break
            }
        }
        if strategy == .mark || strategy == .ingress {
            if own.markMask & 0xc000 != 0 && !own.allowKubeProxyMarks {
                throw .invalid("mark mask \(Planner.hex(own.markMask)) overlaps kube-proxy's 0x4000/0x8000 (set allowKubeProxyMarks: true to allow)")
            }
            guard policy.interfaces.count <= own.markValues else {
                throw .invalid("mark mask \(Planner.hex(own.markMask)) tells \(own.markValues) interfaces apart; the policy has \(policy.interfaces.count)")
            }
        }
        let strategyRules = strategy == .source ? policy.interfaces.reduce(0) { $0 + $1.services.count }
                                                : policy.interfaces.count
        let mainPlaces = policy.exempt.count + (strategy == .ingress || strategy == .mark ? policy.interfaces.count : 0)
        guard mainPlaces <= Int(Planner.exemptPlaces),
              UInt64(Planner.exemptPlaces) + UInt64(strategyRules) <= UInt64(own.priorityCount) else {
            let advice = strategy == .source
                ? ": use --strategy mark (one rule per interface, the services in an nftables set) or widen spec.ownership.priorityCount"
                : ""
            throw .invalid("the priority band of \(own.priorityCount) cannot hold \(policy.exempt.count) exempt (at most \(Planner.exemptPlaces) with mark's and ingress's one per interface) and \(strategyRules) strategy rules\(advice)")
        }
        guard policy.interfaces.count + 1 <= Int(own.tableCount) else {
            throw .invalid("the table range of \(own.tableCount) cannot hold \(policy.interfaces.count + 1) tables")
        }
    }

    /// A prefix and another inside it (or equal to it listed twice with different lengths), among services that
    /// are not all host addresses; nil when they are disjoint.
    static func nestedServices(_ services: [IPPrefix]) -> (IPPrefix, IPPrefix)? {
        for family in [AddressFamily.inet, .inet6] {
            let prefixes = services.filter { $0.family == family }
            guard prefixes.contains(where: { !$0.isHost }) else { continue }
            // By address, then shorter first: a prefix inside another comes after it, and after any prefix that
            // is inside it too.
            let sorted = Set(prefixes).sorted { ($0.address, $0.length) < ($1.address, $1.length) }
            var cover: IPPrefix?
            for prefix in sorted {
                if let outer = cover, outer.contains(prefix.address) { return (outer, prefix) }
                cover = prefix
            }
        }
        return nil
    }

    /// Whether the kernel routes `address` as local here. "Unreachable" means it is not local.
    func isLocal(_ address: IPAddress) throws(ApplyError) -> Bool {
        do { return try socket.lookup(RouteQuery(destination: address)).type == .local } catch {
            if let errno = error.errno, errno == .networkUnreachable || errno == .noRouteToHost {
                return false
            }
            throw .netlink(error)
        }
    }
}
