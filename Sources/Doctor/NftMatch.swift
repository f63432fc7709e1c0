import Netlink

/// Values and matches: what a packet's field is, whether a literal, prefix, range or set holds it, and the
/// numeric expressions marks are set with. Named sets and maps are the rule's own table's (`in chain`).
extension NftEvaluator {
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

    func value(_ expr: NftExpr, _ packet: NftPacket, in chain: NftRuleset.Chain) -> Value {
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
            return integer(expr, packet, in: chain).map(Value.integer) ?? .unknown("\(expr)")
        default:
            return .unknown("\(expr)")
        }
    }

    /// A numeric expression: numbers, marks, and bit operations on them; maps from packet fields to numbers.
    func integer(_ expr: NftExpr, _ packet: NftPacket, in chain: NftRuleset.Chain) -> UInt64? {
        switch expr {
        case .number(let n): return n
        case .meta("mark"): return UInt64(packet.mark)
        case .ct(key: "mark", direction: _): return UInt64(packet.ctMark)
        case .binary(let op, let left, let right):
            guard let a = integer(left, packet, in: chain), let b = integer(right, packet, in: chain) else { return nil }
            switch op {
            case "&": return a & b
            case "|": return a | b
            case "^": return a ^ b
            case "<<": return b < 64 ? a << b : 0
            case ">>": return b < 64 ? a >> b : 0
            default: return nil
            }
        case .map(let key, let data):
            let v = value(key, packet, in: chain)
            switch data {
            case .set(let items):
                for item in items {
                    if case .list(let pair) = item, pair.count == 2, contains(pair[0], v) == .yes { return integer(pair[1], packet, in: chain) }
                }
            case .string(let name) where name.hasPrefix("@"):
                // A named map is the rule's own table's (names are per table).
                guard let map = ruleset.collection(family: chain.family, table: chain.table, name: String(name.dropFirst())) else { break }
                for (element, data) in zip(map.elements, map.data ?? []) where contains(element, v) == .yes {
                    return integer(data, packet, in: chain)
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
            // Neither an address nor a prefix (try? drops why): it cannot be compared, and an unknown match is reported
            // as not evaluated.
            if let prefix = try? IPPrefix(parsing: s) { return prefix.contains(a) ? .yes : .no }
            return .unknown
        case (.prefix(let address, let length), .address(let a)):
            // A malformed prefix (try? drops why) cannot be compared: unknown, reported as not evaluated.
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

    func match(_ op: String, _ left: NftExpr, _ right: NftExpr, _ packet: NftPacket, in chain: NftRuleset.Chain) -> MatchResult {
        let v = value(left, packet, in: chain)
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
            found = setContains(String(name.dropFirst()), v, in: chain)
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

    /// Membership in a named set. A rule's `@name` is the set of that name in the rule's own table (the kernel
    /// resolves it there when the rule is added; a set of another table is not visible to it): only that one is
    /// looked at. Unknown when the table has no such set (the ruleset was read inconsistently).
    func setContains(_ name: String, _ value: Value, in chain: NftRuleset.Chain) -> Tri {
        guard let set = ruleset.collection(family: chain.family, table: chain.table, name: name) else { return .unknown }
        var result = Tri.no
        for element in set.elements {
            switch contains(element, value) {
            case .yes: return .yes
            case .unknown: result = .unknown
            case .no: continue
            }
        }
        return result
    }
}
