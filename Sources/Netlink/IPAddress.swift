#if canImport(Glibc)
import Glibc
#endif

/// Address families as the kernel numbers them.
public enum AddressFamily: UInt8, Sendable, Hashable, CustomStringConvertible {
    case unspecified = 0
    case inet = 2
    case inet6 = 10

    public var description: String {
        switch self {
        case .unspecified: return "any"
        case .inet: return "inet"
        case .inet6: return "inet6"
        }
    }
    var bitLength: Int { self == .inet6 ? 128 : 32 }
}

/// An IPv4 or IPv6 address, stored inline.
public enum IPAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    case v4(UInt32)                 // host-order value: 10.0.0.1 == 0x0a00_0001
    case v6(UInt64, UInt64)         // high and low halves, host order

    /// Parses the textual form (inet_pton's rules: dotted quad without leading zeros, or RFC 4291 IPv6).
    public init?(_ text: String) {
        if let value = Self.dottedQuad(text.utf8) {
            self = .v4(value)
        } else if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            let bytes = withUnsafeBytes(of: raw) { Array($0) }
            self.init(bytes: bytes[...])
        } else {
            var raw = in_addr()
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            self = .v4(UInt32(bigEndian: raw.s_addr))
        }
    }

    /// A dotted quad as inet_pton accepts it (four decimal parts 0–255, no leading zeros), parsed in place: policy
    /// files carry tens of thousands of them.
    static func dottedQuad(_ text: some Collection<UInt8>) -> UInt32? {
        var value: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0
        for byte in text {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | part
                part = 0; digits = 0; dots += 1
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if digits > 0 && part == 0 { return nil }   // a leading zero
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | part
    }

    /// From network-order bytes: 4 for IPv4, 16 for IPv6.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let high = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = bytes.dropFirst(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            self = .v6(high, low)
        default:
            return nil
        }
    }

    public var family: AddressFamily {
        if case .v4 = self { return .inet }
        return .inet6
    }

    /// Network-order bytes.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let v):
            return [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        case .v6(let high, let low):
            return (0..<8).map { UInt8(high >> (56 - 8 * $0) & 0xff) } + (0..<8).map { UInt8(low >> (56 - 8 * $0) & 0xff) }
        }
    }

    public var description: String {
        switch self {
        case .v4(let v):
            return "\(v >> 24).\(v >> 16 & 0xff).\(v >> 8 & 0xff).\(v & 0xff)"
        case .v6:
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count)) != nil else { return "?" }
            return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The address with every bit after the first `length` cleared.
    public func masked(to length: Int) -> IPAddress {
        switch self {
        case .v4(let v):
            return .v4(length <= 0 ? 0 : length >= 32 ? v : v & ~(UInt32.max >> length))
        case .v6(let high, let low):
            if length <= 0 { return .v6(0, 0) }
            if length <= 64 { return .v6(length == 64 ? high : high & ~(UInt64.max >> length), 0) }
            if length >= 128 { return self }
            return .v6(high, low & ~(UInt64.max >> (length - 64)))
        }
    }

    /// fe80::/10: an IPv6 link-local address, meaningful only with an interface (routers announce themselves so).
    public var isLinkLocal: Bool {
        if case .v6(let high, _) = self { return high >> 54 == 0x3fa }
        return false
    }

    /// 127.0.0.0/8 or ::1: iproute2 gives such addresses host scope.
    public var isLoopback: Bool {
        switch self {
        case .v4(let v): return v >> 24 == 127
        case .v6(let high, let low): return high == 0 && low == 1
        }
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        case (.v6(let ah, let al), .v6(let bh, let bl)): return (ah, al) < (bh, bl)
        }
    }
}

extension IPAddress {
    /// "192.168.1.1:3000", or "[fd00::1]:80" for IPv6.
    public func endpoint(port: UInt16) -> String {
        family == .inet6 ? "[\(self)]:\(port)" : "\(self):\(port)"
    }

    /// Parses ADDRESS:PORT (IPv6 in brackets); nil when malformed or the port is 0.
    public static func parseEndpoint(_ text: String) -> (IPAddress, UInt16)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let address = IPAddress(host), let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
        return (address, port)
    }
}

/// An address with a prefix length: "10.111.221.0/24", "192.168.1.1" (= /32), "default" (= 0.0.0.0/0).
public struct IPPrefix: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public init(_ address: IPAddress, length: Int) throws(PrefixError) {
        guard (0...address.family.bitLength).contains(length) else {
            throw PrefixError("prefix length \(length) out of range 0-\(address.family.bitLength) for \(address)")
        }
        self.address = address
        self.length = length
    }

    /// A host prefix: /32 or /128.
    public init(host address: IPAddress) {
        self.address = address
        self.length = address.family.bitLength
    }

    /// Parses "ADDR/LEN" or "ADDR". `family` resolves "default" (and checks the family when given).
    public init(parsing text: String, family: AddressFamily = .unspecified) throws(PrefixError) {
        if text == "default" || text == "all" || text == "any" {
            self.init(unchecked: family == .inet6 ? .v6(0, 0) : .v4(0), length: 0)
            return
        }
        // The common case, an IPv4 address with or without /LEN, without allocating.
        let utf8 = text.utf8
        let slash = utf8.firstIndex(of: UInt8(ascii: "/"))
        if family != .inet6, let value = IPAddress.dottedQuad(utf8[..<(slash ?? utf8.endIndex)]) {
            var length = 32
            if let slash {
                let digits = utf8[utf8.index(after: slash)...]
                guard !digits.isEmpty, digits.count <= 2, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                    throw PrefixError("\"\(text)\": prefix length \"\(String(decoding: digits, as: UTF8.self))\" is not a number")
                }
                length = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            }
            try self.init(.v4(value), length: length)
            return
        }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else {
            throw PrefixError("\"\(text)\" is not an IP address or prefix")
        }
        if family != .unspecified && address.family != family {
            throw PrefixError("\"\(text)\" is not an \(family == .inet ? "IPv4" : "IPv6") address")
        }
        var length = address.family.bitLength
        if parts.count == 2 {
            guard let n = Int(parts[1]), parts[1].allSatisfy(\.isNumber) else {
                throw PrefixError("\"\(text)\": prefix length \"\(parts[1])\" is not a number")
            }
            length = n
        }
        try self.init(address, length: length)
    }

    /// 0.0.0.0/0 or ::/0.
    public static func defaultRoute(_ family: AddressFamily) -> IPPrefix {
        IPPrefix(unchecked: family == .inet6 ? .v6(0, 0) : .v4(0), length: 0)
    }

    public var family: AddressFamily { address.family }
    public var isHost: Bool { length == family.bitLength }
    public var isDefault: Bool { length == 0 }
    /// No bits set after the prefix length (what a route destination must be).
    public var isCanonical: Bool { address.masked(to: length) == address }
    public var network: IPPrefix { IPPrefix(unchecked: address.masked(to: length), length: length) }

    public func contains(_ other: IPAddress) -> Bool {
        other.family == family && other.masked(to: length) == address.masked(to: length)
    }
    public func contains(_ other: IPPrefix) -> Bool { other.length >= length && contains(other.address) }

    /// iproute2's rendering: "default" for /0, bare address for a host prefix.
    public var description: String {
        if length == 0 { return "default" }
        return isHost ? address.description : "\(address)/\(length)"
    }
    /// Always "ADDR/LEN", as `ip addr` prints addresses.
    public var cidr: String { "\(address)/\(length)" }

    init(unchecked address: IPAddress, length: Int) {
        self.address = address
        self.length = length
    }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool { (a.address, a.length) < (b.address, b.length) }
}

public struct PrefixError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
