import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// Watches real traffic to a host's service addresses and reports each connection seen: where its SYN came in,
/// where the SYN-ACK went out, and the active probe's verdicts (same evidence, same judge). Makes no connection:
/// what a user runs on a production node.
public struct PassiveProbe {
    /// The host watched, as the user knows it, and where it lives.
    public var host: Flow.Endpoint
    /// Connections to these addresses (any port) are reported.
    public var services: [IPAddress]
    /// Only connections whose SYN came in on one of these (empty: any interface). Replies are watched everywhere.
    public var interfaces: [String]
    public var duration: Double

    /// At most this many packets of one connection are kept as evidence (the handshake and a little more).
    static let packetsPerFlow = 24

    public init(host: Flow.Endpoint, services: [IPAddress], interfaces: [String] = [], duration: Double) {
        self.host = host
        self.services = services
        self.interfaces = interfaces
        self.duration = duration
    }

    public struct Report: Sendable {
        public var flows: [FlowResult]
        /// Packets the capture lost (its buffer overflowed).
        public var dropped: UInt32
        public var seconds: Double
    }

    /// Captures for `duration` seconds, or until `shouldStop` says so (checked every 50 ms). `listening` is called
    /// once the capture is open: connections made from then on are seen from their first SYN.
    public func run(listening: () -> Void, shouldStop: () -> Bool = { false }) throws(ProbeError) -> Report {
        guard !services.isEmpty else { throw ProbeError("no service addresses to watch on \(host.name)") }
        // The kernel filters by address (a BPF program per address is cheap up to a few dozen); beyond that the
        // capture takes every TCP packet and the addresses are checked here.
        let filter = services.count <= 64
            ? "tcp and (" + services.map { "host \($0)" }.joined(separator: " or ") + ")"
            : "tcp"
        let capture = try PacketCapture(namespace: host.namespace, filter: filter)
        defer { capture.close() }
        let watched = Set(services)
        listening()

        var flows: [String: Evidence] = [:]
        var order: [String] = []
        let start = monotonicSeconds()
        func collect() {
            capture.drain()
            for packet in capture.take() {
                let forward = Prober.key(packet.source, packet.sourcePort, packet.destination, packet.destinationPort)
                let backward = Prober.key(packet.destination, packet.destinationPort, packet.source, packet.sourcePort)
                if var evidence = flows[forward] ?? flows[backward] {
                    let key = flows[forward] != nil ? forward : backward
                    if evidence.packets.count < Self.packetsPerFlow {
                        evidence.add(packet)
                        flows[key] = evidence
                    }
                    continue
                }
                // A new connection: a SYN coming in to a service, on a watched interface.
                guard packet.isSYN, packet.direction == .incoming, watched.contains(packet.destination),
                      interfaces.isEmpty || interfaces.contains(packet.interface) else { continue }
                var evidence = Evidence(client: packet.source, clientPort: packet.sourcePort, service: packet.destination,
                                        servicePort: packet.destinationPort, translation: nil)
                evidence.add(packet)
                flows[forward] = evidence
                order.append(forward)
            }
        }
        while monotonicSeconds() - start < duration && !shouldStop() {
            var fd = pollfd(fd: capture.descriptor, events: Int16(POLLIN), revents: 0)
            let left = duration - (monotonicSeconds() - start)
            _ = poll(&fd, 1, Int32(max(0, min(left, 0.05)) * 1000) + 1)
            collect()
        }
        collect()
        capture.close()
        let seconds = monotonicSeconds() - start
        let results = order.compactMap { key -> FlowResult? in
            guard let evidence = flows[key] else { return nil }
            let judge = Judge(source: evidence.client.description, serviceHost: host,
                              outcome: .observed(connected: evidence.clientAcknowledged), clientKnown: true)
            return judge.result(evidence, address: evidence.service, port: evidence.servicePort)
        }
        return Report(flows: results, dropped: capture.dropped, seconds: seconds)
    }
}
