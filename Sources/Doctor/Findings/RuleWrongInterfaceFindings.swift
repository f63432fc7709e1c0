import Netlink

/// `rule-wrong-interface`: source rules that send a service to another interface's table (the POC's second typo).
extension Doctor {
    /// Source rules that send a service to the table of another interface than the one it is announced on.
    func ruleInterfaceFindings(_ announcements: [Announcement]) -> [Finding] {
        var findings: [Finding] = []
        for entry in state.rules where entry.rule.action == .lookup {
            guard let from = entry.rule.source, !from.isDefault else { continue }
            let table = entry.rule.table
            guard table != RouteTable.local else { continue }
            for a in announcements {
                guard let interface = a.interface else { continue }
                let address = Self.representative(a.service)
                guard from.contains(address) else { continue }
                let client = a.clients.first.map(Self.representative) ?? Self.genericClient(for: address.family)
                let key = FlowKey(source: address, destination: client, mark: 0, ipProtocol: 6)
                guard case .route(let route) = path.routes.tableLookup(table, key), route.type == .unicast,
                      let device = route.device, device != interface else { continue }
                // A table whose route for the client leaves by the right interface, to point the rule at instead.
                // Not returnpath's own tables: apply changes them.
                let candidates = Set(state.routes.filter { $0.family == address.family }.map(\.table)).filter {
                    $0 != RouteTable.local && $0 != RouteTable.main && $0 != table && !ownership.ownsTable($0)
                }.sorted()
                let right = candidates.first { t in
                    if case .route(let r) = path.routes.tableLookup(t, key), r.device == interface, r.gateway.map({ !state.isLocal($0) }) ?? true { return true }
                    return false
                }
                var fix: String
                if let right {
                    var corrected = entry.rule
                    corrected.table = right
                    corrected.proto = .unspecified
                    fix = ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family) + " && " + ipCommand(["rule", "add"] + corrected.ipArguments, family: entry.rule.family)
                } else {
                    fix = ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family) + " && " + applyCommand()
                }
                findings.append(Finding(id: FindingID.ruleWrongInterface, severity: .error,
                                        message: "rule \(entry.rule.priority ?? 0) (\(ExplainText.ruleText(entry))) sends the replies of \(a.service), announced on \(interface), to table \(RouteTable.name(table)), whose route leaves by \(device) (\(ExplainText.routeText(route))): they leave by another interface than their requests came in on, and a router with a strict rp_filter drops them (its way back to \(a.service) is \(interface)'s link)",
                                        objects: ["rule \(entry)", "route \(route.description)", "service \(a.service) on \(interface)"],
                                        fix: fix))
            }
        }
        return findings
    }
}
