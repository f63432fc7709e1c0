/// `nft-rule-not-evaluated` and `mark-set-in-filter-chain`: what the nftables traces of the rows say.
extension Doctor {
    /// Rules on the requests' and replies' paths that doctor could not evaluate, and marks set where no re-route
    /// follows.
    func nftFindings(_ checks: [ReplyCheck]) -> [Finding] {
        var unevaluated: [String: String] = [:]
        var filterMarks: Set<String> = []
        for row in checks {
            for trace in [row.requestTrace, row.replyTrace].compactMap({ $0 }) {
                for step in trace.steps where step.outcome == .unevaluated {
                    unevaluated["\(step.chain) handle \(step.handle): \(step.text)"] = step.reason
                }
                if trace.markChangedWithoutReroute { filterMarks.insert(row.service.description) }
            }
        }
        var findings: [Finding] = []
        if !unevaluated.isEmpty {
            findings.append(Finding(id: FindingID.nftRuleNotEvaluated, severity: .warning,
                                    message: "nftables rules on the requests' or replies' path that doctor cannot evaluate (treated as not matching): its marks may be wrong where they apply",
                                    objects: unevaluated.keys.sorted().map { "\($0) — \(unevaluated[$0] ?? "")" }, fix: nil))
        }
        if !filterMarks.isEmpty {
            findings.append(Finding(id: FindingID.markInFilterChain, severity: .warning,
                                    message: "a filter-type output chain changes the mark of replies from \(filterMarks.sorted().joined(separator: ", ")): the kernel does not route a packet again for a mark set there",
                                    objects: [], fix: nil, hint: "set marks for routing in a chain of type route (type route hook output)"))
        }
        return findings
    }
}
