/// Mark arithmetic: which bits of the packet or conntrack mark a rule reads or writes, and which bits are free for
/// returnpath's marks. Pure.
enum MarkArithmetic {
    /// Bits of the packet or conntrack mark a rule or chain reads or writes.
    struct Use {
        var what: String
        var bits: UInt32
        /// It reads or writes the whole mark (an exact match, a plain set): every bit of ours touches it.
        var whole: Bool
    }

    /// The bits kube-proxy reserves (0x4000 masquerade, 0x8000 drop): never offered as free.
    static let kubeProxyBits: UInt32 = 0xc000

    /// The bits `meta mark set VALUE` (or ct mark) may change: (old & A) | B, (old & A) ^ B → ~A | B; a plain value
    /// or anything else: the whole mark.
    static func affectedBits(_ value: NftExpr, key: NftExpr) -> (UInt32, Bool) {
        switch value {
        case .binary(let op, let inner, .number(let n)):
            let (bits, whole) = affectedBits(inner, key: key)
            if whole { return (bits, true) }
            let m = UInt32(truncatingIfNeeded: n)
            switch op {
            case "&": return (bits | ~m, false)
            case "|", "^": return (bits | m, false)
            default: return (0, true)
            }
        default:
            if value == key { return (0, false) }
            return (0, true)
        }
    }

    /// Free bits for returnpath's marks: as many as `mask` has, contiguous, clear of every other (masked) use and of
    /// kube-proxy's bits; the highest such block. nil when none is free (or `mask` is 0).
    static func freeMask(like mask: UInt32, excluding uses: [Use]) -> UInt32? {
        let used = uses.filter { !$0.whole }.reduce(kubeProxyBits) { $0 | $1.bits }
        let width = mask.nonzeroBitCount
        guard width > 0 else { return nil }
        let block = UInt32.max >> UInt32(32 - width)
        for shift in stride(from: 32 - width, through: 0, by: -1) {
            let candidate = block << UInt32(shift)
            if candidate & used == 0 { return candidate }
        }
        return nil
    }
}

extension Doctor {
    /// The fix of a mark overlap: apply with the policy file (once its markMask is changed, as the hint says); nil
    /// without a file or without free bits.
    func markFix(excluding uses: [MarkArithmetic.Use]) -> String? {
        guard MarkArithmetic.freeMask(like: ownership.markMask, excluding: uses) != nil else { return nil }
        if case .file = request.source { return applyCommand() }
        return nil
    }

    func markHint(excluding uses: [MarkArithmetic.Use]) -> String {
        guard let free = MarkArithmetic.freeMask(like: ownership.markMask, excluding: uses) else {
            return "no free bits of that width: move the other tool's marks"
        }
        return "set spec.ownership.markMask: \(hex(free)) in the policy (free of every mark seen here) and apply it with -f"
    }
}
