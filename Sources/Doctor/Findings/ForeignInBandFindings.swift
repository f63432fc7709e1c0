import Netlink

/// `foreign-in-band`: objects inside returnpath's band or tables that are not its own.
extension Doctor {
    /// Foreign rules inside returnpath's band, foreign routes inside its tables: apply refuses to run.
    func bandFindings() -> [Finding] {
        var findings: [Finding] = []
        for entry in state.rules where ownership.ownsPriority(entry.rule.priority ?? 0) && !isOurs(entry) {
            findings.append(Finding(id: FindingID.foreignInBand, severity: .error,
                                    message: "rule \(entry.rule.priority ?? 0) is inside returnpath's priority band \(ownership.priorityBase)-\(ownership.priorityBase + ownership.priorityCount - 1) but is not returnpath's (protocol \(entry.rule.proto)): apply refuses to run",
                                    objects: ["rule \(entry)"], fix: ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family),
                                    hint: "or move returnpath's band (spec.ownership.priorityBase)"))
        }
        for route in state.routes where ownership.ownsTable(route.table) && !isOurs(route) {
            findings.append(Finding(id: FindingID.foreignInBand, severity: .error,
                                    message: "route \(route.description) is inside returnpath's table range \(ownership.tableBase)-\(ownership.tableBase + ownership.tableCount - 1) but is not returnpath's: apply refuses to run",
                                    objects: ["route \(route)"], fix: ipCommand(["route", "del"] + route.ipArguments, family: route.family),
                                    hint: "or move returnpath's tables (spec.ownership.tableBase)"))
        }
        return findings
    }
}
