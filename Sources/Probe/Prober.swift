import Foundation
import Lab
import Namespace
import Netlink
import SystemPackage

/// One flow to probe: a real TCP connection from a lab host to ADDRESS:PORT.
public struct Flow: Sendable, Hashable {
    public var source: String
    public var address: IPAddress
    public var port: UInt16

    public init(source: String, address: IPAddress, port: UInt16) {
        self.source = source
        self.address = address
        self.port = port
    }

    public var service: String { address.endpoint(port: port) }
}

/// Where a reply left compared with where its request came in.
public enum Verdict: String, Sendable, Codable {
    /// Connected, and the SYN-ACK left by the interface the SYN came in on.
    case symmetric
    /// The SYN-ACK left by another interface (even if the connection completed).
    case asymmetric
    /// The SYN arrived; nothing was sent back.
    case unanswered
    /// A RST came back.
    case refused
    /// The SYN never reached the service's host.
    case unreached
}

/// What happened to one flow, with the packets that prove it.
public struct FlowResult: Sendable {
    public var flow: Flow
    /// The host that owns the destination address (where packets were captured), if any.
    public var serviceHost: String?
    public var clientAddress: IPAddress?
    public var clientPort: UInt16?
    public var connected: Bool
    public var reply: String?
    /// What the client saw: "svc1", "timeout", "refused", "Network is unreachable", …
    public var result: String
    public var ingress: String?
    public var egress: String?
    public var verdict: Verdict
    /// One sentence for non-symmetric verdicts.
    public var explanation: String?
    /// The packets of the flow on the service's host, in time order: the client's side and, for a DNATed service,
    /// the backend's side (the translated SYN leaving towards the backend, its reply coming back).
    public var packets: [TCPPacket]
    /// For a service the host DNATs (a topology `dnat` entry): the backend, ADDRESS:PORT, and the host that has it.
    public var backend: String?
    public var backendHost: String?

    public var ok: Bool { verdict == .symmetric && connected }
}

/// Probes flows of a lab concurrently: captures start on every host that owns a destination, then every
/// connection is made at once from its source host's namespace; one poll loop drives sockets and captures.
public struct Prober {
    public let lab: String
    public let topology: Topology
    public let timeout: Double

    public init(lab: String, topology: Topology, timeout: Double) {
        self.lab = lab
        self.topology = topology
        self.timeout = timeout
    }

    func namespace(_ host: String) throws(ProbeError) -> NetworkNamespace {
        let name = Topology.namespaceName(lab: lab, host: host)
        guard let ns = try? NetworkNamespace(named: name), ns.exists else {
            throw ProbeError("namespace \(name) of host \(host) does not exist: is lab \(lab) up?")
        }
        return ns
    }

    private struct Attempt {
        var flow: Flow
        var fd: Int32 = -1
        var state = State.connecting
        var result = ""
        var connected = false
        var received: [UInt8] = []
        var local: (IPAddress, UInt16)?

        enum State { case connecting, reading, done }
    }

    /// Packets the captures lost (their buffers overflowed); evidence may be incomplete when this is not 0.
    public final class Counters: @unchecked Sendable { public var dropped: UInt32 = 0 }
    public let counters = Counters()

    public func run(_ flows: [Flow]) throws(ProbeError) -> [FlowResult] {
        for flow in flows where topology.host(flow.source) == nil {
            throw ProbeError("lab \(lab) has no host \"\(flow.source)\"")
        }
        // Captures first, on every host that owns a destination: they see the first SYN.
        var captures: [String: PacketCapture] = [:]
        for flow in flows {
            guard let owner = topology.owner(of: flow.address)?.name, captures[owner] == nil else { continue }
            captures[owner] = try PacketCapture(namespace: try namespace(owner))
        }
        defer { for capture in captures.values { capture.close() } }

        var attempts = flows.map { Attempt(flow: $0) }
        for i in attempts.indices { try start(&attempts[i]) }
        let deadline = Date().addingTimeInterval(timeout)
        while attempts.contains(where: { $0.state != .done }) {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { break }
            var fds = captures.values.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            let flowSlots = attempts.indices.filter { attempts[$0].state != .done }
            for i in flowSlots {
                let events = attempts[i].state == .connecting ? POLLOUT : POLLIN
                fds.append(pollfd(fd: attempts[i].fd, events: Int16(events), revents: 0))
            }
            _ = poll(&fds, nfds_t(fds.count), Int32(min(left, 0.05) * 1000) + 1)
            for capture in captures.values { capture.drain() }
            for (slot, i) in flowSlots.enumerated() where fds[captures.count + slot].revents != 0 {
                step(&attempts[i])
            }
        }
        for i in attempts.indices where attempts[i].state != .done {
            attempts[i].result = attempts[i].state == .reading ? "no reply" : "timeout"
            finish(&attempts[i])
        }
        // Late packets (the last ACKs and FINs) before the verdicts.
        let grace = Date().addingTimeInterval(0.03)
        while grace.timeIntervalSinceNow > 0 {
            var fds = captures.values.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 10)
            for capture in captures.values { capture.drain() }
        }
        for capture in captures.values {
            capture.close()
            counters.dropped += capture.dropped
        }
        return attempts.map { judge($0, captures: captures) }
    }

    /// Opens the socket in the source host's namespace and starts a non-blocking connect.
    private func start(_ attempt: inout Attempt) throws(ProbeError) {
        let ns = try namespace(attempt.flow.source)
        let domain = attempt.flow.address.family == .inet6 ? AF_INET6 : AF_INET
        do {
            attempt.fd = try ns.socket(domain: domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), protocol: 0)
        } catch {
            throw ProbeError("socket in \(ns): \(error)")
        }
        let rc = withSocketAddress(attempt.flow.address, attempt.flow.port) { connect(attempt.fd, $0, $1) }
        attempt.local = localAddress(attempt.fd)
        if rc == 0 {
            attempt.connected = true
            attempt.state = .reading
        } else if errno != EINPROGRESS {
            attempt.result = errno == ECONNREFUSED ? "refused" : "\(Errno(rawValue: errno))"
            finish(&attempt)
        }
    }

    private func step(_ attempt: inout Attempt) {
        switch attempt.state {
        case .connecting:
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(attempt.fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError == 0 {
                attempt.connected = true
                attempt.state = .reading
                if attempt.local == nil { attempt.local = localAddress(attempt.fd) }
            } else {
                attempt.result = soError == ECONNREFUSED ? "refused" : "\(Errno(rawValue: soError))"
                finish(&attempt)
            }
        case .reading:
            var buffer = [UInt8](repeating: 0, count: 1024)
            let n = buffer.withUnsafeMutableBytes { recv(attempt.fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                attempt.received += buffer[0..<n]
                if attempt.received.contains(UInt8(ascii: "\n")) { finish(&attempt) }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                finish(&attempt)
            }
        case .done:
            break
        }
    }

    private func finish(_ attempt: inout Attempt) {
        if attempt.connected {
            attempt.result = String(decoding: attempt.received.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            if attempt.received.isEmpty && attempt.result.isEmpty { attempt.result = "no reply" }
        }
        if attempt.fd >= 0 { close(attempt.fd) }
        attempt.fd = -1
        attempt.state = .done
    }

    private func localAddress(_ fd: Int32) -> (IPAddress, UInt16)? {
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

    /// The verdict from the packets the service's host saw.
    private func judge(_ attempt: Attempt, captures: [String: PacketCapture]) -> FlowResult {
        let flow = attempt.flow
        let owner = topology.owner(of: flow.address)?.name
        // A service the owner DNATs: the backend's side of the connection is evidence too.
        let translation = topology.dnat(to: flow.address, port: flow.port).flatMap { $0.host.name == owner ? $0.dnat : nil }
        var packets: [TCPPacket] = []
        var backendPackets: [TCPPacket] = []
        if let owner, let capture = captures[owner], let (address, port) = attempt.local {
            packets = capture.packets.filter { p in
                (p.source == address && p.sourcePort == port && p.destination == flow.address && p.destinationPort == flow.port)
                    || (p.destination == address && p.destinationPort == port && p.source == flow.address && p.sourcePort == flow.port)
            }
            if let translation {
                // Masquerading replaces the client's address (usually keeping its port): then match by port alone.
                backendPackets = capture.packets.filter { p in
                    (p.destination == translation.backend && p.destinationPort == translation.backendPort && p.sourcePort == port
                        && (translation.masquerade || p.source == address))
                        || (p.source == translation.backend && p.sourcePort == translation.backendPort && p.destinationPort == port
                            && (translation.masquerade || p.destination == address))
                }
            }
        }
        // libpcap shows a packet looped back through lo once, as incoming: there "In" from the service is its way out.
        let inbound = packets.filter { $0.direction == .incoming && $0.destination == flow.address }
        let outbound = packets.filter {
            $0.source == flow.address && ($0.direction == .outgoing || ($0.direction == .incoming && $0.interface == "lo"))
        }
        let ingress = inbound.first(where: \.isSYN)?.interface
        let synAck = outbound.first(where: \.isSYNACK)
        let reset = outbound.first(where: \.isRST)
        let egress = synAck?.interface ?? reset?.interface

        var result = FlowResult(flow: flow, serviceHost: owner, clientAddress: attempt.local?.0, clientPort: attempt.local?.1,
                                connected: attempt.connected, reply: attempt.connected && !attempt.received.isEmpty ? attempt.result : nil,
                                result: attempt.result, ingress: ingress, egress: egress, verdict: .unreached,
                                explanation: nil, packets: (packets + backendPackets).sorted { $0.time < $1.time },
                                backend: translation?.backendEndpoint,
                                backendHost: translation.flatMap { topology.owner(of: $0.backend)?.name })
        let client = attempt.local?.0.description ?? "the client"
        // "; node DNATs 192.168.1.1:3000 to 10.244.0.10:3000 (pod1), whose SYN-ACK came back on veth-pod1"
        let toBackend = backendPackets.first { $0.isSYN && $0.direction == .outgoing }
        let fromBackend = backendPackets.first { $0.isSYNACK && $0.direction == .incoming }
        var dnatNote = ""
        if let translation {
            dnatNote = "; \(owner ?? "the host") DNATs \(flow.service) to \(translation.backendEndpoint)"
                + (result.backendHost.map { " (\($0))" } ?? "")
            if let fromBackend { dnatNote += ", whose SYN-ACK came back on \(fromBackend.interface) and was forwarded" }
        }
        if ingress == nil {
            result.verdict = .unreached
            if owner == nil {
                result.explanation = "no host of lab \(lab) has \(flow.address); \(flow.source): \(attempt.result)"
            } else if attempt.local == nil || !(attempt.result == "timeout" || attempt.connected) {
                result.explanation = "the SYN never left \(flow.source) (\(attempt.result))"
            } else {
                result.explanation = "the SYN from \(flow.source) never reached \(owner ?? "?"): check the route to \(flow.address) on the way"
            }
        } else if synAck == nil && reset != nil {
            result.verdict = .refused
            result.explanation = "\(owner ?? "the host") answered RST via \(reset?.interface ?? "?"): nothing listens on \(flow.service)"
        } else if synAck == nil {
            result.verdict = .unanswered
            if let translation, toBackend == nil {
                result.explanation = "the SYN arrived on \(ingress ?? "?") but was not forwarded to the DNAT backend "
                    + "\(translation.backendEndpoint) (is forwarding on, is there a route to it?)"
            } else if let translation, let toBackend {
                result.explanation = "the SYN arrived on \(ingress ?? "?") and was DNATed to \(translation.backendEndpoint) via "
                    + "\(toBackend.interface), but no reply left \(owner ?? "the host")"
                    + (fromBackend == nil ? " (the backend did not answer)" : "")
            } else {
                result.explanation = "the SYN arrived on \(ingress ?? "?") but \(owner ?? "the host") sent nothing back (no listener, or a firewall dropped it)"
            }
        } else if egress != ingress {
            result.verdict = .asymmetric
            // A DNATed reply is routed as it arrives from the backend (forwarded), before it is de-NATed.
            let how = translation != nil && fromBackend != nil
                ? route(owner, to: attempt.local?.0, from: translation?.backend, arrivingOn: fromBackend?.interface)
                : route(owner, to: attempt.local?.0, from: flow.address)
            result.explanation = "reply to \(client) left via \(egress ?? "?")\(how) "
                + "but the request arrived on \(ingress ?? "?")" + dnatNote
                + (attempt.connected ? " (it connected only because nothing on the way checks the path)" : "")
        } else {
            result.verdict = .symmetric
            if !attempt.connected {
                result.explanation = "the SYN-ACK left by \(egress ?? "?"), where the SYN came in, but \(flow.source) never got it"
            }
        }
        return result
    }

    /// " (default route via 10.111.220.1)": the route the service's host uses to answer, from the kernel.
    /// With `arrivingOn`, the decision for a packet forwarded from that interface.
    private func route(_ owner: String?, to client: IPAddress?, from service: IPAddress?, arrivingOn input: String? = nil) -> String {
        guard let owner, let client, let ns = try? namespace(owner), let socket = try? NetlinkSocket(namespace: ns),
              let decision = try? socket.lookup(RouteQuery(destination: client, source: service, inputInterface: input),
                                                fibMatch: true) else { return "" }
        var text = " (" + (decision.matchedPrefix.map { $0.isDefault ? "default route" : "route \($0)" } ?? "route")
        if let gateway = decision.gateway { text += " via \(gateway)" }
        if decision.table != RouteTable.main { text += " in table \(RouteTable.name(decision.table))" }
        return text + ")"
    }
}
