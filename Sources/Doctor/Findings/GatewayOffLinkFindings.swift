import Netlink

/// `gateway-off-link`: policy gateways on no subnet connected to their interface.
extension Doctor {
    /// Policy gateways on no subnet connected to their interface (a link-local IPv6 gateway is always on-link).
    /// After a link flap IPv6 has lost the interface's global addresses (unless keep_addr_on_down is set): apply
    /// then refuses the gateway, and the IPv6 table cannot get its default route back.
    func offLinkGatewayFindings() -> [Finding] {
        var findings: [Finding] = []
        for entry in request.policy?.interfaces ?? [] where state.link(entry.name) != nil {
            for gateway in entry.routers where !entry.onlink && !gateway.isLinkLocal && !state.isLocal(gateway) {
                let own = state.addresses.filter { $0.interface == entry.name && $0.prefix.family == gateway.family }
                let connected = own.contains { $0.prefix.network.contains(gateway) || $0.peer == gateway }
                    || state.routes.contains { $0.table == RouteTable.main && $0.device == entry.name && $0.gateway == nil
                                               && $0.type == .unicast && !$0.destination.isDefault && $0.destination.contains(gateway) }
                guard !connected else { continue }
                let v6 = gateway.family == .inet6
                let have = own.map(\.prefix.cidr)
                findings.append(Finding(id: FindingID.gatewayOffLink, severity: .error,
                                        message: "the policy's \(v6 ? "IPv6 " : "")gateway \(gateway) of \(entry.name) is on no subnet connected to \(entry.name) (its \(v6 ? "IPv6" : "IPv4") addresses: \(have.isEmpty ? "none" : have.joined(separator: ", "))): replies cannot be sent to it, and apply refuses it"
                                            + (v6 ? ". IPv6 removes an interface's global addresses when its link goes down and does not restore them when it comes back up (unless net.ipv6.conf.\(entry.name).keep_addr_on_down=1)" : ""),
                                        objects: ["policy interface \(entry.name) \(v6 && entry.gateway != gateway ? "gateway6" : "gateway") \(gateway)"]
                                            + own.map { "address \($0.prefix.cidr) dev \(entry.name)" },
                                        fix: nil,
                                        hint: v6 ? "add \(entry.name)'s IPv6 address again (ip -6 address add ADDRESS/LEN dev \(entry.name)), set keep_addr_on_down=1 so that a link flap keeps it, then apply"
                                                 : "give \(entry.name) an address on the gateway's subnet, or correct the policy's gateway"))
            }
        }
        return findings
    }
}
