import CLinux

/// A route (`ip route`). `device` is an interface name; it is resolved to an index when the route is sent.
public struct Route: Sendable, Hashable, CustomStringConvertible {
    public var destination: IPPrefix
    public var table: UInt32
    public var type: RouteType
    public var proto: RouteProtocol
    /// nil: derived as iproute2 does (host for local, link for a unicast route without gateway, else global).
    public var scope: RouteScope?
    public var gateway: IPAddress?
    public var device: String?
    public var preferredSource: IPAddress?
    public var metric: UInt32?
    public var onlink: Bool
    /// A multipath route's next hops (RTA_MULTIPATH); empty for a route with one next hop (`gateway`, `device`).
    public var nexthops: [NextHop]

    /// One next hop of a multipath route (`nexthop via 10.1.1.2 dev eth1 weight 1`).
    public struct NextHop: Sendable, Hashable, CustomStringConvertible {
        public var gateway: IPAddress?
        public var device: String?
        /// rtnh_hops + 1, as iproute2 shows it.
        public var weight: UInt8
        public var onlink: Bool
        public init(gateway: IPAddress?, device: String?, weight: UInt8 = 1, onlink: Bool = false) {
            self.gateway = gateway
            self.device = device
            self.weight = weight
            self.onlink = onlink
        }
        public var ipArguments: [String] {
            var args = ["nexthop"]
            if let gateway { args += ["via", gateway.description] }
            if let device { args += ["dev", device] }
            args += ["weight", String(weight)]
            if onlink { args.append("onlink") }
            return args
        }
        public var description: String { ipArguments.joined(separator: " ") }
    }

    public init(destination: IPPrefix, table: UInt32 = RouteTable.main, type: RouteType = .unicast,
                proto: RouteProtocol = .boot, scope: RouteScope? = nil, gateway: IPAddress? = nil,
                device: String? = nil, preferredSource: IPAddress? = nil, metric: UInt32? = nil, onlink: Bool = false,
                nexthops: [NextHop] = []) {
        self.nexthops = nexthops
        self.destination = destination
        self.table = table
        self.type = type
        self.proto = proto
        self.scope = scope
        self.gateway = gateway
        self.device = device
        self.preferredSource = preferredSource
        self.metric = metric
        self.onlink = onlink
    }

    public var family: AddressFamily { destination.family }

    /// The metric the kernel gives an IPv6 route added without one (IP6_RT_PRIO_USER, net/ipv6/route.c).
    public static let ipv6DefaultMetric: UInt32 = 1024

    /// The metric the kernel records: the given one, else 0 for IPv4 and 1024 for IPv6.
    public var effectiveMetric: UInt32 { metric ?? (family == .inet6 ? Self.ipv6DefaultMetric : 0) }

    /// The route's identity in its table (what RTM_NEWROUTE with NLM_F_REPLACE replaces): table, type, destination,
    /// metric — and, for comparing with a desired route, gateway and device.
    public var key: String {
        let hops = nexthops.isEmpty ? "" : " " + nexthops.map(\.description).sorted().joined(separator: " ")
        return "\(table) \(type) \(destination.cidr) \(gateway?.description ?? "-") \(device ?? "-") \(effectiveMetric)\(hops)"
    }

    /// What RTM_NEWROUTE with NLM_F_REPLACE replaces: the route of the same table, type, destination and metric.
    public var replaceKey: String { "\(table) \(type) \(destination.cidr) \(effectiveMetric)" }

    /// Every gateway the route sends through: its own, or its next hops'.
    public var gateways: [IPAddress] { nexthops.isEmpty ? (gateway.map { [$0] } ?? []) : nexthops.compactMap(\.gateway) }
    /// The one device the route sends through: its own, or the one all its next hops share; nil when they differ.
    public var sharedDevice: String? {
        if let device { return device }
        let all = Set(devices)
        return all.count == 1 ? all.first : nil
    }
    /// Every device the route sends through: its own, or its next hops'.
    public var devices: [String] { nexthops.isEmpty ? (device.map { [$0] } ?? []) : nexthops.compactMap(\.device) }

    /// The scope the kernel will record: the given one, or iproute2's default.
    public var effectiveScope: RouteScope {
        if let scope { return scope }
        switch type {
        case .local, .nat: return .host
        case .broadcast, .multicast, .anycast: return .link
        case .unicast, .unspecified: return gateway == nil && nexthops.allSatisfy({ $0.gateway == nil }) ? .link : .universe
        default: return .universe
        }
    }

    /// The route in `ip route` syntax: "10.0.0.0/24 via 10.1.1.1 dev eth1 table 200 proto 3 metric 10".
    public var ipArguments: [String] {
        var args: [String] = []
        if type != .unicast { args.append(type.description) }
        args.append(destination.description)
        if let gateway { args += ["via", gateway.description] }
        if let device { args += ["dev", device] }
        if table != RouteTable.main { args += ["table", RouteTable.name(table)] }
        args += ["proto", proto.description]
        if let scope, scope != .universe { args += ["scope", scope.description] }
        if let preferredSource { args += ["src", preferredSource.description] }
        if let metric { args += ["metric", String(metric)] }
        if onlink { args.append("onlink") }
        for hop in nexthops { args += hop.ipArguments }
        return args
    }

    public var description: String { ipArguments.joined(separator: " ") }

    /// Problems the kernel would refuse, or that would silently do something else, found before sending.
    /// A route to delete may leave gateway and device out (they then match any).
    public func validate(deleting: Bool = false) -> String? {
        if table == RouteTable.unspecified { return "table 0 is not a routing table (RT_TABLE_UNSPEC)" }
        if !destination.isCanonical {
            return "\(destination.cidr) has host bits set (did you mean \(destination.network.cidr)?)"
        }
        if let gateway, gateway.family != family { return "gateway \(gateway) is not of the destination's family" }
        if let preferredSource, preferredSource.family != family {
            return "source \(preferredSource) is not of the destination's family"
        }
        if let device, let problem = Link.validate(name: device) { return problem }
        switch type {
        case .blackhole, .unreachable, .prohibit, .throw:
            if gateway != nil || device != nil { return "a \(type) route takes no gateway or device" }
        case .unicast:
            if gateway == nil && device == nil && nexthops.isEmpty && !deleting { return "a unicast route needs a gateway or a device" }
        default: break
        }
        if onlink && gateway == nil { return "onlink needs a gateway" }
        if !nexthops.isEmpty {
            if gateway != nil || device != nil { return "a multipath route has its gateways and devices in its next hops" }
            if nexthops.count > 255 { return "a route takes at most 255 next hops" }
            for hop in nexthops {
                if let gateway = hop.gateway, gateway.family != family { return "next hop \(gateway) is not of the destination's family" }
                if hop.gateway == nil && hop.device == nil { return "a next hop needs a gateway or a device" }
                if hop.weight == 0 { return "next hop weights run from 1 to 255" }
                if let device = hop.device, let problem = Link.validate(name: device) { return problem }
                if hop.onlink && hop.gateway == nil { return "onlink needs a gateway" }
            }
        }
        return nil
    }

    /// The RTM_NEWROUTE/RTM_DELROUTE message. `deviceIndex` is the resolved `device`, `index` resolves the next hops'.
    func message(_ type: Int32, flags: Int32, deviceIndex: Int32?, index: (String) -> Int32 = { _ in 0 }) -> MessageBuilder {
        var message = MessageBuilder(type: UInt16(type), flags: UInt16(flags))
        var header = rtmsg()
        header.rtm_family = family.rawValue
        header.rtm_dst_len = UInt8(destination.length)
        header.rtm_table = RouteTable.headerByte(table)
        let deleting = type == Int32(RTM_DELROUTE)
        header.rtm_protocol = proto.rawValue
        header.rtm_scope = deleting ? (scope ?? .nowhere).rawValue : effectiveScope.rawValue
        header.rtm_type = self.type.rawValue
        header.rtm_flags = onlink ? UInt32(RTNH_F_ONLINK) : 0
        message.append(header: header)
        message.append(attribute: UInt16(RTA_TABLE.rawValue), u32: table)
        if destination.length > 0 { message.append(attribute: UInt16(RTA_DST.rawValue), address: destination.address) }
        if let gateway { message.append(attribute: UInt16(RTA_GATEWAY.rawValue), address: gateway) }
        if let deviceIndex { message.append(attribute: UInt16(RTA_OIF.rawValue), s32: deviceIndex) }
        if let preferredSource { message.append(attribute: UInt16(RTA_PREFSRC.rawValue), address: preferredSource) }
        if let metric { message.append(attribute: UInt16(RTA_PRIORITY.rawValue), u32: metric) }
        if !nexthops.isEmpty { message.append(attribute: UInt16(RTA_MULTIPATH.rawValue), bytes: Self.multipath(nexthops, index: index)) }
        return message
    }

    /// RTA_MULTIPATH's payload: per next hop a struct rtnexthop (length, flags, hops, ifindex) and its attributes.
    static func multipath(_ hops: [NextHop], index: (String) -> Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        for hop in hops {
            var attributes = MessageBuilder(type: 0, flags: 0)
            if let gateway = hop.gateway { attributes.append(attribute: UInt16(RTA_GATEWAY.rawValue), address: gateway) }
            let body = attributes.bytes.dropFirst(netlinkHeaderSize)
            var header = rtnexthop()
            header.rtnh_len = UInt16(MemoryLayout<rtnexthop>.size + body.count)
            header.rtnh_flags = hop.onlink ? UInt8(RTNH_F_ONLINK) : 0
            header.rtnh_hops = hop.weight &- 1
            header.rtnh_ifindex = hop.device.map(index) ?? 0
            withUnsafeBytes(of: header) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: body)
        }
        return bytes
    }

    /// The next hops in an RTA_MULTIPATH payload.
    static func nexthops(_ value: ArraySlice<UInt8>, names: [Int32: String]) throws(WireError) -> [NextHop] {
        var hops: [NextHop] = []
        var offset = value.startIndex
        let size = MemoryLayout<rtnexthop>.size
        while value.endIndex - offset >= size {
            let header = value[offset..<(offset + size)].withUnsafeBytes { $0.loadUnaligned(as: rtnexthop.self) }
            let length = Int(header.rtnh_len)
            guard length >= size, length <= value.endIndex - offset else {
                throw WireError("next hop of length \(length) but \(value.endIndex - offset) bytes remain")
            }
            var gateway: IPAddress?
            try PayloadReader.forEachAttribute(in: value[(offset + size)..<(offset + length)]) { type, attribute throws(WireError) in
                if type == UInt16(RTA_GATEWAY.rawValue) { gateway = try attribute.address() }
            }
            let device = header.rtnh_ifindex == 0 ? nil : names[header.rtnh_ifindex] ?? "if\(header.rtnh_ifindex)"
            hops.append(NextHop(gateway: gateway, device: device, weight: header.rtnh_hops &+ 1,
                                onlink: header.rtnh_flags & UInt8(RTNH_F_ONLINK) != 0))
            offset += align4(length)
        }
        return hops
    }

    static func decode(_ message: NetlinkMessage, names: [Int32: String]) throws(WireError) -> Route? {
        guard message.type == UInt16(RTM_NEWROUTE) else { return nil }
        let reader = PayloadReader(message.payload)
        let header = try reader.header(rtmsg.self)
        guard let family = AddressFamily(rawValue: header.rtm_family), family != .unspecified else { return nil }
        var table = UInt32(header.rtm_table)
        var destination: IPAddress?, gateway: IPAddress?, source: IPAddress?
        var device: String?, metric: UInt32?, hops: [NextHop] = []
        try reader.forEachAttribute(after: MemoryLayout<rtmsg>.size) { type, value throws(WireError) in
            switch type {
            case UInt16(RTA_TABLE.rawValue): table = try value.u32()
            case UInt16(RTA_DST.rawValue): destination = try value.address()
            case UInt16(RTA_GATEWAY.rawValue): gateway = try value.address()
            case UInt16(RTA_PREFSRC.rawValue): source = try value.address()
            case UInt16(RTA_PRIORITY.rawValue): metric = try value.u32()
            case UInt16(RTA_MULTIPATH.rawValue): hops = try nexthops(value, names: names)
            case UInt16(RTA_OIF.rawValue):
                let index = try value.s32()
                device = names[index] ?? "if\(index)"
            default: break
            }
        }
        let zero: IPAddress = family == .inet6 ? .v6(0, 0) : .v4(0)
        let prefix: IPPrefix
        do { prefix = try IPPrefix(destination ?? zero, length: Int(header.rtm_dst_len)) } catch {
            throw WireError(error.description)
        }
        return Route(destination: prefix, table: table, type: RouteType(rawValue: header.rtm_type) ?? .unspecified,
                     proto: RouteProtocol(rawValue: header.rtm_protocol), scope: RouteScope(rawValue: header.rtm_scope),
                     gateway: gateway, device: device, preferredSource: source, metric: metric,
                     onlink: header.rtm_flags & UInt32(RTNH_F_ONLINK) != 0, nexthops: hops)
    }
}

extension NetlinkSocket {
    /// `ip route add`: fails with EEXIST when the route is there.
    public func addRoute(_ route: Route) throws(NetlinkError) {
        try sendRoutes([route], verb: "add", type: Int32(RTM_NEWROUTE), flags: NLM_F_CREATE | NLM_F_EXCL).throwFirst()
    }

    /// `ip route replace`: adds or updates the route (idempotent).
    public func replaceRoute(_ route: Route) throws(NetlinkError) {
        try sendRoutes([route], verb: "replace", type: Int32(RTM_NEWROUTE), flags: NLM_F_CREATE | NLM_F_REPLACE).throwFirst()
    }

    /// `ip route del`. Fields left nil (gateway, device, metric) and an unspecified protocol match any value.
    public func deleteRoute(_ route: Route) throws(NetlinkError) {
        try sendRoutes([route], verb: "delete", type: Int32(RTM_DELROUTE), flags: 0).throwFirst()
    }

    /// Replaces many routes, pipelined; one result per route, in order.
    public func replaceRoutes(_ routes: [Route]) throws(NetlinkError) -> [NetlinkError?] {
        try sendRoutes(routes, verb: "replace", type: Int32(RTM_NEWROUTE), flags: NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Adds many routes, pipelined (EEXIST where one is there); one result per route, in order.
    public func addRoutes(_ routes: [Route]) throws(NetlinkError) -> [NetlinkError?] {
        try sendRoutes(routes, verb: "add", type: Int32(RTM_NEWROUTE), flags: NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Deletes many routes, pipelined; one result per route, in order.
    public func deleteRoutes(_ routes: [Route]) throws(NetlinkError) -> [NetlinkError?] {
        try sendRoutes(routes, verb: "delete", type: Int32(RTM_DELROUTE), flags: 0)
    }

    /// Every route (`ip route show table all`), optionally of one family, one table and one protocol. Table and
    /// protocol are filtered by the kernel (strict dump checking): a dump of one table of ten routes does not read
    /// the ten thousand local routes of a node with many addresses.
    /// `names` (index → name, from `linkNames()`) saves a link dump when many route dumps run in a row.
    public func routes(family: AddressFamily = .unspecified, table: UInt32? = nil,
                       proto: RouteProtocol? = nil, names known: [Int32: String]? = nil) throws(NetlinkError) -> [Route] {
        var message = MessageBuilder(type: UInt16(RTM_GETROUTE), flags: 0)
        var header = rtmsg()
        header.rtm_family = family.rawValue
        header.rtm_protocol = proto?.rawValue ?? 0
        if let table { header.rtm_table = RouteTable.headerByte(table) }
        message.append(header: header)
        if let table { message.append(attribute: UInt16(RTA_TABLE.rawValue), u32: table) }
        let replies: [NetlinkMessage]
        do {
            replies = try dump(message, operation: "list routes")
        } catch let error where table != nil && error.errno == .noSuchFileOrDirectory {
            return []   // "FIB table does not exist": an empty table
        }
        let names: [Int32: String]
        if let known { names = known } else { names = try linkNames() }
        let routes = try decodeAll(replies, operation: "list routes") { m throws(WireError) in try Route.decode(m, names: names) }
        // Families whose dumps ignore the filters (and old kernels) still get the right answer.
        return routes.filter { (table == nil || $0.table == table) && (proto == nil || $0.proto == proto) }
    }

    /// Validates every route and resolves device names (each once) before anything is sent.
    private func sendRoutes(_ routes: [Route], verb: String, type: Int32, flags: Int32) throws(NetlinkError) -> [NetlinkError?] {
        var indices: [String: Int32] = [:]
        var messages: [MessageBuilder] = []
        messages.reserveCapacity(routes.count)
        for route in routes {
            let operation = "\(verb) route \(route)"
            if let problem = route.validate(deleting: type == Int32(RTM_DELROUTE)) { throw .invalidRequest(operation: operation, reason: problem) }
            var index: Int32?
            for device in route.devices where indices[device] == nil {
                indices[device] = try self.index(of: device, for: operation)
            }
            if let device = route.device { index = indices[device] }
            messages.append(route.message(type, flags: flags, deviceIndex: index) { indices[$0] ?? 0 })
        }
        return try batch(messages) { "\(verb) route \(routes[$0])" }
    }
}

extension Array where Element == NetlinkError? {
    /// Throws the first error of a batch, if any.
    public func throwFirst() throws(NetlinkError) {
        for case let error? in self { throw error }
    }
}
