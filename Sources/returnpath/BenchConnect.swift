import ArgumentParser
import Foundation
import Netlink

/// `returnpath bench connect`: the load generator of `bench datapath`, run inside the client's namespace (spawned
/// there). Keeps `--concurrency` connections in flight for `--seconds` and counts the ones that completed (the
/// server closes each at once), the ones that failed, and the ones that stalled (took longer than `--stall-ms`:
/// a lost SYN-ACK costs a 1 s retransmit). Prints one JSON object.
struct BenchConnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect", abstract: "Connection-rate load generator (used by bench datapath).", shouldDisplay: false)

    @Option(name: .long) var address: String
    @Option(name: .long) var port: UInt16
    @Option(name: .long) var seconds: Double = 2
    @Option(name: .long) var concurrency = 32
    @Option(name: .long) var stallMs = 500

    func run() throws {
        guard let target = IPAddress(address), case .v4(let value) = target else { throw fail("bad address \(address)", code: 2) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = value.bigEndian
        var slots = [Int32](repeating: -1, count: concurrency)
        var started = [Date](repeating: Date(), count: concurrency)
        var completed = 0, failed = 0, stalled = 0
        func open() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { return -1 }
            var linger = linger(l_onoff: 1, l_linger: 0)   // RST on close: no TIME_WAIT, no port exhaustion
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            _ = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return fd
        }
        let start = Date()
        let end = start.addingTimeInterval(seconds)
        for i in slots.indices { slots[i] = open(); started[i] = Date() }
        var buffer = [UInt8](repeating: 0, count: 64)
        while Date() < end {
            var fds = slots.map { pollfd(fd: $0, events: Int16(POLLIN | POLLOUT), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 100) >= 0 else { continue }
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
                if Date().timeIntervalSince(started[i]) * 1000 > Double(stallMs) { stalled += 1 }
                close(slots[i])
                slots[i] = open()
                started[i] = Date()
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        // Still pending at the end and already too slow: stalled too.
        for i in slots.indices where slots[i] >= 0 {
            if Date().timeIntervalSince(started[i]) * 1000 > Double(stallMs) { stalled += 1 }
            close(slots[i])
        }
        print("{\"completed\":\(completed),\"failed\":\(failed),\"stalled\":\(stalled),\"seconds\":\(elapsed)}")
    }
}
