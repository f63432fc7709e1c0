import Namespace
import Netlink
import SystemPackage

/// One flow to probe: a real TCP connection from the `client` namespace to ADDRESS:PORT, with packets captured in
/// the namespace that owns the address. Probe knows namespaces, not labs: the CLI resolves a lab's hosts to these.
public struct Flow: Sendable, Hashable {
    /// The client's name as the user knows it (a lab host: "client1").
    public var source: String
    /// Where the connection is made from.
    public var client: NetworkNamespace
    public var address: IPAddress
    public var port: UInt16
    /// Where the destination address lives, named and located (packets are captured there); nil when no known
    /// namespace has the address (the flow can then only be unreached).
    public var destination: Endpoint?
    /// The destination's host translates the connection to a backend (a Kubernetes service DNATed to a pod).
    public var translation: Translation?

    /// A namespace as the user knows it: "node", rp-seed-node.
    public struct Endpoint: Sendable, Hashable {
        public var name: String
        public var namespace: NetworkNamespace
        public init(name: String, namespace: NetworkNamespace) {
            self.name = name
            self.namespace = namespace
        }
    }

    /// DNAT of the flow's address and port by the destination's host: the backend's side of the connection is
    /// evidence too.
    public struct Translation: Sendable, Hashable {
        public var backend: IPAddress
        public var backendPort: UInt16
        /// The backend sees the host's own address as source (kube-proxy's masquerade): its side is then matched by
        /// the client's port alone.
        public var masquerade: Bool
        /// The backend's name, when known ("pod1").
        public var backendHost: String?

        public init(backend: IPAddress, backendPort: UInt16, masquerade: Bool, backendHost: String? = nil) {
            self.backend = backend
            self.backendPort = backendPort
            self.masquerade = masquerade
            self.backendHost = backendHost
        }

        /// "10.244.0.10:3000"
        public var backendEndpoint: String { backend.endpoint(port: backendPort) }
    }

    public init(source: String, client: NetworkNamespace, address: IPAddress, port: UInt16,
                destination: Endpoint?, translation: Translation? = nil) {
        self.source = source
        self.client = client
        self.address = address
        self.port = port
        self.destination = destination
        self.translation = translation
    }

    /// "192.168.1.1:3000"
    public var service: String { address.endpoint(port: port) }
}

/// What the client's side of a flow saw.
public enum FlowOutcome: Sendable, Equatable, CustomStringConvertible {
    /// Connected and read this line (the service's reply).
    case replied(String)
    /// Connected; nothing came back before the server closed or the time ran out.
    case noReply
    /// The connection was refused (RST).
    case refused
    /// The connection did not complete within the probe's timeout.
    case timedOut
    /// The SYN-ACK was seen leaving by another interface than the SYN came in on, and the client had not received
    /// it a moment later: the verdict was known, so the probe stopped waiting.
    case unconnected
    /// connect() or the socket failed locally with this error (network unreachable, …).
    case failed(Errno)
    /// A passive probe's flow: no client of ours; `connected` says whether the handshake's last ACK was seen.
    case observed(connected: Bool)

    /// The RESULT column and the JSON `result`: the reply, or what happened instead.
    public var description: String {
        switch self {
        case .replied(let line): return line
        case .noReply: return "no reply"
        case .refused: return "refused"
        case .timedOut: return "timeout"
        case .unconnected: return "no SYN-ACK"
        case .failed(let errno): return "\(errno)"
        case .observed(let connected): return connected ? "connected" : "not connected"
        }
    }

    /// The client completed the handshake.
    public var connected: Bool {
        switch self {
        case .replied, .noReply: return true
        case .observed(let connected): return connected
        case .refused, .timedOut, .unconnected, .failed: return false
        }
    }

    /// The reply line, when there was one.
    public var reply: String? {
        if case .replied(let line) = self { return line }
        return nil
    }
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
    /// The flow's client name ("client1"; for a passive probe, the client's address).
    public var source: String
    public var address: IPAddress
    public var port: UInt16
    /// The host that owns the destination address (where packets were captured), if any.
    public var serviceHost: String?
    public var clientAddress: IPAddress?
    public var clientPort: UInt16?
    public var outcome: FlowOutcome
    public var ingress: String?
    public var egress: String?
    public var verdict: Verdict
    /// One sentence for non-symmetric verdicts.
    public var explanation: String?
    /// The packets of the flow on the service's host, in time order: the client's side and, for a DNATed service,
    /// the backend's side (the translated SYN leaving towards the backend, its reply coming back).
    public var packets: [TCPPacket]
    /// For a service the host DNATs: the backend, ADDRESS:PORT, and the host that has it.
    public var backend: String?
    public var backendHost: String?
    /// Seconds from the flow's first packet (or connect) to its verdict.
    public var decidedAfter: Double?

    /// "192.168.1.1:3000"
    public var service: String { address.endpoint(port: port) }
    public var connected: Bool { outcome.connected }
    public var reply: String? { outcome.reply }
    /// What the client saw: "svc1", "timeout", "refused", … (the JSON `result`).
    public var result: String { outcome.description }
    public var ok: Bool { verdict == .symmetric && connected }
}
