import Netlink

/// Findings from each row: `reply-asymmetric`, `reply-unreachable`, `request-dropped-by-rp-filter`, and
/// `kernel-disagrees` where the kernel answered a row's lookup otherwise.
extension Doctor {
    /// `explained`: interfaces whose dropped requests another finding already explains (src_valid_mark).
    func rowFindings(_ checks: [ReplyCheck], _ announcements: [Announcement], explained: Set<String>) -> [Finding] {
        var findings: [Finding] = []
        for row in checks {
            guard let interface = row.interface else { continue }
            let behind = row.clientPrefix.map { "clients behind \(interface) (\($0.cidr))" } ?? "a client behind \(interface)"
            var objects = ["service \(row.label)", "interface \(interface)"]
            if let backend = row.backend { objects.append("DNAT to \(backend)") }
            let from = row.backend.map { "\(row.label) (DNATed to \($0); the backend's replies are forwarded)" } ?? row.address.description
            if let rule = row.rule { objects.append("rule \(rule)") }
            if let route = row.replyResult.lookup?.outcome.route {
                objects.append("route \(route.description)")
            }
            switch row.verdict {
            case .asymmetric:
                let decided = row.rule.map { rule in
                    " — decided by rule \(rule.rule.priority ?? 0) (\(ExplainText.ruleText(rule)))" + (row.table.map { " → table \(RouteTable.name($0))" } ?? "")
                        + (row.replyResult.lookup?.outcome.route.map { ": \(ExplainText.routeText($0))" } ?? "")
                } ?? ""
                var fix = applyCommand()
                if let rule = row.rule, !isOurs(rule), !isKernelDefault(rule) {
                    fix = ipCommand(["rule", "del"] + ruleArguments(rule), family: rule.rule.family) + " && " + fix
                }
                findings.append(Finding(id: FindingID.replyAsymmetric, severity: .error,
                                        message: "replies from \(from) to \(behind) leave by \(row.replyResult.device ?? "?")"
                                            + (row.replyResult.gateway.map { " via \($0)" } ?? "") + decided
                                            + ": the request comes in on \(interface), the reply goes out another way and is lost (or dropped by a stateful firewall or a strict rp_filter on the way)",
                                        objects: objects, fix: fix, hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil))
            case .unreachable:
                if let check = row.reversePath, !check.passed {
                    if explained.contains(interface) { continue }
                    var requestObjects = ["service \(row.label)", "interface \(interface)",
                                          "sysctl net.ipv4.conf.\(interface).rp_filter=\(check.ownValue) (all=\(check.allValue))"]
                    if let reverse = check.lookup, let rule = reverse.outcome.rule { requestObjects.append("rule \(rule)") }
                    if let route = check.lookup?.outcome.route { requestObjects.append("route \(route.description)") }
                    findings.append(Finding(id: FindingID.requestDropped, severity: .error,
                                            message: "requests from \(behind) to \(row.label) never get in: \(check.reason)",
                                            objects: requestObjects,
                                            fix: applyCommand(),
                                            hint: "every returnpath strategy makes the reverse-path check pass; loose mode (rp_filter=2) would too, for every packet"))
                } else {
                    findings.append(Finding(id: FindingID.replyUnreachable, severity: .error,
                                            message: "replies from \(from) to \(behind) cannot leave: \(row.reason)",
                                            objects: objects, fix: applyCommand(),
                                            hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil))
                }
            case .ok, .unknown:
                break
            }
            for answer in [row.requestKernel, row.replyKernel].compactMap({ $0 }) where answer.agrees == false {
                findings.append(Finding(id: FindingID.kernelDisagrees, severity: .error,
                                        message: "doctor's model and the kernel disagree (\(answer.differences.joined(separator: "; "))): trust the kernel's answer and report this",
                                        objects: [answer.command, "kernel: \(answer.answer)"], fix: nil))
            }
        }
        return findings
    }
}
