import Namespace
import Netlink
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Probes flows concurrently: captures start in every namespace that owns a destination, then every connection is
/// made at once from its client's namespace; one poll loop drives sockets and captures. A flow is decided as soon
/// as its packets prove the verdict: a SYN-ACK leaving by another interface than the SYN came in on ends the wait
/// for that flow (after a moment in which the client may still connect), instead of the connect timeout.
public struct Prober {
    public let timeout: Double
    /// After an asymmetric SYN-ACK, how long the client may still take to connect (it does when nothing on the
    /// way checks the path: then its reply is part of the result).
    public var settle: Double = 0.15

    public init(timeout: Double) {
        self.timeout = timeout
    }

    /// Packets the captures lost (their buffers overflowed); evidence may be incomplete when this is not 0.
    public final class Counters: @unchecked Sendable { public var dropped: UInt32 = 0 }
    public let counters = Counters()

    private struct Attempt {
        var flow: Flow
        var fd: Int32 = -1
        var state = State.connecting
        var outcome: FlowOutcome = .timedOut
        var received: [UInt8] = []
        var local: (IPAddress, UInt16)?
        var evidence: Evidence?
        /// Set when the packets decided the flow: the client has until then to connect.
        var settleBy: Double?
        var started = 0.0
        var decidedAt: Double?

        enum State { case connecting, reading, done }
    }

    public func run(_ flows: [Flow]) throws(ProbeError) -> [FlowResult] {
        // Captures first, in every namespace that owns a destination: they see the first SYN.
        var captures: [NetworkNamespace: PacketCapture] = [:]
        for flow in flows {
            guard let destination = flow.destination, captures[destination.namespace] == nil else { continue }
            captures[destination.namespace] = try PacketCapture(namespace: destination.namespace)
        }
        defer { for capture in captures.values { capture.close() } }
        let order = Array(captures.keys)

        var attempts = flows.map { Attempt(flow: $0) }
        /// (client address, client port, service address, service port) → attempt, for the packets as they come.
        var byKey: [String: Int] = [:]
        for i in attempts.indices {
            try start(&attempts[i])
            if let (address, port) = attempts[i].local {
                let flow = attempts[i].flow
                attempts[i].evidence = Evidence(client: address, clientPort: port, service: flow.address,
                                                servicePort: flow.port, translation: flow.translation)
                byKey[Self.key(address, port, flow.address, flow.port)] = i
            }
        }
        var seen: [NetworkNamespace: [TCPPacket]] = [:]
        func collect() {
            let now = monotonicSeconds()
            for namespace in order {
                guard let capture = captures[namespace] else { continue }
                capture.drain()
                let fresh = capture.take()
                seen[namespace, default: []] += fresh
                for packet in fresh {
                    let forward = Self.key(packet.source, packet.sourcePort, packet.destination, packet.destinationPort)
                    let backward = Self.key(packet.destination, packet.destinationPort, packet.source, packet.sourcePort)
                    guard let i = byKey[forward] ?? byKey[backward] else { continue }
                    attempts[i].evidence?.add(packet)
                    if attempts[i].state != .done, attempts[i].settleBy == nil, attempts[i].evidence?.isAsymmetric == true {
                        attempts[i].settleBy = now + settle
                        attempts[i].decidedAt = now
                    }
                }
            }
        }

        let deadline = monotonicSeconds() + timeout
        while attempts.contains(where: { $0.state != .done }) {
            let now = monotonicSeconds()
            if now >= deadline { break }
            // Flows decided by their packets, still not connected once the client had its moment: done.
            for i in attempts.indices where attempts[i].state == .connecting {
                if let by = attempts[i].settleBy, now >= by {
                    attempts[i].outcome = .unconnected
                    finish(&attempts[i])
                }
            }
            var fds = order.compactMap { captures[$0].map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) } }
            let flowSlots = attempts.indices.filter { attempts[$0].state != .done }
            if flowSlots.isEmpty { break }
            for i in flowSlots {
                let events = attempts[i].state == .connecting ? POLLOUT : POLLIN
                fds.append(pollfd(fd: attempts[i].fd, events: Int16(events), revents: 0))
            }
            let nextSettle = flowSlots.compactMap { attempts[$0].settleBy }.min() ?? deadline
            let wait = max(0, min(deadline, nextSettle, now + 0.05) - now)
            _ = poll(&fds, nfds_t(fds.count), Int32(wait * 1000) + 1)
            collect()
            for (slot, i) in flowSlots.enumerated() where fds[order.count + slot].revents != 0 && attempts[i].state != .done {
                step(&attempts[i])
            }
        }
        for i in attempts.indices where attempts[i].state != .done {
            attempts[i].outcome = attempts[i].state == .reading ? .noReply : (attempts[i].settleBy != nil ? .unconnected : .timedOut)
            finish(&attempts[i])
        }
        // Late packets (the last ACKs and FINs) before the verdicts.
        let grace = monotonicSeconds() + 0.03
        while monotonicSeconds() < grace {
            var fds = order.compactMap { captures[$0].map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) } }
            _ = poll(&fds, nfds_t(fds.count), 10)
            collect()
        }
        for capture in captures.values {
            capture.close()
            counters.dropped += capture.dropped
        }
        return attempts.map { attempt in
            let flow = attempt.flow
            let judge = Judge(source: flow.source, serviceHost: flow.destination, outcome: attempt.outcome,
                              clientKnown: attempt.local != nil,
                              unknownDestination: "no known host has \(flow.address)")
            var evidence = attempt.evidence ?? Evidence(client: flow.address, clientPort: 0, service: flow.address,
                                                        servicePort: flow.port, translation: flow.translation)
            // The backend's side is matched at the end, from everything the capture saw.
            if flow.translation != nil, let namespace = flow.destination?.namespace {
                for packet in seen[namespace] ?? [] where evidence.isBackendSide(packet) && !evidence.isClientSide(packet) {
                    evidence.add(packet)
                }
            }
            var result = judge.result(evidence, address: flow.address, port: flow.port)
            if let decided = attempt.decidedAt { result.decidedAfter = decided - attempt.started }
            return result
        }
    }

    static func key(_ client: IPAddress, _ clientPort: UInt16, _ service: IPAddress, _ servicePort: UInt16) -> String {
        "\(client) \(clientPort) \(service) \(servicePort)"
    }

    /// Opens the socket in the client's namespace and starts a non-blocking connect.
    private func start(_ attempt: inout Attempt) throws(ProbeError) {
        let ns = attempt.flow.client
        let domain = attempt.flow.address.family == .inet6 ? AF_INET6 : AF_INET
        do {
            attempt.fd = try ns.socket(domain: domain, type: Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), protocol: 0)
        } catch {
            throw ProbeError("socket in \(ns): \(error)")
        }
        attempt.started = monotonicSeconds()
        // A non-blocking connect is never retried (a second call would answer EALREADY).
        let connected = syscall(retryOnInterrupt: false) {
            withSocketAddress(attempt.flow.address, attempt.flow.port) { connect(attempt.fd, $0, $1) }
        }
        attempt.local = SocketAddress.local(of: attempt.fd)
        switch connected {
        case .success: attempt.state = .reading
        case .failure(.nowInProgress): break
        case .failure(let error):
            attempt.outcome = error == .connectionRefused ? .refused : .failed(error)
            finish(&attempt)
        }
    }

    private func step(_ attempt: inout Attempt) {
        switch attempt.state {
        case .connecting:
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            if case .failure(let error) = syscall({ getsockopt(attempt.fd, SOL_SOCKET, SO_ERROR, &soError, &length) }) {
                soError = error.rawValue   // the socket cannot say: that is its outcome
            }
            if soError == 0 {
                attempt.state = .reading
                if attempt.local == nil { attempt.local = SocketAddress.local(of: attempt.fd) }
            } else {
                let error = Errno(rawValue: soError)
                attempt.outcome = error == .connectionRefused ? .refused : .failed(error)
                finish(&attempt)
            }
        case .reading:
            var buffer = [UInt8](repeating: 0, count: 1024)
            switch syscall({ buffer.withUnsafeMutableBytes { recv(attempt.fd, $0.baseAddress, $0.count, 0) } }) {
            case .success(let n) where n > 0:
                attempt.received += buffer[0..<n]
                if attempt.received.contains(UInt8(ascii: "\n")) { finish(&attempt) }
            case .failure(.resourceTemporarilyUnavailable):
                break   // nothing yet
            case .success, .failure:
                finish(&attempt)   // the server closed, or the connection failed: judged from what arrived
            }
        case .done:
            break
        }
    }

    private func finish(_ attempt: inout Attempt) {
        if attempt.state == .reading {
            attempt.outcome = attempt.received.isEmpty
                ? .noReply
                : .replied(String(decoding: attempt.received.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self))
        }
        if attempt.fd >= 0 { close(attempt.fd) }
        attempt.fd = -1
        attempt.state = .done
    }
}


/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
