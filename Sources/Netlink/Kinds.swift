import CLinux

/// Route scopes (rtm_scope / ifa_scope), named as iproute2 names them.
public struct RouteScope: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let universe = RouteScope(rawValue: 0)
    public static let site = RouteScope(rawValue: 200)
    public static let link = RouteScope(rawValue: 253)
    public static let host = RouteScope(rawValue: 254)
    public static let nowhere = RouteScope(rawValue: 255)

    public var description: String {
        switch rawValue {
        case 0: return "global"
        case 200: return "site"
        case 253: return "link"
        case 254: return "host"
        case 255: return "nowhere"
        default: return String(rawValue)
        }
    }

    public init?(name: String) {
        switch name {
        case "global", "universe": self = .universe
        case "site": self = .site
        case "link": self = .link
        case "host": self = .host
        case "nowhere": self = .nowhere
        default:
            guard let n = UInt8(name) else { return nil }
            self.init(rawValue: n)
        }
    }
}

/// Route and rule protocols (who installed it): iproute2's rt_protos names for the common ones.
public struct RouteProtocol: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let unspecified = RouteProtocol(rawValue: 0)
    public static let redirect = RouteProtocol(rawValue: 1)
    public static let kernel = RouteProtocol(rawValue: 2)
    public static let boot = RouteProtocol(rawValue: 3)
    public static let `static` = RouteProtocol(rawValue: 4)

    public var description: String {
        switch rawValue {
        case 0: return "unspec"
        case 1: return "redirect"
        case 2: return "kernel"
        case 3: return "boot"
        case 4: return "static"
        case 9: return "ra"
        case 11: return "zebra"
        case 12: return "bird"
        case 16: return "dhcp"
        case 17: return "keepalived"
        case 186: return "bgp"
        case 188: return "ospf"
        default: return String(rawValue)
        }
    }
}

/// Route types (rtm_type).
public enum RouteType: UInt8, Sendable, Hashable, CustomStringConvertible {
    case unspecified = 0, unicast, local, broadcast, anycast, multicast, blackhole, unreachable, prohibit, `throw`, nat

    public var description: String {
        switch self {
        case .unspecified: return "none"
        case .unicast: return "unicast"
        case .local: return "local"
        case .broadcast: return "broadcast"
        case .anycast: return "anycast"
        case .multicast: return "multicast"
        case .blackhole: return "blackhole"
        case .unreachable: return "unreachable"
        case .prohibit: return "prohibit"
        case .throw: return "throw"
        case .nat: return "nat"
        }
    }
}

/// Well-known routing tables.
public enum RouteTable {
    public static let unspecified: UInt32 = 0
    public static let `default`: UInt32 = 253
    public static let main: UInt32 = 254
    public static let local: UInt32 = 255

    /// The table as the message header's byte holds it: the id up to 255, else RT_TABLE_UNSPEC (0), and the id goes
    /// in the RTA_TABLE / FRA_TABLE attribute, which the kernel prefers anyway.
    static func headerByte(_ id: UInt32) -> UInt8 { id <= UInt32(UInt8.max) ? UInt8(id) : UInt8(RT_TABLE_UNSPEC.rawValue) }

    /// "main", "local", "default" or the number, as `ip` prints table ids.
    public static func name(_ id: UInt32) -> String {
        switch id {
        case 253: return "default"
        case 254: return "main"
        case 255: return "local"
        default: return String(id)
        }
    }
}

func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
