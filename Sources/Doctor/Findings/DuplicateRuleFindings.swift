import Netlink

/// `duplicate-rule`: the same rule more than once.
extension Doctor {
    /// The same rule more than once (scripts that append on every run).
    func duplicateFindings() -> [Finding] {
        var groups: [String: [DetailedRule]] = [:]
        var order: [String] = []
        for entry in state.rules {
            let key = (entry.rule.family == .inet6 ? "-6 " : "") + ExplainText.ruleText(entry)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(entry)
        }
        return order.compactMap { key -> Finding? in
            guard let rules = groups[key], rules.count > 1 else { return nil }
            let extra = rules.dropFirst()
            let fix = extra.map { ipCommand(["rule", "del"] + ruleArguments($0), family: $0.rule.family) }.joined(separator: " && ")
            return Finding(id: FindingID.duplicateRule, severity: .error,
                           message: "\(rules.count) identical rules (\(key)) at priorities \(rules.map { String($0.rule.priority ?? 0) }.joined(separator: ", ")): whatever adds it appends on every run — the list grows, every lookup walks it, and deleting \"the\" rule leaves a copy in force",
                           objects: rules.map { "rule \($0)" }, fix: fix)
        }
    }
}
