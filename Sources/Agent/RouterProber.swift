import CLinux
import Dispatch
import Namespace
import Netlink
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Watches the routers of interfaces that have several (`gateways: [A, B]`): every `interval` an ARP request to
/// each IPv4 router (a packet socket on the interface) and a neighbour solicitation to each IPv6 one (RFC 4861, a
/// raw ICMPv6 socket bound to the interface), from sockets in the node's namespace; a router that answered none of
/// the last `misses` is down, and up again with its next answer. The kernel's own neighbour state would take
/// seconds to tens of seconds to fail (reachable time, delay, probes); this takes `interval × misses` (300 ms by
/// default). ARP asks the router's link layer, not its routing: a router whose interface to the node's network is
/// down (behind a switch, the node's own link stays up) stops answering, which is what must be detected.
///
/// Runs on a thread of its own; `onChange` is called (on that thread) whenever the set of down routers changes.
public final class RouterProber: @unchecked Sendable {
    /// One router on one interface, with what an ARP request from that interface needs.
    public struct Target: Hashable, Sendable {
        public var interface: String
        public var index: Int32
        /// The interface's MAC address (6 bytes).
        public var mac: [UInt8]
        /// The interface's IPv4 address to ask from; 0.0.0.0 (an ARP probe, RFC 5227) when it has none (onlink).
        public var source: UInt32
        public var router: IPAddress
    }

    public struct Key: Hashable, Sendable {
        public var interface: String
        public var router: IPAddress
    }

    let namespace: NetworkNamespace
    let interval: Double
    let misses: Int
    private let onChange: @Sendable () -> Void
    private struct State {
        var targets: [Target] = []
        var lastAnswer: [Key: UInt64] = [:]
        var down: Set<Key> = []
        var stop = false
        var changed = true
    }
    private let state = Mutex(State())
    private let wakeRead: Int32, wakeWrite: Int32

    public init(namespace: NetworkNamespace, interval: Double = 0.1, misses: Int = 3,
                onChange: @escaping @Sendable () -> Void) throws(AgentError) {
        self.namespace = namespace
        self.interval = interval
        self.misses = misses
        self.onChange = onChange
        var fds: [Int32] = [-1, -1]
        _ = try syscall { clinux_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) }.get { AgentError.system("pipe2", $0) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        do { try startThread(name: "rp-prober") { [self] in run() } } catch {
            close(fds[0])
            close(fds[1])
            throw .system("start the router prober's thread (pthread_create)", error)
        }
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// The routers to watch now. A router watched before keeps its history; a new one counts as up until it misses.
    public func watch(_ targets: [Target]) {
        state.withLock { s in
            guard s.targets != targets else { return }
            s.targets = targets
            let keys = Set(targets.map { Key(interface: $0.interface, router: $0.router) })
            s.down = s.down.intersection(keys)
            s.lastAnswer = s.lastAnswer.filter { keys.contains($0.key) }
            let now = DispatchTime.now().uptimeNanoseconds
            for key in keys where s.lastAnswer[key] == nil { s.lastAnswer[key] = now }
            s.changed = true
        }
        poke()
    }

    /// The routers that stopped answering.
    public var down: Set<Key> { state.withLock { $0.down } }

    public func stop() {
        state.withLock { $0.stop = true }
        poke()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }

    // MARK: the thread

    private func run() {
        var sockets: [Channel: Int32] = [:]   // (interface, family) → its socket
        defer { for fd in sockets.values { close(fd) } }
        var nextProbe: UInt64 = 0
        let step = UInt64(interval * 1e9)
        while true {
            let (targets, stop, changed) = state.withLock { s -> ([Target], Bool, Bool) in
                defer { s.changed = false }
                return (s.targets, s.stop, s.changed)
            }
            if stop { return }
            if changed {
                let wanted = Set(targets.map(Channel.init))
                for (channel, fd) in sockets where !wanted.contains(channel) { close(fd); sockets[channel] = nil }
                for channel in wanted where sockets[channel] == nil {
                    // A socket that cannot be made is asked for again at the next change of targets.
                    let made = channel.family == .inet6 ? try? openICMPv6(channel) : try? openSocket(channel.index)
                    if let made { sockets[channel] = made }
                }
            }
            let now = DispatchTime.now().uptimeNanoseconds
            if now >= nextProbe {
                for target in targets {
                    guard let fd = sockets[Channel(target)] else { continue }
                    if target.router.family == .inet6 { solicit(fd, target) } else { send(fd, target) }
                }
                nextProbe = now + step
                evaluate(now)
            }
            let channels = Array(sockets)
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
                + channels.map { pollfd(fd: $0.value, events: Int16(POLLIN), revents: 0) }
            let timeout = Int32(max(0, Int64(nextProbe) - Int64(DispatchTime.now().uptimeNanoseconds)) / 1_000_000) + 1
            guard case .success = syscall({ poll(&fds, nfds_t(fds.count), timeout) }) else { continue }
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                _ = Glibc.read(wakeRead, &drain, drain.count)
            }
            for (entry, channel) in zip(fds.dropFirst(), channels) where entry.revents & Int16(POLLIN) != 0 {
                if channel.key.family == .inet6 { receiveAdvertisements(entry.fd, channel.key, targets) } else { receive(entry.fd, targets) }
            }
        }
    }

    /// One socket per interface and family.
    struct Channel: Hashable {
        var index: Int32
        var interface: String
        var family: AddressFamily
        init(_ target: Target) {
            index = target.index
            interface = target.interface
            family = target.router.family
        }
    }

    /// A raw ICMPv6 socket on one interface, made in the node's namespace: hop limit 255 (RFC 4861 drops anything
    /// else), only neighbour advertisements let through.
    private func openICMPv6(_ channel: Channel) throws -> Int32 {
        let fd = try namespace.socket(domain: AF_INET6, type: Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                      protocol: 58 /* IPPROTO_ICMPV6 */)
        let ipv6: Int32 = 41   // IPPROTO_IPV6
        // ICMP6_FILTER: a bit set blocks that type; everything but 136 (neighbour advertisement) is blocked.
        var filter = [UInt32](repeating: .max, count: 8)
        filter[136 >> 5] &= ~(UInt32(1) << (136 & 31))
        let name = Array(channel.interface.utf8) + [0]
        func set(_ level: Int32, _ option: Int32, _ bytes: [UInt8]) -> Result<Int32, Errno> {
            bytes.withUnsafeBytes { raw in syscall { setsockopt(fd, level, option, raw.baseAddress, socklen_t(raw.count)) } }
        }
        func int(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
        let results: [Result<Int32, Errno>] = [
            set(ipv6, 18 /* IPV6_MULTICAST_HOPS */, int(255)),
            set(ipv6, 16 /* IPV6_UNICAST_HOPS */, int(255)),
            set(ipv6, 17 /* IPV6_MULTICAST_IF */, int(channel.index)),
            set(58 /* IPPROTO_ICMPV6 */, 1 /* ICMP6_FILTER */, filter.withUnsafeBytes { Array($0) }),
            set(SOL_SOCKET, SO_BINDTODEVICE, name),
        ]
        for case .failure(let error) in results {
            close(fd)
            throw AgentError.system("set up an ICMPv6 socket on \(channel.interface)", error)
        }
        return fd
    }

    /// A neighbour solicitation for the router, to its solicited-node multicast address, with our link-layer
    /// address (RFC 4861 4.3). The kernel fills in the checksum and picks the interface's link-local source.
    private func solicit(_ fd: Int32, _ target: Target) {
        let router = target.router.bytes
        guard router.count == 16, target.mac.count == 6 else { return }
        var message: [UInt8] = [135, 0, 0, 0, 0, 0, 0, 0] + router + [1, 1] + target.mac
        var address = [UInt8](repeating: 0, count: 28)   // struct sockaddr_in6
        withUnsafeBytes(of: UInt16(AF_INET6)) { address.replaceSubrange(0..<2, with: $0) }
        let group: [UInt8] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff] + router[13..<16]
        address.replaceSubrange(8..<24, with: group)
        withUnsafeBytes(of: UInt32(bitPattern: target.index)) { address.replaceSubrange(24..<28, with: $0) }
        // A lost solicitation is a miss like any other.
        _ = address.withUnsafeBytes { raw in
            message.withUnsafeMutableBytes { body in
                syscall { sendto(fd, body.baseAddress, body.count, 0, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) }
            }
        }
    }

    /// Neighbour advertisements: the target address answers for that router on that interface.
    private func receiveAdvertisements(_ fd: Int32, _ channel: Channel, _ targets: [Target]) {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let received = buffer.withUnsafeMutableBytes { body in
                syscall { recv(fd, body.baseAddress, body.count, Int32(MSG_DONTWAIT)) }
            }
            guard case .success(let count) = received else { return }
            guard count >= 24, buffer[0] == 136, let answered = IPAddress(bytes: buffer[8..<24]) else { continue }
            let now = DispatchTime.now().uptimeNanoseconds
            state.withLock { s in
                for target in targets where target.index == channel.index && target.router == answered {
                    s.lastAnswer[Key(interface: target.interface, router: answered)] = now
                }
            }
            evaluate(now)
        }
    }

    /// A packet socket for ARP on one interface, made in the node's namespace.
    private func openSocket(_ index: Int32) throws -> Int32 {
        let fd = try namespace.socket(domain: AF_PACKET, type: Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                      protocol: Int32(UInt16(0x0806).bigEndian))
        var address = Self.linkAddress(index: index, destination: nil)
        let bound = address.withUnsafeMutableBytes { raw in
            syscall { bind(fd, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) }
        }
        if case .failure(let error) = bound {
            close(fd)
            throw AgentError.system("bind a packet socket to interface \(index)", error)
        }
        return fd
    }

    /// struct sockaddr_ll: family, protocol (ETH_P_ARP, big-endian), ifindex, hatype, pkttype, halen, addr[8].
    static func linkAddress(index: Int32, destination: [UInt8]?) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { bytes.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: UInt16(0x0806).bigEndian) { bytes.replaceSubrange(2..<4, with: $0) }
        withUnsafeBytes(of: index) { bytes.replaceSubrange(4..<8, with: $0) }
        if let destination {
            bytes[11] = UInt8(destination.count)
            bytes.replaceSubrange(12..<(12 + destination.count), with: destination)
        }
        return bytes
    }

    /// An ARP request (RFC 826) for the router, broadcast on the interface.
    static func request(_ target: Target) -> [UInt8] {
        var arp: [UInt8] = [0, 1, 8, 0, 6, 4, 0, 1]   // Ethernet, IPv4, 6, 4, request
        arp += target.mac
        withUnsafeBytes(of: target.source.bigEndian) { arp += $0 }
        arp += [0, 0, 0, 0, 0, 0]
        arp += target.router.bytes
        return arp
    }

    private func send(_ fd: Int32, _ target: Target) {
        guard target.mac.count == 6, target.router.family == .inet else { return }
        let packet = Self.request(target)
        let address = Self.linkAddress(index: target.index, destination: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        // A lost request is a miss like any other: the next one goes 100 ms later.
        _ = address.withUnsafeBytes { raw in
            packet.withUnsafeBytes { body in
                syscall { sendto(fd, body.baseAddress, body.count, 0, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) }
            }
        }
    }

    /// ARP replies: the sender's address answers for that router on that interface.
    private func receive(_ fd: Int32, _ targets: [Target]) {
        var buffer = [UInt8](repeating: 0, count: 128)
        var from = [UInt8](repeating: 0, count: 20)
        while true {
            var length = socklen_t(from.count)
            let received = buffer.withUnsafeMutableBytes { body in
                from.withUnsafeMutableBytes { raw in
                    syscall { recvfrom(fd, body.baseAddress, body.count, Int32(MSG_DONTWAIT), raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), &length) }
                }
            }
            guard case .success(let count) = received else { return }
            guard count >= 28, buffer[6] == 0, buffer[7] == 2 else { continue }   // a reply
            let index = from.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: Int32.self) }
            guard let sender = IPAddress(bytes: buffer[14..<18]) else { continue }
            let now = DispatchTime.now().uptimeNanoseconds
            state.withLock { s in
                for target in targets where target.index == index && target.router == sender {
                    s.lastAnswer[Key(interface: target.interface, router: sender)] = now
                }
            }
            evaluate(now)
        }
    }

    /// Down: no answer for `misses` intervals (and a bit, for the answer's own trip).
    private func evaluate(_ now: UInt64) {
        let limit = UInt64((Double(misses) + 0.5) * interval * 1e9)
        let changed = state.withLock { s -> Bool in
            let down = Set(s.lastAnswer.filter { now > $0.value && now - $0.value > limit }.keys)
            guard down != s.down else { return false }
            s.down = down
            return true
        }
        if changed { onChange() }
    }
}
