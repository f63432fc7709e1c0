import CLinux

/// The selectors and states of a rule that `Rule` leaves out (apply never sets them; doctor must know them to
/// tell whether a rule matches a packet): IP protocol, port ranges, uid range, TOS, a goto's target, l3mdev, and
/// whether its iif/oif names a device that does not exist (the kernel then never matches it: "[detached]").
public struct RuleDetails: Sendable, Hashable {
    public var ipProtocol: UInt8?
    public var sourcePorts: ClosedRange<UInt16>?
    public var destinationPorts: ClosedRange<UInt16>?
    public var uidRange: ClosedRange<UInt32>?
    /// fib_rule_hdr.tos (0: any).
    public var tos: UInt8 = 0
    /// For a goto rule: the priority it jumps to.
    public var gotoTarget: UInt32?
    public var l3mdev = false
    public var inputInterfaceDetached = false
    public var outputInterfaceDetached = false

    public init() {}

    /// The extra words `ip rule` prints: "ipproto tcp dport 80", "uidrange 1000-1000", "tos 0x10", "goto 1000".
    public var ipArguments: [String] {
        var args: [String] = []
        if tos != 0 { args += ["tos", "0x" + String(tos, radix: 16)] }
        if let ipProtocol { args += ["ipproto", Self.protocolName(ipProtocol)] }
        if let sourcePorts { args += ["sport", Self.range(sourcePorts)] }
        if let destinationPorts { args += ["dport", Self.range(destinationPorts)] }
        if let uidRange { args += ["uidrange", "\(uidRange.lowerBound)-\(uidRange.upperBound)"] }
        if l3mdev { args.append("l3mdev") }
        if let gotoTarget { args += ["goto", String(gotoTarget)] }
        return args
    }

    public static func protocolName(_ number: UInt8) -> String {
        switch number {
        case 1: return "icmp"
        case 6: return "tcp"
        case 17: return "udp"
        case 58: return "ipv6-icmp"
        case 132: return "sctp"
        default: return String(number)
        }
    }

    static func range(_ r: ClosedRange<UInt16>) -> String {
        r.lowerBound == r.upperBound ? String(r.lowerBound) : "\(r.lowerBound)-\(r.upperBound)"
    }
}

/// A rule with everything the kernel reports about it.
public struct DetailedRule: Sendable, Hashable, CustomStringConvertible {
    public var rule: Rule
    public var details: RuleDetails

    public init(rule: Rule, details: RuleDetails = RuleDetails()) {
        self.rule = rule
        self.details = details
    }

    /// `ip rule` syntax with every selector: "pref 1000 from 192.168.1.1 ipproto tcp dport 80 lookup 200" (without
    /// "proto kernel", as `ip rule` prints it).
    public var ipArguments: [String] {
        var args = rule.ipArguments
        // iproute2 shows the kernel's own protocol only in detail mode: so does this.
        if rule.proto == .kernel, let i = args.firstIndex(of: "proto"), i + 1 < args.count { args.removeSubrange(i...(i + 1)) }
        // The extra selectors go before the action, as iproute2 prints them.
        let actionWords: Set<String> = ["lookup", "goto", "nop", "blackhole", "unreachable", "prohibit"]
        let at = args.firstIndex { actionWords.contains($0) } ?? args.endIndex
        var extra = details.ipArguments
        if details.gotoTarget != nil, let i = extra.firstIndex(of: "goto") {
            extra.removeSubrange(i...(i + 1))
            if let g = args.firstIndex(of: "goto") { args.insert(String(details.gotoTarget ?? 0), at: g + 1) }
        }
        args.insert(contentsOf: extra, at: at)
        if details.inputInterfaceDetached, let i = args.firstIndex(of: "iif") { args.insert("[detached]", at: min(args.count, i + 2)) }
        if details.outputInterfaceDetached, let i = args.firstIndex(of: "oif") { args.insert("[detached]", at: min(args.count, i + 2)) }
        return args
    }

    public var description: String { ipArguments.joined(separator: " ") }
}

extension NetlinkSocket {
    /// Every rule of a family (`ip rule show`) with all its selectors, in the kernel's order (the order in which a
    /// lookup walks them).
    public func detailedRules(family: AddressFamily = .inet) throws(NetlinkError) -> [DetailedRule] {
        var message = MessageBuilder(type: UInt16(RTM_GETRULE), flags: 0)
        var header = fib_rule_hdr()
        header.family = family.rawValue
        message.append(header: header)
        let replies = try dump(message, operation: "list rules")
        return try decodeAll(replies, operation: "list rules") { message throws(WireError) -> DetailedRule? in
            guard var rule = try Rule.decode(message) else { return nil }
            // The kernel leaves FRA_PRIORITY out for priority 0 (the local rule).
            if rule.priority == nil { rule.priority = 0 }
            let reader = PayloadReader(message.payload)
            let header = try reader.header(fib_rule_hdr.self)
            var details = RuleDetails()
            details.tos = header.tos
            details.inputInterfaceDetached = header.flags & UInt32(FIB_RULE_IIF_DETACHED) != 0
            details.outputInterfaceDetached = header.flags & UInt32(FIB_RULE_OIF_DETACHED) != 0
            try reader.forEachAttribute(after: MemoryLayout<fib_rule_hdr>.size) { type, value throws(WireError) in
                switch Int(type) {
                case Int(FRA_IP_PROTO): details.ipProtocol = try value.u8()
                case Int(FRA_SPORT_RANGE): details.sourcePorts = try value.portRange()
                case Int(FRA_DPORT_RANGE): details.destinationPorts = try value.portRange()
                case Int(FRA_UID_RANGE):
                    guard value.count >= 8 else { throw WireError("uid range of \(value.count) bytes") }
                    let start = try value.prefix(4).u32(), end = try value.dropFirst(4).u32()
                    if start <= end { details.uidRange = start...end }
                case Int(FRA_GOTO): details.gotoTarget = try value.u32()
                case Int(FRA_L3MDEV): details.l3mdev = try value.u8() != 0
                default: break
                }
            }
            // The kernel reports the full range 0-4294967295 for rules without one.
            if details.uidRange == 0...UInt32.max - 1 || details.uidRange == 0...UInt32.max { details.uidRange = nil }
            return DetailedRule(rule: rule, details: details)
        }
    }
}

extension ArraySlice<UInt8> {
    /// struct fib_rule_port_range { __u16 start, end; } (host order).
    func portRange() throws(WireError) -> ClosedRange<UInt16> {
        guard count >= 4 else { throw WireError("port range of \(count) bytes") }
        let start = withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
        let end = withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self) }
        return start...Swift.max(start, end)
    }
}
