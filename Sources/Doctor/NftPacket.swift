import Netlink

/// A packet as nftables sees it at a hook: addresses, ports, interfaces, its mark, its connection.
public struct NftPacket: Sendable, Hashable {
    public var source: IPAddress
    public var destination: IPAddress
    public var ipProtocol: UInt8?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// prerouting: the interface it came in on.
    public var inputInterface: String?
    /// output: the device of the route the socket's lookup chose (before any re-route).
    public var outputInterface: String?
    public var mark: UInt32
    /// The connection's mark and state as conntrack has them.
    public var ctMark: UInt32
    /// "new" or "established".
    public var ctState: String
    /// "original" (the initiator's packets) or "reply".
    public var ctDirection: String

    public init(source: IPAddress, destination: IPAddress, ipProtocol: UInt8? = nil, sourcePort: UInt16? = nil,
                destinationPort: UInt16? = nil, inputInterface: String? = nil, outputInterface: String? = nil,
                mark: UInt32 = 0, ctMark: UInt32 = 0, ctState: String = "new", ctDirection: String = "original") {
        self.source = source
        self.destination = destination
        self.ipProtocol = ipProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.mark = mark
        self.ctMark = ctMark
        self.ctState = ctState
        self.ctDirection = ctDirection
    }
}

/// What the chains of one hook did to a packet, rule by rule.
public struct NftTrace: Sendable {
    public struct Step: Sendable, Hashable {
        public enum Outcome: String, Sendable, Hashable {
            /// Every match held; its statements ran.
            case matched
            case skipped
            /// A match doctor cannot evaluate (an unknown expression or extension): treated as not matching.
            case unevaluated
        }
        /// "inet returnpath output"
        public var chain: String
        public var chainType: String?
        public var priority: Int?
        public var handle: Int
        public var text: String
        public var outcome: Outcome
        /// Why: "ip saddr 192.168.1.1 in @svc_1", "iifname eth2 is not eth1".
        public var reason: String
        public var markBefore: UInt32
        public var markAfter: UInt32
        public var ctMarkAfter: UInt32
        /// The rule is in returnpath's own table.
        public var ours: Bool
    }

    public var hook: String
    public var steps: [Step] = []
    public var markBefore: UInt32
    public var markAfter: UInt32
    public var ctMarkAfter: UInt32
    /// The mark a route-type chain left (output: the kernel routes the packet again with it); nil when none changed it.
    public var rerouteMark: UInt32?
    /// A filter chain at the output hook changed the mark: the kernel does not route again for it.
    public var markChangedWithoutReroute = false
    /// A nat chain's `dnat to` changed the destination (the first packet of a connection).
    public var dnat: (address: IPAddress, port: UInt16?)?
    /// A rule dropped the packet ("inet filter output handle 4"), or a chain's policy did.
    public var droppedBy: String?
    public var chains: [String] = []
}
