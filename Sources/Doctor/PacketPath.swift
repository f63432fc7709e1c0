import Netlink
import SystemPackage

/// The reverse-path check rp_filter makes for a packet that came in (net/ipv4/fib_frontend.c fib_validate_source):
/// the packet's source is looked up as a destination, from the node (iif lo, or the forwarding device), with the
/// packet's mark when src_valid_mark is set.
public struct ReversePathCheck: Sendable {
    /// 0 off, 1 strict, 2 loose: the maximum of all and the interface's.
    public var mode: Int
    /// The raw values: the interface's own and all's.
    public var ownValue: String
    public var allValue: String
    public var srcValidMark: Bool
    /// The mark the reverse lookup used (the packet's with src_valid_mark, else 0).
    public var mark: UInt32
    public var lookup: RouteLookup?
    public var passed: Bool
    public var reason: String
    /// A failed check's source is martian (an address of this node, or routed as something other than unicast):
    /// the kernel refuses it with EINVAL, and any other failure with `KernelRelease.reversePathErrno`.
    public var martian = false

    public var modeText: String { ["off", "strict", "loose"][safe: mode] ?? "mode \(mode)" }
}

/// Where a packet ends up.
public enum PathResult: Sendable, Hashable {
    /// Delivered to a local socket (input), or addressed to the node itself (output).
    case local(RouteLookup)
    /// Sent (output) or forwarded (input) out `device`, via `gateway` when the route has one.
    case sent(RouteLookup, device: String, gateway: IPAddress?)
    /// The kernel refuses it with this errno: no route, an unreachable route, a failed reverse-path check…
    case refused(Errno, reason: String, lookup: RouteLookup?)
    /// An nftables rule or policy dropped it.
    case dropped(by: String)

    public var lookup: RouteLookup? {
        switch self {
        case .local(let l), .sent(let l, _, _): return l
        case .refused(_, _, let l): return l
        case .dropped: return nil
        }
    }

    public var device: String? {
        switch self {
        case .local: return "lo"
        case .sent(_, let device, _): return device
        default: return nil
        }
    }

    public var gateway: IPAddress? { if case .sent(_, _, let g) = self { return g } else { return nil } }
    public var errno: Errno? { if case .refused(let e, _, _) = self { return e } else { return nil } }
}

/// The packet-level engine doctor's answers come from: nftables at the hook, then the kernel's route lookup and, for
/// packets that came in, its reverse-path check — in the kernel's order (ip_route_input_slow,
/// ip_route_output_key_hash, ip_route_me_harder).
public struct PacketPath: Sendable {
    public let state: NodeState
    public let routes: RouteEvaluator
    public let nft: NftEvaluator

    public init(_ state: NodeState) {
        self.state = state
        routes = RouteEvaluator(state)
        nft = NftEvaluator(state.nftables, localAddresses: state.localAddresses)
    }

    /// A packet the node sends from a local socket (`source` must be one of its addresses): the socket's own route
    /// (its device is what `oifname` matches in output chains), the output chains, and — when a route-type chain
    /// changed the mark — the route again with the new mark.
    public func output(_ packet: NftPacket, uid: UInt32 = 0) -> (first: RouteLookup?, trace: NftTrace, final: PathResult, mark: UInt32) {
        var packet = packet
        let initialMark = packet.mark
        guard state.isLocal(packet.source) else {
            let trace = NftTrace(hook: "output", markBefore: initialMark, markAfter: initialMark, ctMarkAfter: packet.ctMark)
            return (nil, trace, .refused(.networkUnreachable,
                                         reason: "\(packet.source) is not an address of this node: a local socket cannot send from it (for a forwarded packet, give --iif)",
                                         lookup: nil), initialMark)
        }
        let first = routes.lookup(key(packet, inputInterface: "lo", mark: initialMark))
        packet.outputInterface = first.outcome.device
        let trace = nft.run(hook: "output", &packet)
        if let by = trace.droppedBy { return (first, trace, .dropped(by: by), initialMark) }
        var lookup = first
        var mark = initialMark
        if let reroute = trace.rerouteMark, reroute != initialMark {
            mark = reroute
            lookup = routes.lookup(key(packet, inputInterface: "lo", mark: reroute))
        }
        return (first, trace, result(of: lookup), mark)
    }

    /// A packet arriving on `packet.inputInterface`: the prerouting chains, then the input route with its
    /// reverse-path check.
    public func input(_ packet: NftPacket) -> (trace: NftTrace, final: PathResult, reversePath: ReversePathCheck?, mark: UInt32) {
        var packet = packet
        let interface = packet.inputInterface ?? "lo"
        let trace = nft.run(hook: "prerouting", &packet)
        if let by = trace.droppedBy { return (trace, .dropped(by: by), nil, packet.mark) }
        let (final, check) = route(arriving: key(packet, inputInterface: interface, mark: packet.mark))
        return (trace, final, check, packet.mark)
    }

    /// The input route of a packet that came in on `key.inputInterface` with `key.mark` (after prerouting), as
    /// ip_route_input_slow decides it: local delivery or forwarding, with the reverse-path check (nil when the
    /// packet is refused before one is made).
    public func route(arriving key: FlowKey) -> (result: PathResult, reversePath: ReversePathCheck?) {
        let interface = key.inputInterface
        let lookup = routes.lookup(key)
        switch lookup.outcome {
        case .failed(let errno, _, _, let reason):
            // ip_route_input_slow: a failed lookup on an interface without forwarding is "no route to host".
            let forwarding = key.destination.family == .inet6 ? state.forwards6(on: interface)
                : state.setting("forwarding", on: interface) != 0
            return (.refused(forwarding ? errno : .noRouteToHost,
                             reason: forwarding ? reason : "\(reason); \(interface) does not forward", lookup: lookup), nil)
        case .route(let route, _, _):
            if route.type == .local {
                let check = reversePath(key, forwardDevice: nil)
                if !check.passed { return (.refused(refusal(check), reason: check.reason, lookup: lookup), check) }
                return (.local(lookup), check)
            }
            let forwards = key.destination.family == .inet6 ? state.forwards6(on: interface) : state.setting("forwarding", on: interface) != 0
            guard forwards else {
                return (.refused(.noRouteToHost, reason: "\(interface) does not forward (net.\(key.destination.family == .inet6 ? "ipv6" : "ipv4").conf.\(interface).forwarding=0)", lookup: lookup),
                        nil)
            }
            guard route.type == .unicast else {
                return (.refused(.invalidArgument, reason: "a \(route.type) route cannot forward (martian destination)", lookup: lookup), nil)
            }
            let check = reversePath(key, forwardDevice: route.device)
            if !check.passed { return (.refused(refusal(check), reason: check.reason, lookup: lookup), check) }
            return (result(of: lookup), check)
        }
    }

    /// fib_validate_source.
    public func reversePath(_ key: FlowKey, forwardDevice: String?) -> ReversePathCheck {
        let interface = key.inputInterface
        if key.source.family == .inet6 {
            // IPv6 has no rp_filter: its reverse-path check, when there is one, is an nftables fib rule (evaluated,
            // or reported as not evaluated, with the prerouting chains).
            let rule = state.ipv6ReversePathRule
            return ReversePathCheck(mode: 0, ownValue: "-", allValue: "-", srcValidMark: false, mark: 0, lookup: nil, passed: true,
                                    reason: rule.map { "IPv6 has no rp_filter; the nftables rule \($0.family) \($0.table) \($0.chain) handle \($0.handle) (\($0.text)) is its reverse-path check" }
                                        ?? "IPv6 has no rp_filter, and no nftables fib rule checks the way back: no reverse-path check")
        }
        let mode = state.setting("rp_filter", on: interface)
        let values = state.settingValues("rp_filter", on: interface)
        let validMark = state.setting("src_valid_mark", on: interface) != 0
        let acceptLocal = state.setting("accept_local", on: interface) != 0
        let mark = validMark ? key.mark : 0
        var check = ReversePathCheck(mode: mode, ownValue: values.own, allValue: values.all, srcValidMark: validMark, mark: mark,
                                     lookup: nil, passed: true, reason: "")
        let modeText = check.modeText
        if mode == 0 && !state.hasCustomRules {
            if !acceptLocal && state.isLocal(key.source) {
                check.passed = false
                check.martian = true
                check.reason = "the source \(key.source) is an address of this node (martian source)"
            } else {
                check.reason = "rp_filter is off on \(interface): no reverse-path check"
            }
            return check
        }
        if mode == 0 && acceptLocal {
            check.reason = "rp_filter is off and accept_local is set on \(interface)"
            return check
        }
        var reverse = FlowKey(source: key.destination, destination: key.source, inputInterface: forwardDevice ?? "lo",
                              mark: mark, ipProtocol: key.ipProtocol, sourcePort: key.destinationPort, destinationPort: key.sourcePort)
        reverse.uid = 0
        let lookup = routes.lookup(reverse)
        check.lookup = lookup
        let markText = validMark ? "with the packet's mark \(hex(key.mark)) (src_valid_mark=1)" : "without the packet's mark (src_valid_mark=0)"
        guard let route = lookup.outcome.route else {
            check.passed = mode == 0
            check.reason = mode == 0
                ? "rp_filter is off on \(interface): no route back to \(key.source), which does not matter"
                : "rp_filter is \(modeText) on \(interface) and there is no route back to \(key.source) \(markText): dropped"
            return check
        }
        if route.type != .unicast && !(route.type == .local && acceptLocal) {
            check.passed = false
            check.martian = true
            check.reason = "the source \(key.source) routes as \(route.type) (an address of this node?): martian source, dropped"
            return check
        }
        let device = route.type == .local ? "lo" : (route.sharedDevice ?? "?")
        let via = "\(route.destination)" + (route.gateway.map { " via \($0)" } ?? "") + " dev \(device) in table \(RouteTable.name(lookup.outcome.table ?? 0))"
        if device == interface {
            check.reason = mode == 0
                ? "rp_filter is off on \(interface)"
                : "rp_filter is \(modeText) on \(interface): the way back to \(key.source) \(markText) is \(via), the interface it came in on: passes"
            return check
        }
        if !state.addresses.contains(where: { $0.interface == interface }) {
            check.passed = mode == 0
            check.reason = "\(interface) has no IPv4 address: " + (mode == 0 ? "accepted" : "dropped")
            return check
        }
        switch mode {
        case 1:
            check.passed = false
            check.reason = "rp_filter is strict on \(interface) (all=\(values.all), \(interface)=\(values.own)): the way back to \(key.source) \(markText) is \(via), not \(interface): dropped"
        case 0:
            check.reason = "rp_filter is off on \(interface): the way back to \(key.source) is \(via), which does not matter"
        default:
            check.reason = "rp_filter is loose on \(interface): a way back to \(key.source) exists (\(via)): passes"
        }
        return check
    }

    /// The errno the kernel answers for a packet that failed `check`.
    func refusal(_ check: ReversePathCheck) -> Errno {
        check.martian ? .invalidArgument : KernelRelease.reversePathErrno(on: state.kernel)
    }

    func key(_ packet: NftPacket, inputInterface: String, mark: UInt32) -> FlowKey {
        FlowKey(source: packet.source, destination: packet.destination, inputInterface: inputInterface, mark: mark,
                ipProtocol: packet.ipProtocol, sourcePort: packet.sourcePort, destinationPort: packet.destinationPort)
    }

    func result(of lookup: RouteLookup) -> PathResult {
        switch lookup.outcome {
        case .route(let route, _, _):
            if route.type == .local { return .local(lookup) }
            // A multipath route: the kernel hashes each flow onto one next hop; doctor names the first.
            return .sent(lookup, device: route.sharedDevice ?? "?", gateway: route.gateway ?? route.gateways.first)
        case .failed(let errno, _, _, let reason):
            return .refused(errno, reason: reason, lookup: lookup)
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
