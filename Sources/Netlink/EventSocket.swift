import CLinux
import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// One change the kernel announced on a multicast group: what kind of object, whether it went away, and the few
/// fields that tell whether it can touch what returnpath owns.
public struct NetlinkEvent: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case link, address, route, rule, nftables
    }

    public var kind: Kind
    /// RTM_DEL* / NFT_MSG_DEL* (or DESTROY*).
    public var deleted: Bool
    /// nlmsg_pid: the port id of the socket whose request caused the change (0: the kernel itself).
    public var sender: UInt32
    /// The message type as the kernel sent it (RTM_NEWLINK, …; for nf_tables the NFT_MSG_* value).
    public var type: UInt16
    public var family: UInt8 = 0
    /// link, address: the interface's index; route: its output interface (RTA_OIF) when it has one.
    public var interfaceIndex: Int32?
    /// link: IFLA_IFNAME.
    public var interfaceName: String?
    /// link: IFF_* flags.
    public var linkFlags: UInt32?
    /// address: IFA_LOCAL (or IFA_ADDRESS).
    public var address: IPAddress?
    /// address: ifa_scope.
    public var scope: RouteScope?
    /// route, rule: the table (RTA_TABLE / FRA_TABLE, else the header's).
    public var table: UInt32?
    /// route: rtm_protocol; rule: FRA_PROTOCOL.
    public var proto: UInt8?
    /// rule: FRA_PRIORITY.
    public var priority: UInt32?
    /// nftables: the table the object belongs to (nil for a generation message).
    public var nftTable: String?

    public init(kind: Kind, deleted: Bool, sender: UInt32, type: UInt16) {
        self.kind = kind
        self.deleted = deleted
        self.sender = sender
        self.type = type
    }

    public var description: String {
        var parts = ["\(deleted ? "del" : "new")\(kind.rawValue)"]
        if let interfaceName { parts.append("dev \(interfaceName)") } else if let interfaceIndex { parts.append("ifindex \(interfaceIndex)") }
        if let address { parts.append("\(address)") }
        if let priority { parts.append("pref \(priority)") }
        if let table { parts.append("table \(table)") }
        if let proto { parts.append("proto \(proto)") }
        if let nftTable { parts.append("nft table \(nftTable)") }
        if sender != 0 { parts.append("port \(sender)") }
        return parts.joined(separator: " ")
    }

    /// Decodes a notification; nil for messages that are not about links, addresses, routes, rules or nf_tables
    /// objects (and for ones too short to read).
    public static func decode(_ message: NetlinkMessage, netfilter: Bool) -> NetlinkEvent? {
        netfilter ? decodeNetfilter(message) : decodeRoute(message)
    }

    private static func decodeRoute(_ message: NetlinkMessage) -> NetlinkEvent? {
        let reader = PayloadReader(message.payload)
        let type = Int32(message.type)
        do throws(WireError) {
            switch type {
            case Int32(RTM_NEWLINK), Int32(RTM_DELLINK):
                let header = try reader.header(ifinfomsg.self)
                var event = NetlinkEvent(kind: .link, deleted: type == Int32(RTM_DELLINK), sender: message.portID, type: message.type)
                event.family = header.ifi_family
                event.interfaceIndex = header.ifi_index
                event.linkFlags = header.ifi_flags
                try reader.forEachAttribute(after: MemoryLayout<ifinfomsg>.size) { attribute, value throws(WireError) in
                    if Int32(attribute) == Int32(IFLA_IFNAME) { event.interfaceName = value.string() }
                }
                return event
            case Int32(RTM_NEWADDR), Int32(RTM_DELADDR):
                let header = try reader.header(ifaddrmsg.self)
                var event = NetlinkEvent(kind: .address, deleted: type == Int32(RTM_DELADDR), sender: message.portID, type: message.type)
                event.family = header.ifa_family
                event.interfaceIndex = Int32(bitPattern: header.ifa_index)
                event.scope = RouteScope(rawValue: header.ifa_scope)
                var local: IPAddress?, address: IPAddress?
                try reader.forEachAttribute(after: MemoryLayout<ifaddrmsg>.size) { attribute, value throws(WireError) in
                    switch Int(attribute) {
                    case Int(IFA_LOCAL): local = try value.address()
                    case Int(IFA_ADDRESS): address = try value.address()
                    default: break
                    }
                }
                event.address = local ?? address
                return event
            case Int32(RTM_NEWROUTE), Int32(RTM_DELROUTE):
                let header = try reader.header(rtmsg.self)
                var event = NetlinkEvent(kind: .route, deleted: type == Int32(RTM_DELROUTE), sender: message.portID, type: message.type)
                event.family = header.rtm_family
                event.proto = header.rtm_protocol
                event.table = UInt32(header.rtm_table)
                try reader.forEachAttribute(after: MemoryLayout<rtmsg>.size) { attribute, value throws(WireError) in
                    switch Int32(attribute) {
                    case Int32(RTA_TABLE.rawValue): event.table = try value.u32()
                    case Int32(RTA_OIF.rawValue): event.interfaceIndex = try value.s32()
                    default: break
                    }
                }
                return event
            case Int32(RTM_NEWRULE), Int32(RTM_DELRULE):
                let header = try reader.header(fib_rule_hdr.self)
                var event = NetlinkEvent(kind: .rule, deleted: type == Int32(RTM_DELRULE), sender: message.portID, type: message.type)
                event.family = header.family
                event.table = UInt32(header.table)
                event.proto = 0
                try reader.forEachAttribute(after: MemoryLayout<fib_rule_hdr>.size) { attribute, value throws(WireError) in
                    switch Int32(attribute) {
                    case Int32(FRA_PRIORITY): event.priority = try value.u32()
                    case Int32(FRA_TABLE): event.table = try value.u32()
                    case Int32(FRA_PROTOCOL): event.proto = try value.u8()
                    default: break
                    }
                }
                if event.priority == nil { event.priority = 0 }
                return event
            default:
                return nil
            }
        } catch {
            return nil
        }
    }

    /// nf_tables message types (linux/netfilter/nf_tables.h, enum nf_tables_msg_types).
    enum NftMessage {
        static let subsystem: UInt16 = 10          // NFNL_SUBSYS_NFTABLES
        static let newGeneration: UInt16 = 15      // NFT_MSG_NEWGEN
        /// NFT_MSG_DELTABLE, DELCHAIN, DELRULE, DELSET, DELSETELEM, DELOBJ, DELFLOWTABLE, DESTROY*.
        static let deletions: Set<UInt16> = [2, 5, 8, 11, 14, 20, 24, 26, 27, 28, 29, 30, 31, 32]
    }

    private static func decodeNetfilter(_ message: NetlinkMessage) -> NetlinkEvent? {
        guard message.type >> 8 == NftMessage.subsystem else { return nil }
        let type = message.type & 0xff
        var event = NetlinkEvent(kind: .nftables, deleted: NftMessage.deletions.contains(type), sender: message.portID, type: type)
        guard let family = message.payload.first else { return nil }
        event.family = family
        if type == NftMessage.newGeneration { return event }
        // Attribute 1 is the table's name for tables, chains, rules, sets, elements, objects and flowtables.
        let reader = PayloadReader(message.payload)
        do throws(WireError) {
            try reader.forEachAttribute(after: 4) { attribute, value throws(WireError) in
                if attribute == 1 { event.nftTable = value.string() }
            }
        } catch { return nil }
        return event
    }
}

/// Netlink sockets in one namespace subscribed to the kernel's change notifications: rtnetlink's links,
/// IPv4/IPv6 addresses, routes and rules, and nfnetlink's nf_tables group. Nothing is polled: the caller waits on
/// `descriptors` with poll(2) and calls `drain` for each one that is readable.
///
/// A full receive buffer makes the kernel drop notifications and report ENOBUFS on the next read: `drain` then
/// throws (`NetlinkError.system` with `.noBufferSpace`); the caller must assume it missed changes, open a new
/// socket and resynchronise from dumps (netlink(7)).
public final class EventSocket {
    public let namespace: NetworkNamespace
    /// The rtnetlink socket.
    public let routeDescriptor: Int32
    /// The nfnetlink socket; nil where the kernel has no nf_tables.
    public let netfilterDescriptor: Int32?
    private var buffer: UnsafeMutableRawBufferPointer

    /// rtnetlink groups: links, IPv4/IPv6 addresses, routes and rules.
    public static let routeGroups: [UInt32] = [
        RTNLGRP_LINK.rawValue, RTNLGRP_IPV4_IFADDR.rawValue, RTNLGRP_IPV6_IFADDR.rawValue,
        RTNLGRP_IPV4_ROUTE.rawValue, RTNLGRP_IPV6_ROUTE.rawValue, RTNLGRP_IPV4_RULE.rawValue, RTNLGRP_IPV6_RULE.rawValue,
    ]
    /// NFNLGRP_NFTABLES.
    public static let netfilterGroup: UInt32 = 7

    /// Opens both sockets inside `namespace` (on the namespace thread) and joins the groups. `receiveBuffer` is
    /// the socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF, which the kernel caps at rmem_max).
    public init(namespace: NetworkNamespace, receiveBuffer: Int = 8 << 20) throws(NetlinkError) {
        self.namespace = namespace
        let route = try Self.open(namespace, family: NETLINK_ROUTE, groups: Self.routeGroups, receiveBuffer: receiveBuffer)
        var netfilter: Int32?
        do {
            netfilter = try Self.open(namespace, family: NETLINK_NETFILTER, groups: [Self.netfilterGroup], receiveBuffer: receiveBuffer)
        } catch {
            netfilter = nil   // no nf_tables here: only strategies without a table can be kept true
        }
        routeDescriptor = route
        netfilterDescriptor = netfilter
        buffer = .allocate(byteCount: 64 * 1024, alignment: 8)
    }

    deinit {
        close(routeDescriptor)
        if let netfilterDescriptor { close(netfilterDescriptor) }
        buffer.deallocate()
    }

    public var descriptors: [Int32] { [routeDescriptor] + (netfilterDescriptor.map { [$0] } ?? []) }

    private static func open(_ namespace: NetworkNamespace, family: Int32, groups: [UInt32],
                             receiveBuffer: Int) throws(NetlinkError) -> Int32 {
        try NetlinkDescriptor.open(namespace, family: family, receiveBuffer: Int32(clamping: receiveBuffer), groups: groups).fd
    }

    /// Reads every datagram queued on `fd` (one of `descriptors`) without blocking and appends the events they
    /// carry. Throws on ENOBUFS (events were lost), a truncated datagram, or any other receive error.
    public func drain(_ fd: Int32, into events: inout [NetlinkEvent]) throws(NetlinkError) {
        let netfilter = fd == netfilterDescriptor
        while true {
            let n: Int
            switch syscall({ recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC)) }) {
            case .success(let count): n = count
            case .failure(.resourceTemporarilyUnavailable): return
            case .failure(.noBufferSpace):
                throw .system(operation: "read netlink events in \(namespace) (receive buffer overrun, events lost)", errno: .noBufferSpace)
            case .failure(let e):
                throw .system(operation: "read netlink events in \(namespace)", errno: e)
            }
            if n == 0 { return }
            if n > buffer.count {
                throw .protocolViolation(operation: "read netlink events in \(namespace)",
                                         reason: "datagram of \(n) bytes truncated to \(buffer.count)")
            }
            let messages: [NetlinkMessage]
            do throws(WireError) {
                messages = try NetlinkMessage.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            } catch {
                throw .protocolViolation(operation: "read netlink events in \(namespace)", reason: error.description)
            }
            for message in messages {
                if let event = NetlinkEvent.decode(message, netfilter: netfilter) { events.append(event) }
            }
        }
    }
}
