import CLinux

/// A question for the kernel's routing decision: `ip route get DEST [from SRC] [iif DEV] [oif DEV] [mark MARK]`.
public struct RouteQuery: Sendable, Hashable, CustomStringConvertible {
    public var destination: IPAddress
    public var source: IPAddress?
    /// Simulate a packet received on this interface (input route, as forwarding or local delivery sees it).
    public var inputInterface: String?
    public var outputInterface: String?
    public var mark: UInt32?
    /// The packet's IP protocol and ports, for rules that select by them (`ipproto tcp sport 1000 dport 80`).
    public var ipProtocol: UInt8?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?

    public init(destination: IPAddress, source: IPAddress? = nil, inputInterface: String? = nil,
                outputInterface: String? = nil, mark: UInt32? = nil, ipProtocol: UInt8? = nil,
                sourcePort: UInt16? = nil, destinationPort: UInt16? = nil) {
        self.destination = destination
        self.source = source
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.mark = mark
        self.ipProtocol = ipProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }

    public var ipArguments: [String] {
        var args = [destination.description]
        if let source { args += ["from", source.description] }
        if let inputInterface { args += ["iif", inputInterface] }
        if let outputInterface { args += ["oif", outputInterface] }
        if let mark { args += ["mark", hex(mark)] }
        if let ipProtocol { args += ["ipproto", RuleDetails.protocolName(ipProtocol)] }
        if let sourcePort { args += ["sport", String(sourcePort)] }
        if let destinationPort { args += ["dport", String(destinationPort)] }
        return args
    }

    public var description: String { ipArguments.joined(separator: " ") }
}

/// The kernel's answer: the route it would use.
public struct RouteDecision: Sendable, Hashable, CustomStringConvertible {
    public var type: RouteType
    public var table: UInt32
    public var destination: IPAddress
    public var gateway: IPAddress?
    /// The output interface (for local delivery, the loopback device).
    public var device: String?
    public var preferredSource: IPAddress?
    public var inputInterface: String?
    /// With `fibMatch`: the route entry that matched ("default", "10.0.0.0/8"), as `ip route get … fibmatch`.
    public var matchedPrefix: IPPrefix?

    public var description: String {
        var parts: [String] = []
        if type != .unicast { parts.append(type.description) }
        parts.append(destination.description)
        if let gateway { parts += ["via", gateway.description] }
        if let device { parts += ["dev", device] }
        parts += ["table", RouteTable.name(table)]
        if let preferredSource { parts += ["src", preferredSource.description] }
        if let inputInterface { parts += ["iif", inputInterface] }
        return parts.joined(separator: " ")
    }
}

extension NetlinkSocket {
    /// The kernel's own routing decision for a packet (RTM_GETROUTE), with policy rules, marks and input
    /// interface taken into account exactly as for real traffic.
    /// With `fibMatch` the kernel reports the matching FIB entry itself (its prefix), not the resulting route.
    public func lookup(_ query: RouteQuery, fibMatch: Bool = false) throws(NetlinkError) -> RouteDecision {
        let operation = "get route \(query)" + (fibMatch ? " fibmatch" : "")
        if let source = query.source, source.family != query.destination.family {
            throw .invalidRequest(operation: operation, reason: "source \(source) is not of the destination's family")
        }
        let family = query.destination.family
        var message = MessageBuilder(type: UInt16(RTM_GETROUTE), flags: 0)
        var header = rtmsg()
        header.rtm_family = family.rawValue
        header.rtm_dst_len = UInt8(family.bitLength)
        header.rtm_src_len = query.source == nil ? 0 : UInt8(family.bitLength)
        // Report the table the route came from, not main (IPv4; IPv6 reports it anyway, and its strict checks
        // refuse any flag but RTM_F_FIB_MATCH).
        header.rtm_flags = family == .inet ? UInt32(RTM_F_LOOKUP_TABLE) : 0
        if fibMatch { header.rtm_flags |= UInt32(RTM_F_FIB_MATCH) }
        message.append(header: header)
        message.append(attribute: UInt16(RTA_DST.rawValue), address: query.destination)
        if let source = query.source { message.append(attribute: UInt16(RTA_SRC.rawValue), address: source) }
        if let name = query.inputInterface {
            message.append(attribute: UInt16(RTA_IIF.rawValue), s32: try index(of: name, for: operation))
        }
        if let name = query.outputInterface {
            message.append(attribute: UInt16(RTA_OIF.rawValue), s32: try index(of: name, for: operation))
        }
        if let mark = query.mark { message.append(attribute: UInt16(RTA_MARK.rawValue), u32: mark) }
        if let ipProtocol = query.ipProtocol { message.append(attribute: UInt16(RTA_IP_PROTO.rawValue), u8: ipProtocol) }
        // Ports in network byte order (nla_get_be16).
        if let port = query.sourcePort { message.append(attribute: UInt16(RTA_SPORT.rawValue), bytes: [UInt8(port >> 8), UInt8(port & 0xff)]) }
        if let port = query.destinationPort { message.append(attribute: UInt16(RTA_DPORT.rawValue), bytes: [UInt8(port >> 8), UInt8(port & 0xff)]) }

        let replies = try request(message, operation: operation)
        var decision: (RouteDecision, Int32?, Int32?)?
        do throws(WireError) {
            for reply in replies where reply.type == UInt16(RTM_NEWROUTE) {
                let reader = PayloadReader(reply.payload)
                let header = try reader.header(rtmsg.self)
                var result = RouteDecision(type: RouteType(rawValue: header.rtm_type) ?? .unspecified,
                                           table: UInt32(header.rtm_table), destination: query.destination)
                var oif: Int32?, iif: Int32?, matched: IPAddress?
                try reader.forEachAttribute(after: MemoryLayout<rtmsg>.size) { type, value throws(WireError) in
                    switch type {
                    case UInt16(RTA_TABLE.rawValue): result.table = try value.u32()
                    case UInt16(RTA_GATEWAY.rawValue): result.gateway = try value.address()
                    case UInt16(RTA_PREFSRC.rawValue): result.preferredSource = try value.address()
                    case UInt16(RTA_OIF.rawValue): oif = try value.s32()
                    case UInt16(RTA_IIF.rawValue): iif = try value.s32()
                    case UInt16(RTA_DST.rawValue): matched = try value.address()
                    default: break
                    }
                }
                if fibMatch {
                    let zero: IPAddress = query.destination.family == .inet6 ? .v6(0, 0) : .v4(0)
                    result.matchedPrefix = try? IPPrefix(matched ?? zero, length: Int(header.rtm_dst_len))
                }
                decision = (result, oif, iif)
            }
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
        guard case (var result, let oif, let iif)? = decision else {
            throw .protocolViolation(operation: operation, reason: "the kernel answered without a route")
        }
        if oif != nil || iif != nil {
            let names = try linkNames()
            result.device = oif.map { names[$0] ?? "if\($0)" }
            result.inputInterface = iif.map { names[$0] ?? "if\($0)" }
        }
        return result
    }
}
