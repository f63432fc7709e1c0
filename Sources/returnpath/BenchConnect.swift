import ArgumentParser
import Benchmarks
import Netlink

/// `returnpath bench connect`: the load generator of `bench datapath`, run inside the client's namespace (spawned
/// there). Keeps `--concurrency` connections in flight for `--seconds` and counts the ones that completed (the
/// server closes each at once), the ones that failed, and the ones that stalled (took longer than `--stall-ms`:
/// a lost SYN-ACK costs a 1 s retransmit). Prints one JSON object (Benchmarks' ConnectLoad).
struct BenchConnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect", abstract: "Connection-rate load generator (used by bench datapath).", shouldDisplay: false)

    /// An IPv4 or an IPv6 address (`bench datapath`'s `mark-ipv6` row connects over IPv6).
    @Option(name: .long) var address: String
    @Option(name: .long) var port: UInt16
    @Option(name: .long) var seconds: Double = 2
    @Option(name: .long) var concurrency = 32
    @Option(name: .long) var stallMs = 500

    func run() throws {
        guard let target = IPAddress(address) else { throw fail("bad address \(address) (an IPv4 or IPv6 address)", code: 2) }
        let load = ConnectLoad(target: SocketAddress(target, port: port), seconds: seconds, concurrency: concurrency,
                               stallMilliseconds: stallMs)
        print(load.run().json)
    }
}
