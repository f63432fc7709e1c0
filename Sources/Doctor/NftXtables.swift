/// The iptables-nft extensions inside nftables rules (their parameters read over nfnetlink, `XtExtension`).
extension NftEvaluator {
    /// xt matches and targets doctor understands: mark/connmark matches, conntrack --ctstate, comment; MARK and
    /// CONNMARK targets. Anything else cannot be evaluated.
    func xt(_ type: String, _ name: String, _ ext: XtExtension?, _ packet: inout NftPacket) -> MatchResult {
        guard let ext, ext.name == name else {
            return MatchResult(value: .unknown, reason: "iptables extension \(name): parameters not found")
        }
        switch (type, name) {
        case ("match", "comment"):
            return MatchResult(value: .yes, reason: "comment")
        case ("match", "mark"), ("match", "connmark"):
            guard ext.revision >= 1, let mark = ext.u32(0), let mask = ext.u32(4), let invert = ext.u8(8) else {
                return MatchResult(value: .unknown, reason: "-m \(name) revision \(ext.revision) not understood")
            }
            let actual = name == "mark" ? packet.mark : packet.ctMark
            let holds = ((actual & mask) == mark) != (invert != 0)
            let what = name == "mark" ? "mark" : "ct mark"
            return MatchResult(value: holds ? .yes : .no,
                               reason: "-m \(name) \(invert != 0 ? "! " : "")--mark \(hex(mark))/\(hex(mask)): \(what) \(hex(actual)) \(holds ? "matches" : "does not match")")
        case ("match", "conntrack"):
            // xt_conntrack_mtinfo1/2/3: 128 bytes of addresses and masks, expires (8), l4proto (2), 4 ports (8),
            // match_flags (2), invert_flags (2), then the state mask (u8 in rev 1, u16 after).
            guard ext.revision >= 1, let flags = ext.u16(146), let inverted = ext.u16(148) else {
                return MatchResult(value: .unknown, reason: "-m conntrack revision \(ext.revision) not understood")
            }
            guard flags == 1 else { return MatchResult(value: .unknown, reason: "-m conntrack beyond --ctstate not understood") }
            let mask = ext.revision == 1 ? ext.u8(150).map(UInt16.init) : ext.u16(150)
            guard let mask else { return MatchResult(value: .unknown, reason: "-m conntrack: short parameters") }
            // XT_CONNTRACK_STATE_BIT: established 1<<1, related 1<<2, new 1<<3; invalid 1<<0.
            let bit: UInt16 = packet.ctState == "new" ? 1 << 3 : packet.ctState == "related" ? 1 << 2 : 1 << 1
            let holds = (mask & bit != 0) != (inverted & 1 != 0)
            return MatchResult(value: holds ? .yes : .no, reason: "-m conntrack --ctstate: \(packet.ctState) \(holds ? "matches" : "does not match")")
        case ("target", "MARK"):
            // xt_mark_tginfo2 {mark, mask}: mark = (mark & ~mask) ^ value.
            guard ext.revision == 2, let value = ext.u32(0), let mask = ext.u32(4) else {
                return MatchResult(value: .unknown, reason: "-j MARK revision \(ext.revision) not understood")
            }
            let before = packet.mark
            packet.mark = (packet.mark & ~mask) ^ value
            return MatchResult(value: .yes, reason: "-j MARK --set-xmark \(hex(value))/\(hex(mask)): mark \(hex(before)) → \(hex(packet.mark))")
        case ("target", "CONNMARK"):
            // xt_connmark_tginfo1/2 {ctmark, ctmask, nfmask, (shift_dir, shift_bits,) mode}: set 0, save 1, restore 2.
            guard ext.revision >= 1, let ctmark = ext.u32(0), let ctmask = ext.u32(4), let nfmask = ext.u32(8),
                  let mode = ext.u8(ext.revision == 1 ? 12 : 14) else {
                return MatchResult(value: .unknown, reason: "-j CONNMARK revision \(ext.revision) not understood")
            }
            if ext.revision >= 2, let bits = ext.u8(13), bits != 0 {
                return MatchResult(value: .unknown, reason: "-j CONNMARK with shifts not understood")
            }
            let mark = packet.mark, ct = packet.ctMark
            switch mode {
            case 0: packet.ctMark = (ct & ~ctmask) ^ ctmark
            case 1: packet.ctMark = (ct & ~ctmask) ^ (mark & nfmask)
            case 2: packet.mark = (mark & ~nfmask) ^ (ct & ctmask)
            default: return MatchResult(value: .unknown, reason: "-j CONNMARK mode \(mode) not understood")
            }
            let word = ["--set-xmark", "--save-mark", "--restore-mark"][Int(mode)]
            return MatchResult(value: .yes, reason: "-j CONNMARK \(word): mark \(hex(mark)) → \(hex(packet.mark)), ct mark \(hex(ct)) → \(hex(packet.ctMark))")
        case ("target", "ACCEPT"):
            return MatchResult(value: .yes, reason: "accept", verdict: .accept)
        case ("target", "DROP"):
            return MatchResult(value: .yes, reason: "drop", verdict: .drop)
        default:
            return MatchResult(value: .unknown, reason: "iptables extension \(type) \(name) not understood")
        }
    }
}
