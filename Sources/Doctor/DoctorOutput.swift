import Netlink

/// `returnpath doctor --json`.
public struct DoctorOutput: Encodable, Sendable {
    struct Kernel: Encodable {
        var command: String
        var answer: String
        @Nullable var agrees: Bool?
        var differences: [String]
    }

    struct Check: Encodable {
        var service: String
        @Nullable var port: UInt16?
        @Nullable var backend: String?
        @Nullable var interface: String?
        var client: String
        @Nullable var clientPrefix: String?
        @Nullable var egress: String?
        @Nullable var gateway: String?
        @Nullable var rule: UInt32?
        @Nullable var table: String?
        var verdict: ReplyCheck.Verdict
        var reason: String
        var requestMark: String
        var replyMark: String
        @Nullable var request: String?
        @Nullable var rpFilter: String?
        var kernel: Kernel
        @Nullable var requestKernel: Kernel?

        enum CodingKeys: String, CodingKey {
            case service, port, backend, interface, client, egress, gateway, rule, table, verdict, reason, request, kernel
            case clientPrefix = "client_prefix", requestMark = "request_mark", replyMark = "reply_mark"
            case rpFilter = "rp_filter", requestKernel = "request_kernel"
        }
    }

    var target: String
    var source: String
    @Nullable var policy: String?
    @Nullable var strategy: String?
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

    public func json() throws(DoctorError) -> String { try encodeJSON(self) }
}
