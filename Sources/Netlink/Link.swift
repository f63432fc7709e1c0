import CLinux
import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A link type as IFLA_INFO_KIND names it: the kernel's rtnl_link_ops name ("veth", "bridge", "vxlan", …).
public struct LinkKind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let veth = LinkKind(rawValue: "veth")
    public static let bridge = LinkKind(rawValue: "bridge")
    public var description: String { rawValue }
}

/// IFLA_OPERSTATE: RFC 2863's operational states, numbered as linux/if.h's IF_OPER_* enum.
public struct OperationalState: RawRepresentable, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// IF_OPER_UNKNOWN: the driver does not say (lo).
    public static let unknown = OperationalState(rawValue: 0)
    /// IF_OPER_DOWN.
    public static let down = OperationalState(rawValue: 2)
    /// IF_OPER_LOWERLAYERDOWN: e.g. a veth whose peer is down.
    public static let lowerLayerDown = OperationalState(rawValue: 3)
    /// IF_OPER_UP: carrier and running.
    public static let up = OperationalState(rawValue: 6)
}

/// A network interface as RTM_NEWLINK describes it.
public struct Link: Sendable, Hashable {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND: .veth, .bridge, … (nil for lo and physical devices).
    public var kind: LinkKind?
    public var flags: UInt32
    public var mtu: UInt32
    /// Hardware address, "aa:bb:cc:dd:ee:ff".
    public var hardwareAddress: String?
    /// IFLA_MASTER: the bridge (or other master) this interface is enslaved to.
    public var masterIndex: Int32?
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace when `linkNetnsID` is set).
    public var peerIndex: Int32?
    public var linkNetnsID: Int32?
    /// IFLA_IFALIAS: free text; returnpath uses it as an ownership marker.
    public var alias: String?
    /// IFLA_OPERSTATE (RFC 2863).
    public var operState: OperationalState = .unknown

    public var isUp: Bool { flags & clinux_IFF_UP != 0 }
    public var isLowerUp: Bool { flags & clinux_IFF_LOWER_UP != 0 }
    public var isLoopback: Bool { flags & clinux_IFF_LOOPBACK != 0 }
    /// Operationally up: administratively up and with carrier, as `ip link` shows "state UP".
    public var isOperationallyUp: Bool { operState == .up }

    /// The longest interface name the kernel takes (IFNAMSIZ - 1).
    public static let maximumNameLength = 15
    /// The longest alias the kernel keeps (IFALIASZ - 1).
    public static let maximumAliasLength = 255

    /// Checks a name as the kernel's dev_valid_name does.
    public static func validate(name: String) -> String? {
        if name.isEmpty { return "empty interface name" }
        if name.utf8.count > maximumNameLength {
            return "interface name \"\(name)\" is longer than \(maximumNameLength) bytes"
        }
        if name == "." || name == ".." { return "interface name \"\(name)\" is reserved" }
        if name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) || name.utf8.contains(0) {
            return "interface name \"\(name)\" contains '/', ':', NUL or white space"
        }
        return nil
    }

    static func decode(_ message: NetlinkMessage) throws(WireError) -> Link? {
        guard message.type == UInt16(RTM_NEWLINK) else { return nil }
        let reader = PayloadReader(message.payload)
        let info = try reader.header(ifinfomsg.self)
        var link = Link(index: info.ifi_index, name: "", flags: info.ifi_flags, mtu: 0)
        try reader.forEachAttribute(after: MemoryLayout<ifinfomsg>.size) { type, value throws(WireError) in
            switch Int32(type) {
            case Int32(IFLA_IFNAME): link.name = value.string()
            case Int32(IFLA_MTU): link.mtu = try value.u32()
            case Int32(IFLA_MASTER): link.masterIndex = try value.s32()
            case Int32(IFLA_LINK): link.peerIndex = try value.s32()
            case Int32(IFLA_LINK_NETNSID): link.linkNetnsID = try value.s32()
            case Int32(IFLA_IFALIAS): link.alias = value.string()
            case Int32(IFLA_OPERSTATE): link.operState = OperationalState(rawValue: try value.u8())
            case Int32(IFLA_ADDRESS):
                link.hardwareAddress = value.map { byte in
                    let hex = String(byte, radix: 16)
                    return hex.count == 1 ? "0" + hex : hex
                }.joined(separator: ":")
            case Int32(IFLA_LINKINFO):
                try PayloadReader.forEachAttribute(in: value) { inner, data throws(WireError) in
                    if Int32(inner) == Int32(IFLA_INFO_KIND) { link.kind = LinkKind(rawValue: data.string()) }
                }
            default: break
            }
        }
        return link
    }
}

extension NetlinkSocket {
    static func linkMessage(_ type: Int32, flags: Int32 = 0, index: Int32 = 0,
                            setFlags: UInt32 = 0, change: UInt32 = 0) -> MessageBuilder {
        var message = MessageBuilder(type: UInt16(type), flags: UInt16(flags))
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        info.ifi_flags = setFlags
        info.ifi_change = change
        message.append(header: info)
        return message
    }

    /// Every interface in the namespace (`ip link show`).
    public func links() throws(NetlinkError) -> [Link] {
        let messages = try dump(Self.linkMessage(Int32(RTM_GETLINK)), operation: "list links")
        return try decodeAll(messages, operation: "list links", Link.decode)
    }

    /// The interface called `name`, or nil when there is none.
    public func link(named name: String) throws(NetlinkError) -> Link? {
        if let problem = Link.validate(name: name) {
            throw .invalidRequest(operation: "get link \(name)", reason: problem)
        }
        var message = Self.linkMessage(Int32(RTM_GETLINK))
        message.append(attribute: UInt16(IFLA_IFNAME), string: name)
        return try getLink(message, operation: "get link \(name)")
    }

    /// The interface with this index, or nil when there is none.
    public func link(index: Int32) throws(NetlinkError) -> Link? {
        try getLink(Self.linkMessage(Int32(RTM_GETLINK), index: index), operation: "get link index \(index)")
    }

    private func getLink(_ message: MessageBuilder, operation: String) throws(NetlinkError) -> Link? {
        do {
            return try decodeAll(try request(message, operation: operation), operation: operation, Link.decode).first
        } catch let error where error.errno == Errno.noSuchDevice {
            return nil
        }
    }

    /// The index of interface `name`; an unknown device is an invalid request (nothing was changed).
    public func index(of name: String, for operation: @autoclosure () -> String) throws(NetlinkError) -> Int32 {
        guard let link = try link(named: name) else {
            throw .invalidRequest(operation: operation(), reason: "unknown device \"\(name)\" in \(namespace)")
        }
        return link.index
    }

    /// Index → name for every interface, from one dump.
    public func linkNames() throws(NetlinkError) -> [Int32: String] {
        Dictionary(try links().map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
    }

    /// Creates a veth pair with each end made directly in its namespace (IFLA_NET_NS_FD on the link and on the
    /// peer), so no end ever appears anywhere else, whichever namespace this socket lives in.
    ///
    /// `index` and `peerIndex` choose the interfaces' ifindex (0: the kernel picks). Distinct indices matter: the
    /// kernel treats a carrier change as urgent only when a link's index differs from its peer's, and in two fresh
    /// namespaces both ends would get the same index — then carrier comes up to a second later.
    public func createVeth(_ name: String, in namespace: NetworkNamespace, peer: String, in peerNamespace: NetworkNamespace,
                           mtu: UInt32? = nil, index: Int32 = 0, peerIndex: Int32 = 0) throws(NetlinkError) {
        let operation = "add link \(name) netns \(namespace) type veth peer name \(peer) netns \(peerNamespace)"
        for candidate in [name, peer] {
            if let problem = Link.validate(name: candidate) { throw .invalidRequest(operation: operation, reason: problem) }
        }
        let fd: Int32, peerFD: Int32
        do {
            fd = try namespace.openDescriptor()
        } catch { throw .namespace(error) }
        defer { close(fd) }
        do {
            peerFD = try peerNamespace.openDescriptor()
        } catch { throw .namespace(error) }
        defer { close(peerFD) }

        var message = Self.linkMessage(Int32(RTM_NEWLINK), flags: NLM_F_CREATE | NLM_F_EXCL, index: index)
        message.append(attribute: UInt16(IFLA_IFNAME), string: name)
        message.append(attribute: UInt16(IFLA_NET_NS_FD), u32: UInt32(fd))
        if let mtu { message.append(attribute: UInt16(IFLA_MTU), u32: mtu) }
        message.nest(UInt16(IFLA_LINKINFO)) { info in
            info.append(attribute: UInt16(IFLA_INFO_KIND), string: LinkKind.veth.rawValue)
            info.nest(UInt16(IFLA_INFO_DATA)) { data in
                data.nest(UInt16(VETH_INFO_PEER)) { peerInfo in
                    var header = ifinfomsg()
                    header.ifi_family = UInt8(AF_UNSPEC)
                    header.ifi_index = peerIndex
                    peerInfo.append(header: header)
                    peerInfo.append(attribute: UInt16(IFLA_IFNAME), string: peer)
                    peerInfo.append(attribute: UInt16(IFLA_NET_NS_FD), u32: UInt32(peerFD))
                    if let mtu { peerInfo.append(attribute: UInt16(IFLA_MTU), u32: mtu) }
                }
            }
        }
        try request(message, operation: operation)
    }

    /// Creates a bridge in this socket's namespace.
    public func createBridge(_ name: String) throws(NetlinkError) {
        let operation = "add link \(name) type bridge"
        if let problem = Link.validate(name: name) { throw .invalidRequest(operation: operation, reason: problem) }
        var message = Self.linkMessage(Int32(RTM_NEWLINK), flags: NLM_F_CREATE | NLM_F_EXCL)
        message.append(attribute: UInt16(IFLA_IFNAME), string: name)
        message.nest(UInt16(IFLA_LINKINFO)) { info in
            info.append(attribute: UInt16(IFLA_INFO_KIND), string: LinkKind.bridge.rawValue)
        }
        try request(message, operation: operation)
    }

    /// `ip link set NAME up|down`.
    public func setLink(_ name: String, up: Bool) throws(NetlinkError) {
        let operation = "set link \(name) \(up ? "up" : "down")"
        let index = try index(of: name, for: operation)
        try setLink(index: index, up: up, operation: operation)
    }

    public func setLink(index: Int32, up: Bool, operation: String? = nil) throws(NetlinkError) {
        let message = Self.linkMessage(Int32(RTM_NEWLINK), index: index, setFlags: up ? clinux_IFF_UP : 0, change: clinux_IFF_UP)
        try request(message, operation: operation ?? "set link index \(index) \(up ? "up" : "down")")
    }

    /// `ip link set NAME mtu MTU`.
    public func setMTU(_ name: String, _ mtu: UInt32) throws(NetlinkError) {
        let operation = "set link \(name) mtu \(mtu)"
        guard mtu >= 68 else { throw .invalidRequest(operation: operation, reason: "MTU \(mtu) is below the minimum of 68") }
        var message = Self.linkMessage(Int32(RTM_NEWLINK), index: try index(of: name, for: operation))
        message.append(attribute: UInt16(IFLA_MTU), u32: mtu)
        try request(message, operation: operation)
    }

    /// `ip link set NAME alias TEXT`: free text the kernel keeps with the interface (an ownership marker).
    /// The kernel ignores an alias given at creation, so it is set afterwards.
    public func setAlias(_ name: String, _ alias: String) throws(NetlinkError) {
        let operation = "set link \(name) alias \(alias)"
        guard alias.utf8.count <= Link.maximumAliasLength, !alias.utf8.contains(0) else {
            throw .invalidRequest(operation: operation, reason: "an alias is at most 255 bytes, without NUL")
        }
        var message = Self.linkMessage(Int32(RTM_NEWLINK), index: try index(of: name, for: operation))
        message.append(attribute: UInt16(IFLA_IFALIAS), string: alias)
        try request(message, operation: operation)
    }

    /// `ip link set NAME master BRIDGE` (nil: nomaster).
    public func setMaster(_ name: String, _ master: String?) throws(NetlinkError) {
        let operation = "set link \(name) " + (master.map { "master \($0)" } ?? "nomaster")
        let index = try index(of: name, for: operation)
        let masterIndex = try master.map { m throws(NetlinkError) in try self.index(of: m, for: operation) } ?? 0
        var message = Self.linkMessage(Int32(RTM_NEWLINK), index: index)
        message.append(attribute: UInt16(IFLA_MASTER), s32: masterIndex)
        try request(message, operation: operation)
    }

    /// `ip link del NAME`. Deleting one end of a veth deletes both.
    public func deleteLink(_ name: String) throws(NetlinkError) {
        let operation = "delete link \(name)"
        let message = Self.linkMessage(Int32(RTM_DELLINK), index: try index(of: name, for: operation))
        try request(message, operation: operation)
    }

    /// Decodes every message with `decode`, turning malformed replies into a protocol error naming `operation`.
    func decodeAll<T>(_ messages: [NetlinkMessage], operation: @autoclosure () -> String,
                      _ decode: (NetlinkMessage) throws(WireError) -> T?) throws(NetlinkError) -> [T] {
        var items: [T] = []
        items.reserveCapacity(messages.count)
        do throws(WireError) {
            for message in messages { if let item = try decode(message) { items.append(item) } }
        } catch {
            throw .protocolViolation(operation: operation(), reason: "malformed reply: \(error)")
        }
        return items
    }
}
