import Netlink
import ReturnRouting

/// What doctor checks: each service on each interface it is announced on (from the policy, else the record and what
/// the kernel has of it, else the global addresses on lo), and a row more per port a nat chain DNATs.
extension Doctor {
    /// A service announced on an interface (its gateway and clients when known).
    struct Announcement {
        var service: IPPrefix
        var interface: String?
        var gateway: IPAddress?
        var clients: [IPPrefix]
        /// A port the node DNATs for this service.
        var port: UInt16? = nil
    }

    /// (address, port) pairs nat prerouting chains DNAT: `ip daddr A tcp dport P … dnat to …`.
    func dnatEntries() -> [(IPAddress, UInt16)] {
        var entries: [(IPAddress, UInt16)] = []
        for chain in state.nftables.baseChains(hook: "prerouting") where chain.type == "nat" {
            for rule in state.nftables.rules(of: chain) {
                guard rule.statements.contains(where: { if case .dnat = $0 { return true } else { return false } }) else { continue }
                var address: IPAddress?, port: UInt16?
                for statement in rule.statements {
                    guard case .match("==", let left, let right) = statement else { continue }
                    if case .payload(let family, "daddr") = left, family == "ip" || family == "ip6", case .string(let text) = right { address = IPAddress(text) }
                    if case .payload(let proto, "dport") = left, proto == "tcp" || proto == "th", case .number(let n) = right {
                        port = UInt16(exactly: n)
                    }
                }
                if let address, let port, !entries.contains(where: { $0 == (address, port) }) { entries.append((address, port)) }
            }
        }
        return entries
    }

    /// Adds a row per DNATed port of each announced service.
    func withDNAT(_ announcements: [Announcement]) -> [Announcement] {
        let entries = dnatEntries()
        guard !entries.isEmpty else { return announcements }
        var result = announcements
        for a in announcements where a.interface != nil {
            for (address, port) in entries where a.service.contains(address) {
                var extra = a
                extra.service = IPPrefix(host: address)
                extra.port = port
                result.append(extra)
            }
        }
        return result
    }

    /// The services and their interfaces: from the policy, else the record and what the kernel has of it, else lo.
    /// Also the policy the record implies (for drift), when there is no policy.
    func announcements(_ notes: inout [String]) -> ([Announcement], Policy?) {
        let lo = state.addresses.filter { $0.interface == "lo" && $0.scope == .universe && !$0.prefix.address.isLoopback }
            .map { IPPrefix(host: $0.prefix.address) }
        if let policy = request.policy {
            var result: [Announcement] = []
            for entry in policy.interfaces {
                let services = entry.services.isEmpty ? lo : entry.services
                if entry.services.isEmpty && !lo.isEmpty {
                    notes.append("\(entry.name) lists no services: checking the addresses on lo (\(lo.map(\.description).joined(separator: ", ")))")
                }
                for service in services {
                    // Each family has its gateway and clients: an IPv6 service replies to IPv6 clients via gateway6.
                    let clients = entry.clients.filter { $0.family == service.family }
                    result.append(Announcement(service: service, interface: entry.name, gateway: entry.gateway(for: service.family),
                                               clients: clients))
                }
            }
            return (result, nil)
        }
        if let record = state.record, !record.slots.isEmpty {
            let implied = impliedPolicy(record, lo: lo, &notes)
            var result: [Announcement] = []
            for entry in implied.interfaces {
                for service in entry.services.isEmpty ? lo : entry.services {
                    let gateway = entry.gateway(for: service.family)
                    result.append(Announcement(service: service, interface: entry.name,
                                               gateway: gateway == .v4(0) ? nil : gateway,
                                               clients: entry.clients.filter { $0.family == service.family }))
                }
            }
            return (result, implied)
        }
        notes.append("no policy and no record of an apply: the services are the global addresses on lo")
        return (lo.map { Announcement(service: $0, interface: nil, gateway: nil, clients: []) }, nil)
    }
}
