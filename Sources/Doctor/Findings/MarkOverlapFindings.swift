import Netlink

/// `mark-bits-overlap`: other rules, chains, iptables-nft targets or known tools using returnpath's mark bits
/// (the arithmetic is MarkArithmetic's).
extension Doctor {
    /// Only for the strategies that mark (mark, ingress).
    func markOverlapFindings() -> [Finding] {
        guard strategy == .mark || strategy == .ingress else { return [] }
        let ours = ownership.markMask
        var uses: [MarkArithmetic.Use] = []
        for entry in state.rules where entry.rule.fwmark != nil && !isOurs(entry) {
            let mask = entry.rule.fwmask
            uses.append(MarkArithmetic.Use(what: "rule \(entry)", bits: mask ?? (entry.rule.fwmark ?? 0), whole: mask == nil))
        }
        for rule in state.nftables.rules where !(rule.family == "inet" && rule.table == "returnpath") {
            let place = "nft \(rule.family) \(rule.table) \(rule.chain) handle \(rule.handle): \(rule.text)"
            var extensions = state.nftables.extensions(of: rule)[...]
            for statement in rule.statements {
                switch statement {
                case .match(_, let left, _) where left.isMark:
                    if case .binary("&", _, .number(let mask)) = left {
                        uses.append(MarkArithmetic.Use(what: place, bits: UInt32(truncatingIfNeeded: mask), whole: false))
                    } else {
                        uses.append(MarkArithmetic.Use(what: place, bits: 0, whole: true))
                    }
                case .mangle(let key, let value) where key.isMark:
                    let (bits, whole) = MarkArithmetic.affectedBits(value, key: key)
                    uses.append(MarkArithmetic.Use(what: place, bits: bits, whole: whole))
                case .xt(let type, let name):
                    guard let ext = extensions.popFirst() else { continue }
                    if type == "target", name == "MARK", let value = ext.u32(0), let mask = ext.u32(4) {
                        uses.append(MarkArithmetic.Use(what: place + " (-j MARK --set-xmark \(hex(value))/\(hex(mask)))", bits: mask | value, whole: mask == UInt32.max))
                    } else if type == "target", name == "CONNMARK", let ctmask = ext.u32(4), let nfmask = ext.u32(8) {
                        uses.append(MarkArithmetic.Use(what: place + " (-j CONNMARK)", bits: ctmask | nfmask, whole: ctmask == UInt32.max || nfmask == UInt32.max))
                    } else if type == "match", name == "mark" || name == "connmark", let mask = ext.u32(4) {
                        uses.append(MarkArithmetic.Use(what: place + " (-m \(name))", bits: mask, whole: mask == UInt32.max))
                    }
                default: continue
                }
            }
        }
        var findings: [Finding] = []
        let overlapping = uses.filter { !$0.whole && $0.bits & ours != 0 }
        if !overlapping.isEmpty {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .error,
                                    message: "returnpath's mark bits \(hex(ours)) (strategy \(strategy?.rawValue ?? "?")) overlap bits other rules use (\(hex(overlapping.reduce(0) { $0 | $1.bits } & ours))): one of them changes or misreads the other's marks",
                                    objects: overlapping.map { "\($0.what) uses \(hex($0.bits))" },
                                    fix: markFix(excluding: uses), hint: markHint(excluding: uses)))
        }
        // Tools known by their chains, whose bits are reserved even where no rule shows them yet.
        var known: [(String, UInt32)] = []
        let names = state.nftables.chains.map(\.name) + state.nftables.tables.map(\.name)
        if names.contains(where: { $0.hasPrefix("KUBE-") || $0 == "kube-proxy" }) { known.append(("kube-proxy", 0xc000)) }
        if names.contains(where: { $0.hasPrefix("cali-") }) { known.append(("Calico (default mark mask)", 0xffff_0000)) }
        if names.contains(where: { $0.hasPrefix("CILIUM") || $0.hasPrefix("cilium") }) { known.append(("Cilium", 0x0f00)) }
        if names.contains(where: { $0.hasPrefix("mwan3") }) { known.append(("mwan3", 0x3f00)) }
        for (tool, bits) in known where bits & ours != 0 {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .error,
                                    message: "\(tool) runs here and uses the mark bits \(hex(bits)), which overlap returnpath's \(hex(ours))",
                                    objects: ["\(tool): \(hex(bits))", "returnpath markMask \(hex(ours))"],
                                    fix: markFix(excluding: uses + [MarkArithmetic.Use(what: tool, bits: bits, whole: false)]),
                                    hint: markHint(excluding: uses + [MarkArithmetic.Use(what: tool, bits: bits, whole: false)])))
        }
        let whole = uses.filter(\.whole)
        if !whole.isEmpty {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .warning,
                                    message: "rules that match or set the whole mark: a packet carrying returnpath's bits \(hex(ours)) no longer equals what they expect, and a plain `mark set` clears returnpath's bits",
                                    objects: whole.map(\.what), fix: nil,
                                    hint: "match and set with a mask (meta mark & MASK == VALUE; meta mark set meta mark & ~MASK | VALUE)"))
        }
        return findings
    }
}
