import Foundation
import Netlink

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
                cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0) }.joined()
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

/// `returnpath doctor --json`.
public struct DoctorOutput: Encodable, Sendable {
    struct Kernel: Encodable {
        var command: String
        var answer: String
        var agrees: Bool?
        var differences: [String]

        /// Absent values are `null`, as the docs say (the synthesized encoding would leave `agrees` out).
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(command, forKey: .command)
            try c.encode(answer, forKey: .answer)
            try c.encode(agrees, forKey: .agrees)
            try c.encode(differences, forKey: .differences)
        }
        enum CodingKeys: String, CodingKey { case command, answer, agrees, differences }
    }

    struct Check: Encodable {
        var service: String
        var port: UInt16?
        var backend: String?
        var interface: String?
        var client: String
        var clientPrefix: String?
        var egress: String?
        var gateway: String?
        var rule: UInt32?
        var table: String?
        var verdict: ReplyCheck.Verdict
        var reason: String
        var requestMark: String
        var replyMark: String
        var request: String?
        var rpFilter: String?
        var kernel: Kernel
        var requestKernel: Kernel?

        enum CodingKeys: String, CodingKey {
            case service, port, backend, interface, client, egress, gateway, rule, table, verdict, reason, request, kernel
            case clientPrefix = "client_prefix", requestMark = "request_mark", replyMark = "reply_mark"
            case rpFilter = "rp_filter", requestKernel = "request_kernel"
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(service, forKey: .service)
            try c.encode(port, forKey: .port)
            try c.encode(backend, forKey: .backend)
            try c.encode(interface, forKey: .interface)
            try c.encode(client, forKey: .client)
            try c.encode(clientPrefix, forKey: .clientPrefix)
            try c.encode(egress, forKey: .egress)
            try c.encode(gateway, forKey: .gateway)
            try c.encode(rule, forKey: .rule)
            try c.encode(table, forKey: .table)
            try c.encode(verdict, forKey: .verdict)
            try c.encode(reason, forKey: .reason)
            try c.encode(requestMark, forKey: .requestMark)
            try c.encode(replyMark, forKey: .replyMark)
            try c.encode(request, forKey: .request)
            try c.encode(rpFilter, forKey: .rpFilter)
            try c.encode(kernel, forKey: .kernel)
            try c.encode(requestKernel, forKey: .requestKernel)
        }
    }

    var target: String
    var source: String
    var policy: String?
    var strategy: String?
    var checks: [Check]
    var findings: [Finding]
    var notes: [String]
    var errors: Int
    var warnings: Int

    public init(_ report: DoctorReport) {
        target = report.target
        switch report.source {
        case .file(let path): source = "file"; policy = path
        case .lab(let lab): source = "lab"; policy = lab
        case .record: source = "record"; policy = nil
        case .addresses: source = "addresses"; policy = nil
        }
        strategy = report.strategy?.rawValue
        checks = report.checks.map { c in
            let request: String?
            switch c.requestResult {
            case .local?: request = "delivered"
            case .sent(_, let device, _)?: request = "forwarded out \(device)"
            case .refused(let errno, let reason, _)?: request = "refused: \(reason) (\(errno))"
            case .dropped(let by)?: request = "dropped by \(by)"
            case nil: request = nil
            }
            func kernel(_ k: KernelAnswer) -> Kernel { Kernel(command: k.command, answer: k.answer, agrees: k.agrees, differences: k.differences) }
            return Check(service: c.service.description, port: c.port, backend: c.backend, interface: c.interface, client: c.client.description,
                         clientPrefix: c.clientPrefix?.cidr, egress: c.replyResult.device, gateway: c.replyResult.gateway?.description,
                         rule: c.rule?.rule.priority, table: c.table.map(RouteTable.name), verdict: c.verdict, reason: c.reason,
                         requestMark: hex(c.requestMark), replyMark: hex(c.replyMark), request: request,
                         rpFilter: c.reversePath.map { "\($0.modeText): \($0.reason)" }, kernel: kernel(c.replyKernel),
                         requestKernel: c.requestKernel.map(kernel))
        }
        findings = report.findings
        notes = report.notes
        errors = report.findings.filter { $0.severity == .error }.count
        warnings = report.findings.filter { $0.severity == .warning }.count
    }

    enum CodingKeys: String, CodingKey { case target, source, policy, strategy, checks, findings, notes, errors, warnings }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(target, forKey: .target)
        try c.encode(source, forKey: .source)
        try c.encode(policy, forKey: .policy)
        try c.encode(strategy, forKey: .strategy)
        try c.encode(checks, forKey: .checks)
        try c.encode(findings, forKey: .findings)
        try c.encode(notes, forKey: .notes)
        try c.encode(errors, forKey: .errors)
        try c.encode(warnings, forKey: .warnings)
    }

    public func json() throws(DoctorError) -> String { try encodeJSON(self) }
}
