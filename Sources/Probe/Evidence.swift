import Netlink

/// The packets of one connection as the service's host saw them, and what they prove. The active and the passive
/// probe judge flows with this same code.
struct Evidence {
    let client: IPAddress
    let clientPort: UInt16
    let service: IPAddress
    let servicePort: UInt16
    let translation: Flow.Translation?
    /// The client's side: its SYN coming in, the SYN-ACK (or RST) going back, the rest of the connection.
    private(set) var packets: [TCPPacket] = []
    /// A DNATed flow's backend side: the translated SYN leaving towards the backend, its reply coming back.
    private(set) var backendPackets: [TCPPacket] = []

    init(client: IPAddress, clientPort: UInt16, service: IPAddress, servicePort: UInt16, translation: Flow.Translation?) {
        self.client = client
        self.clientPort = clientPort
        self.service = service
        self.servicePort = servicePort
        self.translation = translation
    }

    /// Whether the packet belongs to the client's side of this connection.
    func isClientSide(_ p: TCPPacket) -> Bool {
        (p.source == client && p.sourcePort == clientPort && p.destination == service && p.destinationPort == servicePort)
            || (p.destination == client && p.destinationPort == clientPort && p.source == service && p.sourcePort == servicePort)
    }

    /// Whether the packet belongs to the backend's side (masquerading replaces the client's address, usually
    /// keeping its port: then the port alone matches).
    func isBackendSide(_ p: TCPPacket) -> Bool {
        guard let t = translation else { return false }
        return (p.destination == t.backend && p.destinationPort == t.backendPort && p.sourcePort == clientPort
                && (t.masquerade || p.source == client))
            || (p.source == t.backend && p.sourcePort == t.backendPort && p.destinationPort == clientPort
                && (t.masquerade || p.destination == client))
    }

    /// Takes the packet if it is part of this connection; true when it was.
    @discardableResult
    mutating func add(_ p: TCPPacket) -> Bool {
        if isClientSide(p) {
            packets.append(p)
            return true
        }
        if isBackendSide(p) {
            backendPackets.append(p)
            return true
        }
        return false
    }

    /// Requests as they came in.
    var inbound: [TCPPacket] { packets.filter { $0.direction == .incoming && $0.destination == service } }
    /// Replies as they went out. libpcap shows a packet looped back through lo once, as incoming: there "In" from the
    /// service is its way out.
    var outbound: [TCPPacket] {
        packets.filter { $0.source == service && ($0.direction == .outgoing || ($0.direction == .incoming && $0.interface == "lo")) }
    }
    var syn: TCPPacket? { inbound.first(where: \.isSYN) }
    var ingress: String? { syn?.interface }
    var synAck: TCPPacket? { outbound.first(where: \.isSYNACK) }
    var reset: TCPPacket? { outbound.first(where: \.isRST) }
    var egress: String? { synAck?.interface ?? reset?.interface }
    /// The handshake's last ACK came in after the SYN-ACK: the client connected.
    var clientAcknowledged: Bool {
        guard let synAck else { return false }
        return inbound.contains { !$0.isSYN && !$0.isRST && $0.flags & TCPPacket.ack != 0 && $0.time >= synAck.time }
    }
    /// The SYN-ACK left by another interface than the SYN came in on: the verdict is known.
    var isAsymmetric: Bool {
        guard let ingress, let egress = synAck?.interface else { return false }
        return ingress != egress
    }
    var toBackend: TCPPacket? { backendPackets.first { $0.isSYN && $0.direction == .outgoing } }
    var fromBackend: TCPPacket? { backendPackets.first { $0.isSYNACK && $0.direction == .incoming } }
    /// Both sides, in time order.
    var allPackets: [TCPPacket] { (packets + backendPackets).sorted { $0.time < $1.time } }
}

/// The verdict from the evidence: the same rules for the active and the passive probe.
struct Judge {
    /// The flow's client, as the user knows it ("client1", or an address for a passive probe).
    var source: String
    /// The destination's host as the user knows it, and where it lives (for the route that explains a reply).
    var serviceHost: Flow.Endpoint?
    var outcome: FlowOutcome
    /// The client's socket had an address and port (its SYN could be recognised).
    var clientKnown: Bool
    /// For explanations of unreached flows: what was tried ("no host of lab seed has …").
    var unknownDestination: String?

    func result(_ evidence: Evidence, address: IPAddress, port: UInt16) -> FlowResult {
        let translation = evidence.translation
        var result = FlowResult(source: source, address: address, port: port, serviceHost: serviceHost?.name,
                                clientAddress: clientKnown ? evidence.client : nil, clientPort: clientKnown ? evidence.clientPort : nil,
                                outcome: outcome, ingress: evidence.ingress, egress: evidence.egress, verdict: .unreached,
                                explanation: nil, packets: evidence.allPackets, backend: translation?.backendEndpoint,
                                backendHost: translation?.backendHost)
        let client = clientKnown ? evidence.client.description : "the client"
        let host = serviceHost?.name ?? "the host"
        let service = address.endpoint(port: port)
        var dnatNote = ""
        if let translation {
            // "; node DNATs 192.168.1.1:3000 to 10.244.0.10:3000 (pod1), whose SYN-ACK came back on veth-pod1"
            dnatNote = "; \(host) DNATs \(service) to \(translation.backendEndpoint)"
                + (translation.backendHost.map { " (\($0)" + ")" } ?? "")
            if let back = evidence.fromBackend { dnatNote += ", whose SYN-ACK came back on \(back.interface) and was forwarded" }
        }
        let ingress = evidence.ingress ?? "?"
        if evidence.ingress == nil {
            result.verdict = .unreached
            if serviceHost == nil {
                result.explanation = (unknownDestination ?? "no known host has \(address)") + "; \(source): \(outcome)"
            } else if !clientKnown || !(outcome == .timedOut || outcome.connected) {
                result.explanation = "the SYN never left \(source) (\(outcome))"
            } else {
                result.explanation = "the SYN from \(source) never reached \(host): check the route to \(address) on the way"
            }
        } else if evidence.synAck == nil, let reset = evidence.reset {
            result.verdict = .refused
            result.explanation = "\(host) answered RST via \(reset.interface): nothing listens on \(service)"
        } else if evidence.synAck == nil {
            result.verdict = .unanswered
            if let translation, evidence.toBackend == nil {
                result.explanation = "the SYN arrived on \(ingress) but was not forwarded to the DNAT backend "
                    + "\(translation.backendEndpoint) (is forwarding on, is there a route to it?)"
            } else if let translation, let toBackend = evidence.toBackend {
                result.explanation = "the SYN arrived on \(ingress) and was DNATed to \(translation.backendEndpoint) via "
                    + "\(toBackend.interface), but no reply left \(host)"
                    + (evidence.fromBackend == nil ? " (the backend did not answer)" : "")
            } else {
                result.explanation = "the SYN arrived on \(ingress) but \(host) sent nothing back (no listener, or a firewall dropped it)"
            }
        } else if evidence.isAsymmetric {
            result.verdict = .asymmetric
            // A DNATed reply is routed as it arrives from the backend (forwarded), before it is de-NATed.
            let how = translation != nil && evidence.fromBackend != nil
                ? route(to: evidence.client, from: translation?.backend, arrivingOn: evidence.fromBackend?.interface)
                : route(to: evidence.client, from: address)
            result.explanation = "reply to \(client) left via \(evidence.egress ?? "?")\(how) "
                + "but the request arrived on \(ingress)" + dnatNote
                + (outcome.connected ? " (it connected only because nothing on the way checks the path)" : "")
        } else {
            result.verdict = .symmetric
            if !outcome.connected {
                result.explanation = "the SYN-ACK left by \(evidence.egress ?? "?"), where the SYN came in, but "
                    + (clientKnown && outcome != .observed(connected: false) ? "\(source) never got it" : "no ACK came back yet")
            }
        }
        return result
    }

    /// " (default route via 10.111.220.1)": the route the service's host uses to answer, from the kernel.
    /// With `arrivingOn`, the decision for a packet forwarded from that interface. "" when the kernel does not say.
    private func route(to client: IPAddress, from service: IPAddress?, arrivingOn input: String? = nil) -> String {
        guard let namespace = serviceHost?.namespace, let socket = try? NetlinkSocket(namespace: namespace),
              let decision = try? socket.lookup(RouteQuery(destination: client, source: service, inputInterface: input),
                                                fibMatch: true) else { return "" }
        var text = " (" + (decision.matchedPrefix.map { $0.isDefault ? "default route" : "route \($0)" } ?? "route")
        if let gateway = decision.gateway { text += " via \(gateway)" }
        if decision.table != RouteTable.main { text += " in table \(RouteTable.name(decision.table))" }
        return text + ")"
    }
}
