import Netlink
import TextFormat

/// `returnpath doctor` as text: what was checked against what, the table, then the findings.
public enum DoctorText {
    public static func render(_ report: DoctorReport) -> String {
        var lines: [String] = []
        lines.append("doctor: \(report.target) — \(sourceText(report.source))" + (report.strategy.map { ", strategy \($0.rawValue)" } ?? ""))
        for note in report.notes { lines.append("  note: \(note)") }
        lines.append("")
        if !report.checks.isEmpty {
            let headers = ["SERVICE", "INTERFACE", "REPLY EGRESS", "VIA", "DECIDED BY", "VERDICT"]
            let rows = report.checks.map { c -> [String] in
                let decided = c.rule.map { "rule \($0.rule.priority ?? 0) → table \(c.table.map(RouteTable.name) ?? "-")" } ?? "-"
                let egress: String
                switch c.replyResult {
                case .sent(_, let device, _): egress = device
                case .local: egress = "lo"
                case .refused(let errno, _, _): egress = "(\(errno))"
                case .dropped: egress = "(dropped)"
                }
                var verdict = c.verdict.rawValue
                if c.verdict == .unreachable, c.requestResult.map({ if case .local = $0 { return false } else { return true } }) == true {
                    verdict += " (request)"
                }
                return [c.label, c.interface ?? "?", egress, c.replyResult.gateway?.description ?? "-", decided, verdict]
            }
            let widths = headers.indices.map { i in ([headers[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
            func line(_ cells: [String]) -> String {
                cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padded(to: widths[i] + 2) }.joined()
            }
            lines.append(line(headers))
            lines += rows.map(line)
            lines.append("")
        }
        for finding in report.findings {
            lines.append("\(finding.severity.rawValue) \(finding.id): \(finding.message)")
            for object in finding.objects { lines.append("  - \(object)") }
            if let fix = finding.fix { lines.append("  fix: \(fix)") }
            if let hint = finding.hint { lines.append("  hint: \(hint)") }
        }
        let errors = report.findings.filter { $0.severity == .error }.count
        let warnings = report.findings.filter { $0.severity == .warning }.count
        if !report.findings.isEmpty { lines.append("") }
        let infos = report.findings.filter { $0.severity == .info }.count
        lines.append(errors == 0 && warnings == 0
                     ? "no problems found" + (infos == 0 ? "" : " (\(infos) note\(infos == 1 ? "" : "s") above)")
                     : "\(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s")")
        return lines.joined(separator: "\n")
    }

    static func sourceText(_ source: DoctorRequest.PolicySource) -> String {
        switch source {
        case .file(let path): return "checked against \(path)"
        case .lab(let lab): return "checked against the policy derived from lab \(lab)"
        case .record: return "checked against the record of the last apply"
        case .addresses: return "no policy: the services are the addresses on lo"
        }
    }
}
