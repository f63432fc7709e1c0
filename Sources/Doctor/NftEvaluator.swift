import Netlink

/// Runs the nftables chains of a hook over a packet as the kernel would: base chains in priority order (families ip
/// and inet), rules in order, jumps, gotos, verdict maps, accept ending a base chain, drop ending everything.
public struct NftEvaluator: Sendable {
    public let ruleset: NftRuleset
    public let localAddresses: Set<IPAddress>

    public init(_ ruleset: NftRuleset, localAddresses: Set<IPAddress>) {
        self.ruleset = ruleset
        self.localAddresses = localAddresses
    }

    public func run(hook: String, _ packet: inout NftPacket) -> NftTrace {
        var trace = NftTrace(hook: hook, markBefore: packet.mark, markAfter: packet.mark, ctMarkAfter: packet.ctMark)
        for chain in ruleset.baseChains(hook: hook, family: packet.source.family) {
            // NAT chains see only a connection's first packet; conntrack translates the rest.
            if chain.type == "nat" && packet.ctState != "new" { continue }
            trace.chains.append(chain.qualifiedName)
            let markAtStart = packet.mark
            let verdict = runChain(chain, &packet, &trace, depth: 0)
            if packet.mark != markAtStart {
                if chain.type == "route" { trace.rerouteMark = packet.mark } else if hook == "output" { trace.markChangedWithoutReroute = true }
            }
            if verdict == .drop {
                trace.droppedBy = trace.droppedBy ?? "\(chain.qualifiedName) (policy drop)"
                break
            }
            if verdict == .fallThrough, chain.policy == "drop" {
                trace.droppedBy = "\(chain.qualifiedName) (policy drop)"
                break
            }
        }
        trace.markAfter = packet.mark
        trace.ctMarkAfter = packet.ctMark
        return trace
    }

    enum ChainVerdict { case accept, drop, fallThrough, returned }

    func runChain(_ chain: NftRuleset.Chain, _ packet: inout NftPacket, _ trace: inout NftTrace, depth: Int) -> ChainVerdict {
        guard depth < 16 else { return .fallThrough }
        let ours = chain.family == "inet" && chain.table == "returnpath"
        for rule in ruleset.rules(of: chain) {
            let markBefore = packet.mark
            var reasons: [String] = []
            var outcome = NftTrace.Step.Outcome.matched
            var verdict: ChainVerdict?
            var extensions = ruleset.extensions(of: rule)[...]
            statements: for statement in rule.statements {
                switch statement {
                case .match(let op, let left, let right):
                    let result = match(op, left, right, packet, in: chain)
                    reasons.append(result.reason)
                    if result.value == .no { outcome = .skipped; break statements }
                    if result.value == .unknown { outcome = .unevaluated; break statements }
                case .mangle(let key, let value):
                    switch key {
                    case .meta("mark"):
                        guard let v = integer(value, packet, in: chain) else {
                            reasons.append("cannot compute \(value)")
                            outcome = .unevaluated
                            break statements
                        }
                        packet.mark = UInt32(truncatingIfNeeded: v)
                        reasons.append("mark \(hex(markBefore)) → \(hex(packet.mark))")
                    case .ct(key: "mark", direction: _):
                        guard let v = integer(value, packet, in: chain) else {
                            reasons.append("cannot compute \(value)")
                            outcome = .unevaluated
                            break statements
                        }
                        let before = packet.ctMark
                        packet.ctMark = UInt32(truncatingIfNeeded: v)
                        reasons.append("ct mark \(hex(before)) → \(hex(packet.ctMark))")
                    default:
                        reasons.append("sets \(key) (no effect on routing)")
                    }
                case .verdict(let name, let target):
                    verdict = follow(name, target, chain, &packet, &trace, depth: depth)
                    if verdict != nil { reasons.append(name + (target.map { " \($0)" } ?? "")) }
                    if verdict != nil { break statements }
                case .vmap(let key, let data):
                    guard let (name, target) = vmapVerdict(key, data, packet, chain) else {
                        reasons.append("no element of the verdict map matches")
                        continue
                    }
                    reasons.append("vmap → \(name)" + (target.map { " \($0)" } ?? ""))
                    verdict = follow(name, target, chain, &packet, &trace, depth: depth)
                    if verdict != nil { break statements }
                case .xt(let type, let name):
                    let ext = extensions.popFirst()
                    let result = xt(type, name, ext, &packet)
                    reasons.append(result.reason)
                    if result.value == .no { outcome = .skipped; break statements }
                    if result.value == .unknown { outcome = .unevaluated; break statements }
                    if let v = result.verdict { verdict = v; break statements }
                case .dnat(let address, let port):
                    guard let address, case .address(let to) = value(address, packet, in: chain) else {
                        reasons.append("dnat to an address doctor cannot compute")
                        outcome = .unevaluated
                        break statements
                    }
                    let newPort = port.flatMap { literalInteger($0) }.map { UInt16(truncatingIfNeeded: $0) }
                    reasons.append("dnat: \(packet.destination)\(packet.destinationPort.map { ":\($0)" } ?? "") → \(to)\(newPort.map { ":\($0)" } ?? "")")
                    packet.destination = to
                    if let newPort { packet.destinationPort = newPort }
                    trace.dnat = (to, newPort)
                    // A NAT verdict: the chain ends here.
                    verdict = .accept
                    break statements
                case .passive:
                    continue
                case .unknown(let name):
                    reasons.append("statement \(name) not understood")
                    outcome = .unevaluated
                    break statements
                }
            }
            trace.steps.append(NftTrace.Step(chain: chain.qualifiedName, chainType: chain.type, priority: chain.priority,
                                             handle: rule.handle, text: rule.text, outcome: outcome,
                                             reason: reasons.joined(separator: "; "), markBefore: markBefore,
                                             markAfter: packet.mark, ctMarkAfter: packet.ctMark, ours: ours))
            if let verdict {
                // The rule that dropped it, not the jump that led there.
                if verdict == .drop { trace.droppedBy = trace.droppedBy ?? "\(chain.qualifiedName) handle \(rule.handle)" }
                return verdict
            }
        }
        return .fallThrough
    }

    /// A verdict statement: accept/drop end the base chain, return ends this chain, jump/goto run another.
    func follow(_ name: String, _ target: String?, _ chain: NftRuleset.Chain, _ packet: inout NftPacket,
                        _ trace: inout NftTrace, depth: Int) -> ChainVerdict? {
        switch name {
        case "accept": return .accept
        case "drop", "reject": return .drop
        case "return": return .returned
        case "continue": return nil
        case "queue": return .accept
        case "jump", "goto":
            guard let target, let next = ruleset.chain(family: chain.family, table: chain.table, name: target) else { return nil }
            let result = runChain(next, &packet, &trace, depth: depth + 1)
            switch result {
            case .accept, .drop: return result
            case .returned, .fallThrough: return name == "goto" ? .returned : nil
            }
        default: return nil
        }
    }

    func vmapVerdict(_ key: NftExpr, _ data: NftExpr, _ packet: NftPacket, _ chain: NftRuleset.Chain) -> (String, String?)? {
        let value = self.value(key, packet, in: chain)
        for (element, verdict) in mapPairs(data, chain) where contains(element, value) == .yes {
            if case .verdict(let name, let target) = verdict { return (name, target) }
        }
        return nil
    }

    /// The (key, data) pairs of an anonymous or named map.
    func mapPairs(_ data: NftExpr, _ chain: NftRuleset.Chain) -> [(NftExpr, NftExpr)] {
        switch data {
        case .set(let items):
            return items.compactMap { item in
                if case .list(let pair) = item, pair.count == 2 { return (pair[0], pair[1]) }
                return nil
            }
        case .string(let name) where name.hasPrefix("@"):
            guard let map = ruleset.collection(family: chain.family, table: chain.table, name: String(name.dropFirst())),
                  let values = map.data else { return [] }
            return Array(zip(map.elements, values))
        default:
            return []
        }
    }
}
