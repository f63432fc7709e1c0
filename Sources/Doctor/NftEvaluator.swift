import Netlink

/// A packet as nftables sees it at a hook: addresses, ports, interfaces, its mark, its connection.
public struct NftPacket: Sendable, Hashable {
    public var source: IPAddress
    public var destination: IPAddress
    public var ipProtocol: UInt8?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// prerouting: the interface it came in on.
    public var inputInterface: String?
    /// output: the device of the route the socket's lookup chose (before any re-route).
    public var outputInterface: String?
    public var mark: UInt32
    /// The connection's mark and state as conntrack has them.
    public var ctMark: UInt32
    /// "new" or "established".
    public var ctState: String
    /// "original" (the initiator's packets) or "reply".
    public var ctDirection: String

    public init(source: IPAddress, destination: IPAddress, ipProtocol: UInt8? = nil, sourcePort: UInt16? = nil,
                destinationPort: UInt16? = nil, inputInterface: String? = nil, outputInterface: String? = nil,
                mark: UInt32 = 0, ctMark: UInt32 = 0, ctState: String = "new", ctDirection: String = "original") {
        self.source = source
        self.destination = destination
        self.ipProtocol = ipProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.mark = mark
        self.ctMark = ctMark
        self.ctState = ctState
        self.ctDirection = ctDirection
    }
}

/// What the chains of one hook did to a packet, rule by rule.
public struct NftTrace: Sendable {
    public struct Step: Sendable, Hashable {
        public enum Outcome: String, Sendable, Hashable {
            /// Every match held; its statements ran.
            case matched
            case skipped
            /// A match doctor cannot evaluate (an unknown expression or extension): treated as not matching.
            case unevaluated
        }
        /// "inet returnpath output"
        public var chain: String
        public var chainType: String?
        public var priority: Int?
        public var handle: Int
        public var text: String
        public var outcome: Outcome
        /// Why: "ip saddr 192.168.1.1 in @svc_1", "iifname eth2 is not eth1".
        public var reason: String
        public var markBefore: UInt32
        public var markAfter: UInt32
        public var ctMarkAfter: UInt32
        /// The rule is in returnpath's own table.
        public var ours: Bool
    }

    public var hook: String
    public var steps: [Step] = []
    public var markBefore: UInt32
    public var markAfter: UInt32
    public var ctMarkAfter: UInt32
    /// The mark a route-type chain left (output: the kernel routes the packet again with it); nil when none changed it.
    public var rerouteMark: UInt32?
    /// A filter chain at the output hook changed the mark: the kernel does not route again for it.
    public var markChangedWithoutReroute = false
    /// A nat chain's `dnat to` changed the destination (the first packet of a connection).
    public var dnat: (address: IPAddress, port: UInt16?)?
    /// A rule dropped the packet ("inet filter output handle 4"), or a chain's policy did.
    public var droppedBy: String?
    public var chains: [String] = []
}

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

    private func runChain(_ chain: NftRuleset.Chain, _ packet: inout NftPacket, _ trace: inout NftTrace, depth: Int) -> ChainVerdict {
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
                    let result = match(op, left, right, packet)
                    reasons.append(result.reason)
                    if result.value == .no { outcome = .skipped; break statements }
                    if result.value == .unknown { outcome = .unevaluated; break statements }
                case .mangle(let key, let value):
                    switch key {
                    case .meta("mark"):
                        guard let v = integer(value, packet) else {
                            reasons.append("cannot compute \(value)")
                            outcome = .unevaluated
                            break statements
                        }
                        packet.mark = UInt32(truncatingIfNeeded: v)
                        reasons.append("mark \(hex(markBefore)) → \(hex(packet.mark))")
                    case .ct(key: "mark", direction: _):
                        guard let v = integer(value, packet) else {
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
                    guard let address, case .address(let to) = value(address, packet) else {
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
    private func follow(_ name: String, _ target: String?, _ chain: NftRuleset.Chain, _ packet: inout NftPacket,
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

    private func vmapVerdict(_ key: NftExpr, _ data: NftExpr, _ packet: NftPacket, _ chain: NftRuleset.Chain) -> (String, String?)? {
        let value = self.value(key, packet)
        for (element, verdict) in mapPairs(data, chain) where contains(element, value) == .yes {
            if case .verdict(let name, let target) = verdict { return (name, target) }
        }
        return nil
    }

    /// The (key, data) pairs of an anonymous or named map.
    private func mapPairs(_ data: NftExpr, _ chain: NftRuleset.Chain) -> [(NftExpr, NftExpr)] {
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

    // MARK: values

    enum Value: Hashable {
        case address(IPAddress)
        case integer(UInt64)
        case text(String)
        /// The packet has no such field (a TCP port of a UDP packet): nothing matches it.
        case absent(String)
        case unknown(String)
    }

    enum Tri: Hashable { case yes, no, unknown }

    struct MatchResult {
        var value: Tri
        var reason: String
        var verdict: ChainVerdict? = nil
    }

    private func value(_ expr: NftExpr, _ packet: NftPacket) -> Value {
        switch expr {
        case .payload("ip", "saddr"): return packet.source.family == .inet ? .address(packet.source) : .absent("not IPv4")
        case .payload("ip", "daddr"): return packet.destination.family == .inet ? .address(packet.destination) : .absent("not IPv4")
        case .payload("ip6", "saddr"): return packet.source.family == .inet6 ? .address(packet.source) : .absent("not IPv6")
        case .payload("ip6", "daddr"): return packet.destination.family == .inet6 ? .address(packet.destination) : .absent("not IPv6")
        case .payload("ip6", "nexthdr"): return packet.source.family == .inet6 ? (packet.ipProtocol.map { .integer(UInt64($0)) } ?? .unknown("protocol not given")) : .absent("not IPv6")
        case .payload("ip", "protocol") where packet.source.family != .inet: return .absent("not IPv4")
        case .payload("ip", "protocol"): return packet.ipProtocol.map { .integer(UInt64($0)) } ?? .unknown("protocol not given")
        case .payload(let proto, let field) where ["tcp", "udp", "th", "sctp"].contains(proto) && (field == "sport" || field == "dport"):
            if proto == "tcp" && packet.ipProtocol != 6 { return .absent("not TCP") }
            if proto == "udp" && packet.ipProtocol != 17 { return .absent("not UDP") }
            if proto == "sctp" && packet.ipProtocol != 132 { return .absent("not SCTP") }
            let port = field == "sport" ? packet.sourcePort : packet.destinationPort
            return port.map { .integer(UInt64($0)) } ?? .unknown("\(field == "sport" ? "source" : "destination") port not given")
        case .meta("iifname"), .meta("iif"):
            return packet.inputInterface.map(Value.text) ?? .absent("no input interface (sent by the node)")
        case .meta("oifname"), .meta("oif"):
            return packet.outputInterface.map(Value.text) ?? .absent("no output interface yet")
        case .meta("mark"): return .integer(UInt64(packet.mark))
        case .meta("l4proto"): return packet.ipProtocol.map { .integer(UInt64($0)) } ?? .unknown("protocol not given")
        case .meta("nfproto"): return .text(packet.source.family == .inet6 ? "ipv6" : "ipv4")
        case .meta("protocol"): return .text(packet.source.family == .inet6 ? "ip6" : "ip")
        case .ct(key: "mark", direction: _): return .integer(UInt64(packet.ctMark))
        case .ct(key: "state", direction: _): return .text(packet.ctState)
        case .ct(key: "direction", direction: _): return .text(packet.ctDirection)
        case .fib(let result, let flags) where result == "type":
            guard let address = flags.contains("daddr") ? packet.destination : flags.contains("saddr") ? packet.source : nil else {
                return .unknown("fib \(flags.joined(separator: " . ")) type")
            }
            return .text(localAddresses.contains(address) ? "local" : "unicast")
        case .number(let n): return .integer(n)
        case .string(let s):
            if let address = IPAddress(s) { return .address(address) }
            return .text(s)
        case .binary:
            return integer(expr, packet).map(Value.integer) ?? .unknown("\(expr)")
        default:
            return .unknown("\(expr)")
        }
    }

    /// A numeric expression: numbers, marks, and bit operations on them; maps from packet fields to numbers.
    func integer(_ expr: NftExpr, _ packet: NftPacket) -> UInt64? {
        switch expr {
        case .number(let n): return n
        case .meta("mark"): return UInt64(packet.mark)
        case .ct(key: "mark", direction: _): return UInt64(packet.ctMark)
        case .binary(let op, let left, let right):
            guard let a = integer(left, packet), let b = integer(right, packet) else { return nil }
            switch op {
            case "&": return a & b
            case "|": return a | b
            case "^": return a ^ b
            case "<<": return b < 64 ? a << b : 0
            case ">>": return b < 64 ? a >> b : 0
            default: return nil
            }
        case .map(let key, let data):
            let v = value(key, packet)
            switch data {
            case .set(let items):
                for item in items {
                    if case .list(let pair) = item, pair.count == 2, contains(pair[0], v) == .yes { return integer(pair[1], packet) }
                }
            case .string(let name) where name.hasPrefix("@"):
                for map in ruleset.collections.values where map.name == String(name.dropFirst()) {
                    for (element, data) in zip(map.elements, map.data ?? []) where contains(element, v) == .yes {
                        return integer(data, packet)
                    }
                }
            default: break
            }
            return nil
        case .string(let s): return UInt64(s.hasPrefix("0x") ? String(s.dropFirst(2)) : s, radix: s.hasPrefix("0x") ? 16 : 10)
        default: return nil
        }
    }

    /// Whether one element (literal, prefix, range) holds the value.
    func contains(_ element: NftExpr, _ value: Value) -> Tri {
        switch (element, value) {
        case (_, .unknown): return .unknown
        case (_, .absent): return .no
        case (.string(let s), .address(let a)):
            if let b = IPAddress(s) { return b == a ? .yes : .no }
            if let prefix = try? IPPrefix(parsing: s) { return prefix.contains(a) ? .yes : .no }
            return .unknown
        case (.prefix(let address, let length), .address(let a)):
            guard let base = IPAddress(address), let prefix = try? IPPrefix(base, length: length) else { return .unknown }
            return prefix.contains(a) ? .yes : .no
        case (.range(.string(let low), .string(let high)), .address(let a)):
            guard let l = IPAddress(low), let h = IPAddress(high) else { return .unknown }
            return l <= a && a <= h ? .yes : .no
        case (.range(let low, let high), .integer(let n)):
            guard let l = literalInteger(low), let h = literalInteger(high) else { return .unknown }
            return l <= n && n <= h ? .yes : .no
        case (.number(let m), .integer(let n)): return m == n ? .yes : .no
        case (.string(let s), .integer(let n)):
            guard let m = literalInteger(.string(s)) else { return .unknown }
            return m == n ? .yes : .no
        case (.string(let s), .text(let t)):
            if s.hasSuffix("*") { return t.hasPrefix(String(s.dropLast())) ? .yes : .no }
            return s == t ? .yes : .no
        case (.list(let items), _), (.set(let items), _):
            var sawUnknown = false
            for item in items {
                switch contains(item, value) {
                case .yes: return .yes
                case .unknown: sawUnknown = true
                case .no: continue
                }
            }
            return sawUnknown ? .unknown : .no
        default:
            return .unknown
        }
    }

    /// Numbers and the keywords nft prints for them (protocols).
    func literalInteger(_ expr: NftExpr) -> UInt64? {
        switch expr {
        case .number(let n): return n
        case .string(let s):
            switch s {
            case "tcp": return 6
            case "udp": return 17
            case "icmp": return 1
            case "sctp": return 132
            default:
                if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16) }
                return UInt64(s)
            }
        default: return nil
        }
    }

    func match(_ op: String, _ left: NftExpr, _ right: NftExpr, _ packet: NftPacket) -> MatchResult {
        let v = value(left, packet)
        let shown: String
        switch v {
        case .address(let a): shown = a.description
        case .integer(let n): shown = left.isMark ? hex(UInt32(truncatingIfNeeded: n)) : String(n)
        case .text(let t): shown = t
        case .absent(let why): return MatchResult(value: op == "!=" ? .yes : .no, reason: "\(left): \(why)")
        case .unknown(let why): return MatchResult(value: .unknown, reason: "\(left): cannot evaluate (\(why))")
        }
        var found: Tri
        if case .string(let name) = right, name.hasPrefix("@") {
            found = setContains(String(name.dropFirst()), v)
        } else if op == "<" || op == ">" || op == "<=" || op == ">=", case .integer(let n) = v, let m = literalInteger(right) {
            let holds: Bool
            switch op {
            case "<": holds = n < m
            case ">": holds = n > m
            case "<=": holds = n <= m
            default: holds = n >= m
            }
            return MatchResult(value: holds ? .yes : .no, reason: "\(left) \(shown) \(holds ? "" : "not ")\(op) \(right.render(hexNumbers: left.isMark))")
        } else {
            found = contains(right, v)
        }
        if op == "!=" {
            if found == .yes { found = .no } else if found == .no { found = .yes }
        }
        let rightText = right.render(hexNumbers: left.isMark)
        // "ip saddr 192.168.1.1", "ct mark & 0xe000000 = 0x0".
        let subject: String
        if case .binary = left { subject = "\(left) = \(shown)" } else { subject = "\(left) \(shown)" }
        switch found {
        case .yes: return MatchResult(value: .yes, reason: "\(subject) \(op == "!=" ? "is not" : "is") \(rightText)")
        case .no: return MatchResult(value: .no, reason: "\(subject) \(op == "!=" ? "is" : "is not") \(rightText)")
        case .unknown: return MatchResult(value: .unknown, reason: "\(subject) against \(rightText): cannot evaluate")
        }
    }

    /// Membership in a named set (searched in every table: names are per table, the rule's own is checked first).
    private func setContains(_ name: String, _ value: Value) -> Tri {
        let candidates = ruleset.collections.values.filter { $0.name == name }
        guard !candidates.isEmpty else { return .unknown }
        var result = Tri.no
        for set in candidates {
            for element in set.elements {
                switch contains(element, value) {
                case .yes: return .yes
                case .unknown: result = .unknown
                case .no: continue
                }
            }
        }
        return result
    }

    // MARK: iptables-nft extensions

    /// xt matches and targets doctor understands: mark/connmark matches, conntrack --ctstate, comment; MARK and
    /// CONNMARK targets. Anything else cannot be evaluated.
    private func xt(_ type: String, _ name: String, _ ext: XtExtension?, _ packet: inout NftPacket) -> MatchResult {
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
