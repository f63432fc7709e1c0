import Netlink

/// `table-without-default`: rules that look up a table a link flap emptied.
extension Doctor {
    /// Rules that look up a table that is empty or has no default route.
    func tableFindings(_ announcements: [Announcement]) -> [Finding] {
        struct FamilyTable: Hashable, Comparable {
            var family: AddressFamily
            var table: UInt32
            static func < (a: FamilyTable, b: FamilyTable) -> Bool { (a.family.rawValue, a.table) < (b.family.rawValue, b.table) }
        }
        // Per family: an IPv6 rule looks up the IPv6 routes of its table, which a link flap empties too.
        var byTable: [FamilyTable: [DetailedRule]] = [:]
        for entry in state.rules where entry.rule.action == .lookup {
            let t = entry.rule.table
            guard ![RouteTable.local, RouteTable.main, RouteTable.default, RouteTable.unspecified].contains(t) else { continue }
            // returnpath's static table holds client routes, no default: that is its design.
            if isOurs(entry) && strategy == .static && t == ownership.tableBase { continue }
            byTable[FamilyTable(family: entry.rule.family, table: t), default: []].append(entry)
        }
        var findings: [Finding] = []
        for (key, rules) in byTable.sorted(by: { $0.key < $1.key }) {
            let table = key.table, family = key.family
            let v6 = family == .inet6 ? "IPv6 " : ""
            let routes = state.routes(inTable: table, family: family)
            if routes.contains(where: { $0.destination.isDefault }) { continue }
            let ours = rules.contains(where: isOurs) || ownership.ownsTable(table)
            let empty = routes.isEmpty
            // The gateway the table should lead to: a from-rule's service's interface, or our record's slot.
            var fix: String?
            let services = rules.compactMap(\.rule.source)
            if ours {
                fix = applyCommand()
            } else if let a = announcements.first(where: { a in services.contains { $0.contains(Self.representative(a.service)) } }),
                      let interface = a.interface, let gateway = a.gateway, gateway.family == family, !state.isLocal(gateway) {
                fix = ipCommand(["route", "replace", "default", "via", gateway.description, "dev", interface, "table", String(table)], family: family)
            }
            let severity: Finding.Severity = empty || ours ? .error : .warning
            let what = empty ? (v6.isEmpty ? "is empty" : "has no IPv6 routes") : "has no \(v6)default route (only \(routes.map { $0.destination.description }.joined(separator: ", ")))"
            findings.append(Finding(id: FindingID.tableWithoutDefault, severity: severity,
                                    message: "\(v6)\(rules.count == 1 ? "rule" : "rules") \(rules.map { String($0.rule.priority ?? 0) }.joined(separator: ", ")) \(rules.count == 1 ? "looks" : "look") up table \(RouteTable.name(table)), which \(what): \(rules.count == 1 ? "its" : "their") lookups fall through to the next rules (main). A link that goes down loses its routes in every table, and coming back up restores only the connected ones: whoever made this table must add its routes again",
                                    objects: rules.map { "\(v6)rule \($0)" } + ["\(v6)table \(RouteTable.name(table)): \(routes.isEmpty ? "no routes" : routes.map(\.description).joined(separator: "; "))"],
                                    fix: fix, hint: fix == nil ? "add the table's default route again (ip \(v6.isEmpty ? "" : "-6 ")route replace default via GATEWAY dev IF table \(table))" : nil))
        }
        return findings
    }
}
