#if canImport(Glibc)
import Glibc
#endif

/// An IP address and port as the socket calls take them (sockaddr_in or sockaddr_in6): the one place returnpath
/// builds a socket address, for the lab's services, its clients, the probe and the benchmarks.
public struct SocketAddress: Sendable {
    private var storage = sockaddr_storage()
    /// sizeof(sockaddr_in) or sizeof(sockaddr_in6).
    public let length: socklen_t
    public let address: IPAddress
    public let port: UInt16

    public init(_ address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
        switch address {
        case .v4(let value):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = value.bigEndian
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin, as: sockaddr_in.self) }
        case .v6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: address.bytes) }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
        }
    }

    /// AF_INET or AF_INET6: the domain of a socket for this address.
    public var domain: Int32 { address.family == .inet6 ? AF_INET6 : AF_INET }

    /// The socket's own address and port (getsockname), nil before it has a port.
    public static func local(of fd: Int32) -> (IPAddress, UInt16)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        return withUnsafeBytes(of: storage) { raw -> (IPAddress, UInt16)? in
            let family = raw.loadUnaligned(as: sa_family_t.self)
            let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
            if Int32(family) == AF_INET, let address = IPAddress(bytes: raw[4..<8]), port != 0 { return (address, port) }
            if Int32(family) == AF_INET6, let address = IPAddress(bytes: raw[8..<24]), port != 0 { return (address, port) }
            return nil
        }
    }

    /// Calls `body` with the sockaddr and its length (for bind, connect, sendto).
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) rethrows -> T {
        try withUnsafePointer(to: storage) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }
}

/// A TCP socket address for an IP address and port.
public func withSocketAddress<T>(_ address: IPAddress, _ port: UInt16,
                                 _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    SocketAddress(address, port: port).withSockaddr(body)
}
