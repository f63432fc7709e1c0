import Netlink
import TextFormat

/// `doctor explain` as text: the packet, each nftables rule at its hook, every routing rule in order with its
/// selectors, the table consulted, the result, the reverse-path check, and the kernel's own answer.
public enum ExplainText {
    public static func render(_ e: Explanation) -> String {
        var lines: [String] = []
        let q = e.query
        var packet = "packet: \(q.source) → \(q.destination)"
        if let p = q.ipProtocol { packet += " \(RuleDetails.protocolName(p))" }
        if let s = q.sourcePort, let d = q.destinationPort { packet += " \(s) → \(d)" } else if let d = q.destinationPort { packet += " dport \(d)" }
        packet += q.inputInterface.map { ", arriving on \($0)" } ?? ", sent by the node"
        if let r = q.requestInterface { packet += " (a reply to a request that came in on \(r))" }
        packet += ", mark \(hex(e.initialMark))"
        lines.append(packet)
        for note in e.notes { lines.append("  " + note) }

        if let request = e.request {
            lines.append("")
            lines.append("the request, in prerouting:")
            lines += chains(request)
        }
        lines.append("")
        lines.append("nftables, \(e.nftables.hook) hook:")
        lines += chains(e.nftables)
        if e.nftables.markAfter != e.nftables.markBefore || e.nftables.ctMarkAfter != (e.request?.ctMarkAfter ?? 0) {
            var text = "  mark after the \(e.nftables.hook) chains: \(hex(e.nftables.markAfter))"
            if e.direction == "output" {
                if e.nftables.rerouteMark != nil { text += " (changed in a route chain: the kernel routes the packet again with it)" }
                if e.nftables.markChangedWithoutReroute { text += " (changed in a filter chain: the kernel does NOT route again for it — use type route)" }
            }
            lines.append(text)
        }
        if let initial = e.initialRoute, initial.key.mark != e.mark {
            lines.append("")
            lines.append("the socket's route before the output chains (mark \(hex(initial.key.mark))): \(decision(initial))")
        }
        lines.append("")
        if let lookup = e.lookup {
            lines.append("routing rules (\(lookup.key.inputInterface == "lo" ? "iif lo: sent by the node" : "iif \(lookup.key.inputInterface)"), mark \(hex(lookup.key.mark))):")
            lines += rules(lookup)
        }
        lines.append("")
        lines.append("result: " + result(e.result))
        if let check = e.reversePath {
            lines.append("reverse-path check: \(check.reason)")
            if let reverse = check.lookup {
                lines.append("  (lookup of \(reverse.key.destination) from \(reverse.key.source), iif \(reverse.key.inputInterface), mark \(hex(reverse.key.mark)): \(decision(reverse)))")
            }
        }
        lines.append("kernel: \(e.kernel.command)")
        lines.append("        → \(e.kernel.answer)" + (e.kernel.agrees == true ? "  (agrees)" : ""))
        if e.kernel.agrees == false {
            lines.append("")
            lines.append("!!! THE KERNEL DISAGREES: \(e.kernel.differences.joined(separator: "; ")).")
            lines.append("!!! doctor's model of this node is wrong here: trust the kernel's answer, and please report this output.")
        }
        return lines.joined(separator: "\n")
    }

    static func chains(_ trace: NftTrace) -> [String] {
        if trace.chains.isEmpty { return ["  (no base chain at this hook: the mark stays \(hex(trace.markBefore)))"] }
        var lines: [String] = []
        var current = ""
        for step in trace.steps {
            if step.chain != current {
                current = step.chain
                lines.append("  \(step.chain) (\(step.chainType ?? "regular") chain\(step.priority.map { ", priority \($0)" } ?? ""))")
            }
            lines.append("    handle \(step.handle): \(step.text)")
            lines.append("      \(step.outcome.rawValue): \(step.reason)")
        }
        let silent = trace.chains.filter { chain in !trace.steps.contains { $0.chain == chain } }
        for chain in silent { lines.append("  \(chain): no rules") }
        if let dropped = trace.droppedBy { lines.append("  DROPPED by \(dropped)") }
        return lines
    }

    static func rules(_ lookup: RouteLookup) -> [String] {
        let width = min(64, lookup.steps.map { ruleText($0.rule).count }.max() ?? 0)
        return lookup.steps.map { step in
            let pref = String(step.rule.rule.priority ?? 0)
            let text = ruleText(step.rule)
            let head = "  " + pref.padded(to: 6) + " "
                + (text.count < width ? text.padded(to: width) : text) + "  "
            var tail: String
            switch step.outcome {
            case .notReached:
                tail = "not reached" + (step.note.map { " (\($0))" } ?? "")
            case .skipped:
                let failing = step.checks.filter { !$0.matches }
                tail = "skipped: " + (failing.isEmpty ? (step.note ?? "") : failing.map { "\($0.selector) does not match \($0.packet)" }.joined(separator: ", "))
                if let note = step.note, !failing.isEmpty { tail += " (\(note))" }
            case .matched:
                tail = "matched" + (step.checks.isEmpty ? "" : " (" + step.checks.map { "\($0.selector): \($0.packet)" }.joined(separator: ", ") + ")")
                if let table = step.table { tail += " → " + tableText(table, step.rule.rule.table) }
                if let note = step.note { tail += " — \(note)" }
            }
            return head + tail
        }
    }

    /// The rule without its priority: "from all fwmark 0x2000000/0xe000000 lookup 52001 proto 212".
    static func ruleText(_ rule: DetailedRule) -> String {
        var args = rule.ipArguments
        if args.first == "pref" { args.removeFirst(2) }
        return args.joined(separator: " ")
    }

    static func tableText(_ outcome: TableOutcome, _ table: UInt32) -> String {
        let name = "table \(RouteTable.name(table))"
        switch outcome {
        case .route(let route): return "\(name): \(routeText(route))"
        case .noRoute(_, let empty): return "\(name): " + (empty ? "empty (no routes at all), next rule" : "no route, next rule")
        case .thrown(let route): return "\(name): throw route \(route.destination), next rule"
        case .suppressed(let route, let length):
            return "\(name): \(routeText(route)) suppressed (prefix length \(route.destination.length) ≤ suppress_prefixlength \(length)), next rule"
        case .refused(let route, let errno): return "\(name): \(route.type) route \(route.destination): \(errno)"
        }
    }

    static func routeText(_ route: Route) -> String {
        var text = route.type == .unicast ? "" : "\(route.type) "
        text += route.destination.description
        if let gateway = route.gateway { text += " via \(gateway)" }
        if let device = route.device { text += " dev \(device)" }
        return text
    }

    static func decision(_ lookup: RouteLookup) -> String {
        switch lookup.outcome {
        case .route(let route, let rule, let table):
            return "rule \(rule.rule.priority ?? 0) → table \(RouteTable.name(table)): \(routeText(route))"
        case .failed(let errno, _, _, let reason):
            return "\(reason) (\(errno))"
        }
    }

    static func result(_ result: PathResult) -> String {
        switch result {
        case .local(let lookup): return "delivered locally (\(decision(lookup)))"
        case .sent(let lookup, let device, let gateway):
            return "out \(device)" + (gateway.map { " via \($0)" } ?? " (directly connected)") + " (\(decision(lookup)))"
        case .refused(let errno, let reason, _): return "refused: \(reason) (\(errno))"
        case .dropped(let by): return "dropped by nftables: \(by)"
        }
    }
}
