import Netlink
import SystemPackage

/// The kernel's route lookup (RTM_GETROUTE, `ip route get`), injected: every doctor answer is checked against it.
/// On a live node it is `NetlinkRouteLookup` (the node's rtnetlink socket); on a recorded node `RecordedRouteLookup`
/// answers from the recorded rules and routes. Doctor and Explainer never open a socket to ask.
public protocol KernelRouteLookup: Sendable {
    func lookup(_ query: RouteQuery) throws(NetlinkError) -> KernelRoute
}

/// The kernel's answer to a route lookup, as doctor compares it with its own.
public struct KernelRoute: Sendable, Hashable {
    public var type: RouteType
    public var table: UInt32
    public var gateway: IPAddress?
    /// The output interface (for local delivery, the loopback device).
    public var device: String?
    /// As `ip route get` prints it: "10.111.223.23 via 10.111.221.21 dev eth1 table 52001".
    public var text: String

    public init(type: RouteType = .unicast, table: UInt32, gateway: IPAddress? = nil, device: String? = nil, text: String) {
        self.type = type
        self.table = table
        self.gateway = gateway
        self.device = device
        self.text = text
    }

    public init(_ decision: RouteDecision) {
        self.init(type: decision.type, table: decision.table, gateway: decision.gateway, device: decision.device,
                  text: decision.description)
    }
}

/// RTM_GETROUTE over a node's rtnetlink socket (the one `NodeConnection` opened).
public struct NetlinkRouteLookup: KernelRouteLookup {
    public let socket: NetlinkSocket

    public init(_ socket: NetlinkSocket) { self.socket = socket }

    public func lookup(_ query: RouteQuery) throws(NetlinkError) -> KernelRoute { KernelRoute(try socket.lookup(query)) }
}

/// The answers of a recorded node (no kernel to ask): each query is answered from the recorded rules, routes and
/// sysctls the way doctor's model routes them (the input route with its reverse-path check when the query has an
/// input interface, else the output route), unless `answers` holds a recorded answer for exactly that query (one
/// captured from a real kernel, or one a test makes disagree).
public struct RecordedRouteLookup: KernelRouteLookup {
    public let path: PacketPath
    public var answers: [RouteQuery: Result<KernelRoute, NetlinkError>]

    public init(_ state: NodeState, answers: [RouteQuery: Result<KernelRoute, NetlinkError>] = [:]) {
        path = PacketPath(state)
        self.answers = answers
    }

    public func lookup(_ query: RouteQuery) throws(NetlinkError) -> KernelRoute {
        if let answer = answers[query] { return try answer.get() }
        let operation = "get route \(query) (recorded node)"
        guard let source = query.source else {
            throw .invalidRequest(operation: operation, reason: "a recorded node answers only queries with a source")
        }
        var key = FlowKey(source: source, destination: query.destination, inputInterface: query.inputInterface ?? "lo",
                          outputInterface: query.outputInterface, mark: query.mark ?? 0, ipProtocol: query.ipProtocol,
                          sourcePort: query.sourcePort, destinationPort: query.destinationPort)
        key.uid = 0
        let result = query.inputInterface == nil ? path.result(of: path.routes.lookup(key)) : path.route(arriving: key).result
        switch result {
        case .local(let lookup):
            // IPv4 keeps the local table merged into main until the namespace's first rule of its own (fib_unmerge,
            // never undone): the kernel then names main. A recorded state shows no history: no rules but the
            // kernel's three is taken as never.
            var table = lookup.outcome.table ?? RouteTable.local
            if query.destination.family == .inet, table == RouteTable.local, !path.state.hasCustomRules { table = RouteTable.main }
            return KernelRoute(type: .local, table: table, device: "lo",
                               text: Self.text(query, type: .local, gateway: nil, device: "lo", table: table))
        case .sent(let lookup, let device, let gateway):
            let type = lookup.outcome.route?.type ?? .unicast, table = lookup.outcome.table ?? RouteTable.main
            return KernelRoute(type: type, table: table, gateway: gateway, device: device,
                               text: Self.text(query, type: type, gateway: gateway, device: device, table: table))
        case .refused(let errno, _, _):
            // The kernel says only its errno, as here.
            throw .kernel(operation: operation, errno: errno, message: nil)
        case .dropped(let by):
            // No nftables run here (the query's mark is the one after them): a route lookup drops nothing.
            throw .invalidRequest(operation: operation, reason: "dropped by \(by)")
        }
    }

    /// The answer in `ip route get`'s words (RouteDecision's): "local 192.168.1.1 dev lo table local iif eth1".
    static func text(_ query: RouteQuery, type: RouteType, gateway: IPAddress?, device: String, table: UInt32) -> String {
        var words = type == .unicast ? [] : [type.description]
        words.append(query.destination.description)
        if let gateway { words += ["via", gateway.description] }
        words += ["dev", device, "table", RouteTable.name(table)]
        if let iif = query.inputInterface { words += ["iif", iif] }
        return words.joined(separator: " ")
    }
}

/// The kernel's answer to the same question (RTM_GETROUTE with the same keys), and whether it agrees.
public struct KernelAnswer: Sendable {
    /// "ip route get 10.111.223.23 from 192.168.1.1 mark 0x2000000"
    public var command: String
    /// The answer as `ip route get` prints it, or its error.
    public var answer: String
    public var device: String?
    public var gateway: IPAddress?
    public var table: UInt32?
    public var errno: Errno?
    /// nil: not asked (nftables dropped the packet before routing).
    public var agrees: Bool?
    public var differences: [String]
}

extension KernelAnswer {
    /// Asks `kernel` the query doctor answered with `expected`, and compares the two answers.
    public init(asking kernel: any KernelRouteLookup, _ query: RouteQuery, expecting expected: PathResult) {
        var answer = KernelAnswer(command: (query.destination.family == .inet6 ? "ip -6 route get " : "ip route get ") + query.description,
                                  answer: "", agrees: nil, differences: [])
        if case .dropped = expected {
            answer.answer = "(not asked: nftables drops the packet before routing)"
            self = answer
            return
        }
        do {
            let decision = try kernel.lookup(query)
            answer.answer = decision.text
            answer.device = decision.type == .local ? "lo" : decision.device
            answer.gateway = decision.gateway
            answer.table = decision.table
            switch expected {
            case .local:
                if decision.type != .local { answer.differences.append("the kernel delivers it as \(decision.type), doctor locally") }
            case .sent(let lookup, let device, let gateway):
                if decision.type == .local { answer.differences.append("the kernel delivers it locally, doctor sends it out \(device)") }
                if answer.device != device { answer.differences.append("device: kernel \(answer.device ?? "none"), doctor \(device)") }
                let hops = lookup.outcome.route?.gateways ?? []
                if decision.gateway != gateway && !(hops.count > 1 && decision.gateway.map(hops.contains) == true) {
                    answer.differences.append("gateway: kernel \(decision.gateway?.description ?? "none"), doctor \(gateway?.description ?? "none")")
                }
                if let table = lookup.outcome.table, decision.table != table {
                    answer.differences.append("table: kernel \(RouteTable.name(decision.table)), doctor \(RouteTable.name(table))")
                }
            case .refused(let errno, _, _):
                answer.differences.append("the kernel routes it (\(decision.text)); doctor expects \(errno)")
            case .dropped:
                break
            }
        } catch {
            answer.errno = error.errno
            if case .kernel(_, let errno, let message) = error {
                answer.answer = "error: \(message.map { "\($0) " } ?? "")(\(errno))"
            } else {
                answer.answer = "error: \(error)"
            }
            switch expected {
            case .refused(let errno, _, _):
                if error.errno != errno { answer.differences.append("errno: kernel \(error.errno.map { "\($0)" } ?? "\(error)"), doctor \(errno)") }
            case .local:
                answer.differences.append("the kernel refuses it (\(answer.answer)); doctor delivers it locally")
            case .sent(_, let device, _):
                answer.differences.append("the kernel refuses it (\(answer.answer)); doctor sends it out \(device)")
            case .dropped:
                break
            }
        }
        answer.agrees = answer.differences.isEmpty
        self = answer
    }
}
