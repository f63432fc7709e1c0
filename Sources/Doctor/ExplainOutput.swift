import Netlink

/// `doctor explain --json`.
public struct ExplainOutput: Encodable, Sendable {
    struct Packet: Encodable {
        var from: String
        var to: String
        var iif: String?
        var requestIif: String?
        var proto: String?
        var sport: UInt16?
        var dport: UInt16?
        var mark: String
        enum CodingKeys: String, CodingKey { case from, to, iif, proto, sport, dport, mark, requestIif = "request_iif" }
    }

    struct NftStep: Encodable {
        var chain: String
        var handle: Int
        var rule: String
        var outcome: String
        var reason: String
        var markBefore: String
        var markAfter: String
        var ctMarkAfter: String
        var returnpath: Bool
        enum CodingKeys: String, CodingKey {
            case chain, handle, rule, outcome, reason, returnpath
            case markBefore = "mark_before", markAfter = "mark_after", ctMarkAfter = "ct_mark_after"
        }
    }

    struct Nftables: Encodable {
        var hook: String
        var chains: [String]
        var steps: [NftStep]
        var markAfter: String
        var rerouted: Bool
        var droppedBy: String?
        enum CodingKeys: String, CodingKey { case hook, chains, steps, rerouted, markAfter = "mark_after", droppedBy = "dropped_by" }
    }

    struct Check: Encodable {
        var selector: String
        var matches: Bool
        var packet: String
    }

    struct RuleStepOutput: Encodable {
        var pref: UInt32
        var rule: String
        var outcome: String
        var checks: [Check]
        var table: String?
        var tableResult: String?
        var note: String?
        enum CodingKeys: String, CodingKey { case pref, rule, outcome, checks, table, note, tableResult = "table_result" }
    }

    struct Result: Encodable {
        var outcome: String
        var device: String?
        var gateway: String?
        var rule: UInt32?
        var table: String?
        var route: String?
        var error: String?
        var reason: String?
    }

    struct ReversePath: Encodable {
        var mode: String
        var rpFilter: String
        var rpFilterAll: String
        var srcValidMark: Bool
        var mark: String
        var passed: Bool
        var reason: String
        var decidedBy: String?
        enum CodingKeys: String, CodingKey {
            case mode, mark, passed, reason
            case rpFilter = "rp_filter", rpFilterAll = "rp_filter_all", srcValidMark = "src_valid_mark", decidedBy = "decided_by"
        }
    }

    struct Kernel: Encodable {
        var command: String
        var answer: String
        var device: String?
        var gateway: String?
        var table: String?
        var error: String?
        var agrees: Bool?
        var differences: [String]
    }

    var packet: Packet
    var direction: String
    var notes: [String]
    var request: Nftables?
    var nftables: Nftables
    var mark: String
    var rules: [RuleStepOutput]
    var result: Result
    var reversePath: ReversePath?
    var kernel: Kernel
    var agrees: Bool

    enum CodingKeys: String, CodingKey {
        case packet, direction, notes, request, nftables, mark, rules, result, kernel, agrees
        case reversePath = "reverse_path"
    }

    public init(_ e: Explanation) {
        let q = e.query
        packet = Packet(from: q.source.description, to: q.destination.description, iif: q.inputInterface, requestIif: q.requestInterface,
                        proto: q.ipProtocol.map(RuleDetails.protocolName), sport: q.sourcePort, dport: q.destinationPort,
                        mark: hex(e.initialMark))
        direction = e.direction
        notes = e.notes
        request = e.request.map(Self.nft)
        nftables = Self.nft(e.nftables)
        mark = hex(e.mark)
        rules = (e.lookup?.steps ?? []).map { step in
            var table: String?, tableResult: String?
            if let outcome = step.table {
                table = RouteTable.name(step.rule.rule.table)
                tableResult = ExplainText.tableText(outcome, step.rule.rule.table)
            }
            return RuleStepOutput(pref: step.rule.rule.priority ?? 0, rule: ExplainText.ruleText(step.rule), outcome: step.outcome.rawValue,
                                  checks: step.checks.map { Check(selector: $0.selector, matches: $0.matches, packet: $0.packet) },
                                  table: table, tableResult: tableResult, note: step.note)
        }
        result = Self.result(e.result)
        reversePath = e.reversePath.map { c in
            ReversePath(mode: c.modeText, rpFilter: c.ownValue, rpFilterAll: c.allValue, srcValidMark: c.srcValidMark, mark: hex(c.mark),
                        passed: c.passed, reason: c.reason, decidedBy: c.lookup.map(ExplainText.decision))
        }
        kernel = Kernel(command: e.kernel.command, answer: e.kernel.answer, device: e.kernel.device,
                        gateway: e.kernel.gateway?.description, table: e.kernel.table.map(RouteTable.name),
                        error: e.kernel.errno.map { "\($0)" }, agrees: e.kernel.agrees, differences: e.kernel.differences)
        agrees = e.agrees
    }

    static func nft(_ t: NftTrace) -> Nftables {
        Nftables(hook: t.hook, chains: t.chains,
                 steps: t.steps.map { NftStep(chain: $0.chain, handle: $0.handle, rule: $0.text, outcome: $0.outcome.rawValue,
                                               reason: $0.reason, markBefore: hex($0.markBefore), markAfter: hex($0.markAfter),
                                               ctMarkAfter: hex($0.ctMarkAfter), returnpath: $0.ours) },
                 markAfter: hex(t.markAfter), rerouted: t.rerouteMark != nil, droppedBy: t.droppedBy)
    }

    static func result(_ r: PathResult) -> Result {
        let lookup = r.lookup
        var result = Result(outcome: "", device: r.device, gateway: r.gateway?.description, rule: lookup?.outcome.rule?.rule.priority,
                            table: lookup?.outcome.table.map(RouteTable.name), route: lookup?.outcome.route.map(ExplainText.routeText))
        switch r {
        case .local: result.outcome = "local"
        case .sent: result.outcome = "sent"
        case .refused(let errno, let reason, _):
            result.outcome = "refused"
            result.error = "\(errno)"
            result.reason = reason
        case .dropped(let by):
            result.outcome = "dropped"
            result.reason = by
        }
        return result
    }

    public func json() throws(DoctorError) -> String {
        try encodeJSON(self)
    }
}
