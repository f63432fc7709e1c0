import FoundationEssentials
import Netlink

/// `returnpath probe --json`: `{"flows":[…]}` and, for a passive probe, what was watched. The keys `flows`,
/// `source`, `service`, `connected`, `reply`, `ingress`, `egress`, `verdict`, `packets` are a contract; absent values
/// are `null`, never left out.
public struct ProbeOutput: Encodable, Sendable {
    public var flows: [FlowOutput]
    /// Passive probes: true, the host watched, its service addresses and the seconds it watched.
    public var passive: Bool?
    public var host: String?
    public var services: [String]?
    public var seconds: Double?
    /// Packets the capture lost (evidence may then be incomplete).
    public var dropped: UInt32

    public init(_ results: [FlowResult], dropped: UInt32) {
        flows = results.map(FlowOutput.init)
        self.dropped = dropped
    }

    /// One JSON line, keys sorted.
    public func json() throws(ProbeError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return String(decoding: try encoder.encode(self), as: UTF8.self) } catch {
            throw ProbeError("encode the probe's JSON: \(error)")
        }
    }

    enum CodingKeys: String, CodingKey {
        case flows, passive, host, services, seconds, dropped
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(flows, forKey: .flows)
        try container.encode(dropped, forKey: .dropped)
        try container.encodeIfPresent(passive, forKey: .passive)
        try container.encodeIfPresent(host, forKey: .host)
        try container.encodeIfPresent(services, forKey: .services)
        try container.encodeIfPresent(seconds, forKey: .seconds)
    }
}

public struct FlowOutput: Encodable, Sendable {
    public var source: String
    public var service: String
    public var connected: Bool
    public var reply: String?
    public var ingress: String?
    public var egress: String?
    public var verdict: Verdict
    public var result: String
    public var serviceHost: String?
    public var client: String?
    public var clientPort: UInt16?
    public var explanation: String?
    public var backend: String?
    public var backendHost: String?
    public var decidedAfter: Double?
    public var packets: [PacketOutput]

    public init(_ r: FlowResult) {
        source = r.source
        service = r.service
        connected = r.connected
        reply = r.reply
        ingress = r.ingress
        egress = r.egress
        verdict = r.verdict
        result = r.result
        serviceHost = r.serviceHost
        client = r.clientAddress?.description
        clientPort = r.clientPort
        explanation = r.explanation
        backend = r.backend
        backendHost = r.backendHost
        decidedAfter = r.decidedAfter
        packets = r.packets.map(PacketOutput.init)
    }

    enum CodingKeys: String, CodingKey {
        case source, service, connected, reply, ingress, egress, verdict, result, explanation, backend, packets, client
        case serviceHost = "service_host", clientPort = "client_port", backendHost = "backend_host"
        case decidedAfter = "decided_after"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(service, forKey: .service)
        try c.encode(connected, forKey: .connected)
        // Optionals as null: `encode` of an Optional writes null, `encodeIfPresent` would leave the key out.
        try c.encode(reply, forKey: .reply)
        try c.encode(ingress, forKey: .ingress)
        try c.encode(egress, forKey: .egress)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(result, forKey: .result)
        try c.encode(serviceHost, forKey: .serviceHost)
        try c.encode(client, forKey: .client)
        try c.encode(clientPort, forKey: .clientPort)
        try c.encode(explanation, forKey: .explanation)
        try c.encode(backend, forKey: .backend)
        try c.encode(backendHost, forKey: .backendHost)
        try c.encode(decidedAfter, forKey: .decidedAfter)
        try c.encode(packets, forKey: .packets)
    }
}

public struct PacketOutput: Encodable, Sendable {
    public var time: Double
    public var interface: String
    public var direction: TCPPacket.Direction
    public var source: String
    public var sourcePort: UInt16
    public var destination: String
    public var destinationPort: UInt16
    public var flags: String
    public var seq: UInt32
    public var ack: UInt32
    public var length: Int
    public var line: String

    public init(_ p: TCPPacket) {
        time = p.time
        interface = p.interface
        direction = p.direction
        source = p.source.description
        sourcePort = p.sourcePort
        destination = p.destination.description
        destinationPort = p.destinationPort
        flags = p.flagText
        seq = p.sequence
        ack = p.acknowledgment
        length = p.length
        line = p.tcpdumpLine
    }

    enum CodingKeys: String, CodingKey {
        case time, interface, direction, source, destination, flags, seq, ack, length, line
        case sourcePort = "source_port", destinationPort = "destination_port"
    }
}
