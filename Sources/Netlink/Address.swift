import CLinux

/// An address on an interface (`ip addr`).
public struct InterfaceAddress: Sendable, Hashable, CustomStringConvertible {
    public var interface: String
    /// The local address and prefix length (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).
    public var prefix: IPPrefix
    /// The peer of a point-to-point address (IFA_ADDRESS when it differs from IFA_LOCAL).
    public var peer: IPAddress?
    public var scope: RouteScope
    /// IFA_F_* flags (permanent, nodad, …).
    public var flags: UInt32
    public var label: String?

    public init(interface: String, prefix: IPPrefix, peer: IPAddress? = nil, scope: RouteScope = .universe,
                flags: UInt32 = 0, label: String? = nil) {
        self.interface = interface
        self.prefix = prefix
        self.peer = peer
        self.scope = scope
        self.flags = flags
        self.label = label
    }

    public var family: AddressFamily { prefix.family }
    public static let noDAD = UInt32(IFA_F_NODAD)
    public static let permanent = UInt32(IFA_F_PERMANENT)

    public var description: String { "\(prefix.cidr) dev \(interface) scope \(scope)" }

    static func decode(_ message: NetlinkMessage, names: [Int32: String]) throws(WireError) -> InterfaceAddress? {
        guard message.type == UInt16(RTM_NEWADDR) else { return nil }
        let reader = PayloadReader(message.payload)
        let header = try reader.header(ifaddrmsg.self)
        var local: IPAddress?, address: IPAddress?, label: String?
        var flags = UInt32(header.ifa_flags)
        try reader.forEachAttribute(after: MemoryLayout<ifaddrmsg>.size) { type, value throws(WireError) in
            switch Int(type) {
            case Int(IFA_LOCAL): local = try value.address()
            case Int(IFA_ADDRESS): address = try value.address()
            case Int(IFA_LABEL): label = value.string()
            case Int(IFA_FLAGS): flags = try value.u32()
            default: break
            }
        }
        guard let mine = local ?? address else { return nil }
        let prefix: IPPrefix
        do { prefix = try IPPrefix(mine, length: Int(header.ifa_prefixlen)) } catch { throw WireError(error.description) }
        let index = Int32(bitPattern: header.ifa_index)
        return InterfaceAddress(
            interface: names[index] ?? "if\(index)", prefix: prefix,
            peer: (local != nil && address != nil && address != local) ? address : nil,
            scope: RouteScope(rawValue: header.ifa_scope), flags: flags,
            label: label)
    }
}

extension NetlinkSocket {
    private func addressMessage(_ type: Int32, flags: Int32, _ prefix: IPPrefix, index: Int32,
                                scope: RouteScope) -> MessageBuilder {
        var message = MessageBuilder(type: UInt16(type), flags: UInt16(flags))
        var header = ifaddrmsg()
        header.ifa_family = prefix.family.rawValue
        header.ifa_prefixlen = UInt8(prefix.length)
        header.ifa_scope = scope.rawValue
        header.ifa_index = UInt32(bitPattern: index)
        message.append(header: header)
        message.append(attribute: UInt16(IFA_LOCAL), address: prefix.address)
        message.append(attribute: UInt16(IFA_ADDRESS), address: prefix.address)
        return message
    }

    /// `ip addr replace PREFIX dev NAME`: adds the address, or updates it when it is there (idempotent).
    /// Without a scope, 127/8 and ::1 get host scope and others global, as iproute2 does.
    public func addAddress(_ prefix: IPPrefix, to interface: String, scope: RouteScope? = nil,
                           label: String? = nil, flags: UInt32 = 0) throws(NetlinkError) {
        let scope = scope ?? (prefix.address.isLoopback ? .host : .universe)
        let operation = "add address \(prefix.cidr) dev \(interface)"
        if let label, prefix.family != .inet || label.utf8.count > Link.maximumNameLength {
            throw .invalidRequest(operation: operation, reason: "label \"\(label)\" needs IPv4 and at most 15 bytes")
        }
        let index = try index(of: interface, for: operation)
        var message = addressMessage(Int32(RTM_NEWADDR), flags: NLM_F_CREATE | NLM_F_REPLACE, prefix, index: index, scope: scope)
        if let label { message.append(attribute: UInt16(IFA_LABEL), string: label) }
        if flags != 0 { message.append(attribute: UInt16(IFA_FLAGS), u32: flags) }
        try request(message, operation: operation)
    }

    /// `ip addr del PREFIX dev NAME`.
    public func deleteAddress(_ prefix: IPPrefix, from interface: String) throws(NetlinkError) {
        let operation = "delete address \(prefix.cidr) dev \(interface)"
        let index = try index(of: interface, for: operation)
        try request(addressMessage(Int32(RTM_DELADDR), flags: 0, prefix, index: index, scope: .universe), operation: operation)
    }

    /// Every address in the namespace (`ip addr show`), optionally of one family and one interface (filtered by
    /// the kernel).
    public func addresses(family: AddressFamily = .unspecified, interface: String? = nil) throws(NetlinkError) -> [InterfaceAddress] {
        var message = MessageBuilder(type: UInt16(RTM_GETADDR), flags: 0)
        var header = ifaddrmsg()
        header.ifa_family = family.rawValue
        if let interface { header.ifa_index = UInt32(bitPattern: try index(of: interface, for: "list addresses dev \(interface)")) }
        message.append(header: header)
        let replies = try dump(message, operation: "list addresses")
        let names = try linkNames()
        let all = try decodeAll(replies, operation: "list addresses") { m throws(WireError) in
            try InterfaceAddress.decode(m, names: names)
        }
        return interface.map { name in all.filter { $0.interface == name } } ?? all
    }
}
