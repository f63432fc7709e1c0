import FoundationEssentials
import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// The load generator of `bench datapath` (`bench connect`, run inside the client's namespace): keeps
/// `concurrency` connections in flight for `seconds` and counts the ones that completed (the server closes each at
/// once), the ones that failed, and the ones that stalled (took longer than `stallMilliseconds`: a lost SYN-ACK
/// costs a 1 s retransmit).
public struct ConnectLoad: Sendable {
    public var target: SocketAddress
    public var seconds: Double
    public var concurrency: Int
    public var stallMilliseconds: Int

    public init(target: SocketAddress, seconds: Double, concurrency: Int, stallMilliseconds: Int) {
        self.target = target
        self.seconds = seconds
        self.concurrency = concurrency
        self.stallMilliseconds = stallMilliseconds
    }

    /// What one run counted; `json` is the line `bench connect` prints and `bench datapath` reads.
    public struct Counts: Sendable, Codable, Equatable {
        public var completed: Int
        public var failed: Int
        public var stalled: Int
        public var seconds: Double

        public var json: String {
            "{\"completed\":\(completed),\"failed\":\(failed),\"stalled\":\(stalled),\"seconds\":\(seconds)}"
        }
    }

    /// The poll timeout of the load loop, so that it notices the end of the run.
    static let pollMilliseconds: Int32 = 100

    public func run() -> Counts {
        let target = self.target
        var slots = [Int32](repeating: -1, count: concurrency)
        var started = [Date](repeating: Date(), count: concurrency)
        var completed = 0, failed = 0, stalled = 0
        func open() -> Int32 {
            guard case .success(let fd) = syscall({ socket(target.domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) })
            else { return -1 }
            var linger = linger(l_onoff: 1, l_linger: 0)   // RST on close: no TIME_WAIT, no port exhaustion
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            // Non-blocking: EINPROGRESS; the outcome shows in poll and SO_ERROR.
            _ = target.withSockaddr { connect(fd, $0, $1) }
            return fd
        }
        let start = Date()
        let end = start.addingTimeInterval(seconds)
        for i in slots.indices { slots[i] = open(); started[i] = Date() }
        var buffer = [UInt8](repeating: 0, count: 64)
        while Date() < end {
            var fds = slots.map { pollfd(fd: $0, events: Int16(POLLIN | POLLOUT), revents: 0) }
            guard case .success = syscall(retryOnInterrupt: false, { poll(&fds, nfds_t(fds.count), Self.pollMilliseconds) }) else { continue }
            for i in fds.indices where fds[i].revents != 0 {
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(slots[i], SOL_SOCKET, SO_ERROR, &soError, &length)
                if soError != 0 {
                    failed += 1
                } else if fds[i].revents & Int16(POLLIN | POLLHUP) != 0 {
                    _ = buffer.withUnsafeMutableBytes { recv(slots[i], $0.baseAddress, $0.count, 0) }
                    completed += 1
                } else {
                    continue   // connected, waiting for the server's close
                }
                if Date().timeIntervalSince(started[i]) * 1000 > Double(stallMilliseconds) { stalled += 1 }
                close(slots[i])
                slots[i] = open()
                started[i] = Date()
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        // Still pending at the end and already too slow: stalled too.
        for i in slots.indices where slots[i] >= 0 {
            if Date().timeIntervalSince(started[i]) * 1000 > Double(stallMilliseconds) { stalled += 1 }
            close(slots[i])
        }
        return Counts(completed: completed, failed: failed, stalled: stalled, seconds: elapsed)
    }
}
