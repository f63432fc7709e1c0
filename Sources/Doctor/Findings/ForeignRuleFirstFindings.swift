import Netlink

/// `foreign-rule-first`: a foreign rule ahead of returnpath's band that decides its replies.
extension Doctor {
    /// A foreign rule ahead of returnpath's band that decides replies returnpath's rules would have decided.
    func foreignFirstFindings(_ checks: [ReplyCheck]) -> [Finding] {
        let ours = ourRules
        guard !ours.isEmpty, let firstOurs = ours.compactMap(\.rule.priority).min() else { return [] }
        var byRule: [DetailedRule: [ReplyCheck]] = [:]
        for row in checks {
            guard let lookup = row.replyResult.lookup, let rule = lookup.outcome.rule,
                  !isOurs(rule), !isKernelDefault(rule), (rule.rule.priority ?? 0) < firstOurs else { continue }
            let oursWouldMatch = ours.contains { path.routes.match($0, lookup.key).1 }
            if oursWouldMatch { byRule[rule, default: []].append(row) }
        }
        let band = "\(ownership.priorityBase)-\(ownership.priorityBase + ownership.priorityCount - 1)"
        let last = ownership.priorityBase + ownership.priorityCount - 1
        return byRule.keys.sorted { ($0.rule.priority ?? 0) < ($1.rule.priority ?? 0) }.map { (rule: DetailedRule) -> Finding in
            let rows: [ReplyCheck] = byRule[rule] ?? []
            let broken = rows.contains { $0.verdict != .ok }
            let services: String = Set(rows.map(\.label)).sorted().joined(separator: ", ")
            let pref = rule.rule.priority ?? 0
            var message = "rule \(pref) (\(ExplainText.ruleText(rule))) is not returnpath's and comes before its band \(band): "
            message += "it decides the replies of \(services) before returnpath's rules can"
            message += broken ? ", and sends them the wrong way" : " (the same way, for now)"
            var objects: [String] = ["rule \(rule)"]
            for row in rows { if let interface = row.interface { objects.append("service \(row.label) on \(interface)") } }
            return Finding(id: FindingID.foreignRuleFirst, severity: broken ? .error : .warning, message: message,
                           objects: objects, fix: ipCommand(["rule", "del"] + ruleArguments(rule), family: rule.rule.family),
                           hint: "or move it after priority \(last)")
        }
    }
}
