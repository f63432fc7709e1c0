import Netlink
import SystemPackage

/// `doctor explain`: one packet.
public struct ExplainQuery: Sendable, Hashable {
    public var source: IPAddress
    public var destination: IPAddress
    /// The packet arrives on this interface (a request, or a packet to forward); nil: the node sends it.
    public var inputInterface: String?
    /// The packet's mark before nftables (the socket's, or the one it arrives with); nil: 0, or for a reply with
    /// `requestInterface`, what the request's mark gives the socket (net.ipv4.tcp_fwmark_accept).
    public var mark: UInt32?
    public var ipProtocol: UInt8?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// For a packet the node sends: it answers a connection whose request came in on this interface (conntrack then
    /// has the request's ct mark, and the packet is in the reply direction).
    public var requestInterface: String?

    public init(source: IPAddress, destination: IPAddress, inputInterface: String? = nil, mark: UInt32? = nil,
                ipProtocol: UInt8? = nil, sourcePort: UInt16? = nil, destinationPort: UInt16? = nil,
                requestInterface: String? = nil) {
        self.source = source
        self.destination = destination
        self.inputInterface = inputInterface
        self.mark = mark
        self.ipProtocol = ipProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.requestInterface = requestInterface
    }
}

public struct Explanation: Sendable {
    public var query: ExplainQuery
    /// "input" (arrives on an interface) or "output" (sent by the node).
    public var direction: String
    /// For a reply (`requestInterface`): what the request's prerouting did (the connection's ct mark).
    public var request: NftTrace?
    /// The mark before nftables, and what the socket's own route was (output: `oifname` in chains is its device).
    public var initialMark: UInt32
    public var initialRoute: RouteLookup?
    public var nftables: NftTrace
    /// The mark the route lookup used.
    public var mark: UInt32
    public var result: PathResult
    public var reversePath: ReversePathCheck?
    public var kernel: KernelAnswer
    /// Things said about the question itself ("ct mark 0: the connection is unknown").
    public var notes: [String]

    public var lookup: RouteLookup? { result.lookup }
    public var agrees: Bool { kernel.agrees != false }
}

/// Answers `doctor explain` on a node.
public struct Explainer: Sendable {
    public let state: NodeState
    let path: PacketPath

    public init(_ state: NodeState) {
        self.state = state
        path = PacketPath(state)
    }

    /// Explains one packet; `kernel` answers the same question (RTM_GETROUTE on a live node). Throws `invalid` for a
    /// question that cannot be asked (families mixed, an unknown interface).
    public func explain(_ query: ExplainQuery, kernel: any KernelRouteLookup) throws(DoctorError) -> Explanation {
        guard query.source.family == query.destination.family else {
            throw .invalid("--from \(query.source) and --to \(query.destination) are of different families")
        }
        for name in [query.inputInterface, query.requestInterface].compactMap({ $0 }) where state.link(name) == nil {
            throw .invalid("\(state.namespace) has no interface \(name) (interfaces: \(state.links.map(\.name).joined(separator: ", ")))")
        }
        var notes: [String] = state.notes
        if let interface = query.inputInterface {
            var packet = NftPacket(source: query.source, destination: query.destination, ipProtocol: query.ipProtocol,
                                   sourcePort: query.sourcePort, destinationPort: query.destinationPort,
                                   inputInterface: interface, mark: query.mark ?? 0)
            var request: NftTrace?
            if let requestInterface = query.requestInterface {
                // A reply that arrives to be forwarded (a pod's, behind DNAT): its connection began on requestInterface.
                let (trace, ctMark, _) = requestTrace(query, on: requestInterface)
                request = trace
                packet.ctMark = ctMark
                packet.ctState = "established"
                packet.ctDirection = "reply"
                notes.append("conntrack: the reply of a connection whose request came in on \(requestInterface) (ct state established, direction reply, ct mark \(hex(ctMark)))")
            } else {
                notes.append("conntrack: a new connection (ct state new, direction original, ct mark 0x0); for a reply arriving to be forwarded, add --request-iif IF")
            }
            let (trace, result, check, mark) = path.input(packet)
            var explanation = Explanation(query: query, direction: "input", request: request, initialMark: query.mark ?? 0,
                                          initialRoute: nil, nftables: trace, mark: mark, result: result, reversePath: check,
                                          kernel: KernelAnswer(command: "", answer: "", agrees: nil, differences: []), notes: notes)
            // A nat chain's DNAT changed the destination before routing: the kernel is asked about the translated one.
            if let dnat = trace.dnat {
                explanation.notes.append("nat: DNAT to \(dnat.address)\(dnat.port.map { ":\($0)" } ?? ""); the route is looked up for the translated destination")
            }
            let kernelQuery = RouteQuery(destination: trace.dnat?.address ?? query.destination, source: query.source,
                                         inputInterface: interface, mark: mark, ipProtocol: query.ipProtocol,
                                         sourcePort: query.sourcePort,
                                         destinationPort: trace.dnat.map { $0.port ?? query.destinationPort } ?? query.destinationPort)
            explanation.kernel = KernelAnswer(asking: kernel, kernelQuery, expecting: result)
            return explanation
        }
        // A packet the node sends; as a reply, its connection's state comes from the request.
        var request: NftTrace?
        var packet = NftPacket(source: query.source, destination: query.destination, ipProtocol: query.ipProtocol,
                               sourcePort: query.sourcePort, destinationPort: query.destinationPort, mark: query.mark ?? 0)
        if let interface = query.requestInterface {
            let incoming = requestTrace(query, on: interface)
            request = incoming.trace
            packet.ctMark = incoming.ctMark
            packet.ctState = "established"
            packet.ctDirection = "reply"
            if query.mark == nil && state.tcpFwmarkAccept && query.ipProtocol == 6 {
                packet.mark = incoming.mark
                notes.append("net.ipv4.tcp_fwmark_accept=1: the accepted socket (and its replies) take the request's mark \(hex(incoming.mark))")
            }
            notes.append("conntrack: the reply of a connection whose request came in on \(interface) (ct state established, direction reply, ct mark \(hex(incoming.ctMark)))")
        } else {
            notes.append("conntrack: a connection the node opens itself (ct state new, direction original, ct mark 0x0); for a reply to a client, give --request-iif IF")
        }
        let initialMark = packet.mark
        let (first, trace, result, mark) = path.output(packet)
        var explanation = Explanation(query: query, direction: "output", request: request, initialMark: initialMark,
                                      initialRoute: first, nftables: trace, mark: mark, result: result, reversePath: nil,
                                      kernel: KernelAnswer(command: "", answer: "", agrees: nil, differences: []), notes: notes)
        let kernelQuery = RouteQuery(destination: query.destination, source: query.source, mark: mark,
                                     ipProtocol: query.ipProtocol, sourcePort: query.sourcePort, destinationPort: query.destinationPort)
        explanation.kernel = KernelAnswer(asking: kernel, kernelQuery, expecting: result)
        return explanation
    }

    /// The request of the connection a reply belongs to, through prerouting on `interface`: its trace, the
    /// connection's ct mark and the request's mark.
    func requestTrace(_ query: ExplainQuery, on interface: String) -> (trace: NftTrace, ctMark: UInt32, mark: UInt32) {
        var incoming = NftPacket(source: query.destination, destination: query.source, ipProtocol: query.ipProtocol,
                                 sourcePort: query.destinationPort, destinationPort: query.sourcePort, inputInterface: interface)
        let trace = path.nft.run(hook: "prerouting", &incoming)
        return (trace, incoming.ctMark, incoming.mark)
    }
}
