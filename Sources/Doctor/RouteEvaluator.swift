import Netlink
import SystemPackage

/// The keys of one route lookup, as the kernel's flowi4 holds them.
public struct FlowKey: Sendable, Hashable, CustomStringConvertible {
    public var source: IPAddress
    public var destination: IPAddress
    /// The interface the packet arrived on; "lo" for a packet the node sends itself (LOOPBACK_IFINDEX).
    public var inputInterface: String
    /// A socket bound to a device (SO_BINDTODEVICE); nil: none (rules with `oif` then do not match).
    public var outputInterface: String?
    public var mark: UInt32
    public var ipProtocol: UInt8?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// The sending socket's owner (uid ranges); root for the kernel's own answer.
    public var uid: UInt32 = 0
    public var tos: UInt8 = 0

    public init(source: IPAddress, destination: IPAddress, inputInterface: String = "lo", outputInterface: String? = nil,
                mark: UInt32 = 0, ipProtocol: UInt8? = nil, sourcePort: UInt16? = nil, destinationPort: UInt16? = nil) {
        self.source = source
        self.destination = destination
        self.inputInterface = inputInterface
        self.outputInterface = outputInterface
        self.mark = mark
        self.ipProtocol = ipProtocol
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
    }

    public var description: String {
        var text = "\(source) → \(destination)"
        if let ipProtocol { text += " \(RuleDetails.protocolName(ipProtocol))" }
        if let sourcePort, let destinationPort { text += " \(sourcePort) → \(destinationPort)" }
        text += inputInterface == "lo" ? " (sent by the node)" : " in on \(inputInterface)"
        return text + " mark \(hex(mark))"
    }
}

/// One selector of a rule, against the packet.
public struct SelectorCheck: Sendable, Hashable {
    /// As `ip rule` writes it: "from 192.168.1.1", "fwmark 0x2000000/0xe000000".
    public var selector: String
    public var matches: Bool
    /// What the packet has: "source 192.168.2.1", "mark 0x0", "locally generated (iif lo)".
    public var packet: String
}

/// What a rule's table gave.
public enum TableOutcome: Sendable, Hashable {
    /// This route decides.
    case route(Route)
    /// The table has no route for the destination (or does not exist): the walk goes on.
    case noRoute(table: UInt32, empty: Bool)
    /// A `throw` route: the walk goes on.
    case thrown(Route)
    /// The route has a prefix length ≤ the rule's suppress_prefixlength: the walk goes on.
    case suppressed(Route, length: UInt32)
    /// unreachable, prohibit or blackhole route: the lookup ends with this error.
    case refused(Route, Errno)
}

/// One rule in the walk.
public struct RuleStep: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable {
        case matched, skipped
        /// After the rule that decided.
        case notReached = "not reached"
    }
    public var rule: DetailedRule
    public var outcome: Outcome
    public var checks: [SelectorCheck]
    public var table: TableOutcome?
    /// Why it was skipped beyond its selectors ("goto target 1000 does not exist", "no VRF").
    public var note: String?
}

/// The result of a route lookup.
public enum RouteOutcome: Sendable, Hashable {
    /// The route found, the rule and table that gave it.
    case route(Route, rule: DetailedRule, table: UInt32)
    /// The lookup failed with this errno (ENETUNREACH when every rule fell through); the rule and route that ended it,
    /// when one did.
    case failed(Errno, rule: DetailedRule?, route: Route?, reason: String)

    public var route: Route? { if case .route(let r, _, _) = self { return r } else { return nil } }
    public var rule: DetailedRule? {
        switch self {
        case .route(_, let rule, _): return rule
        case .failed(_, let rule, _, _): return rule
        }
    }
    public var table: UInt32? { if case .route(_, _, let t) = self { return t } else { return nil } }
    /// The device a packet leaves by: the route's, or lo for local delivery.
    public var device: String? {
        guard let route else { return nil }
        return route.type == .local ? "lo" : route.sharedDevice
    }
    public var errno: Errno? { if case .failed(let e, _, _, _) = self { return e } else { return nil } }
}

public struct RouteLookup: Sendable, Hashable {
    public var key: FlowKey
    public var steps: [RuleStep]
    public var outcome: RouteOutcome
}

/// The kernel's policy routing, step by step (net/core/fib_rules.c fib_rules_lookup, net/ipv4/fib_rules.c, the
/// FIB's longest-prefix match): every rule in order, selector by selector, each table consulted and what it gave.
/// Pure: works on a `NodeState`.
public struct RouteEvaluator: Sendable {
    public let state: NodeState

    public init(_ state: NodeState) { self.state = state }

    public func lookup(_ key: FlowKey) -> RouteLookup {
        var steps: [RuleStep] = []
        var outcome: RouteOutcome?
        // The kernel keeps a rule list per family: an IPv6 lookup walks `ip -6 rule`.
        let rules = state.rules(family: key.destination.family)
        var index = 0
        var visited = 0
        walk: while index < rules.count, visited < rules.count * 2 + 8 {
            visited += 1
            let entry = rules[index]
            var (checks, matched, note) = match(entry, key)
            if !matched {
                steps.append(RuleStep(rule: entry, outcome: .skipped, checks: checks, table: nil, note: note))
                index += 1
                continue
            }
            let rule = entry.rule
            switch rule.action {
            case .goto:
                // The kernel jumps to the first rule with the target's priority; without one the rule is skipped.
                guard let target = entry.details.gotoTarget,
                      let destination = rules.firstIndex(where: { ($0.rule.priority ?? 0) == target }), destination > index else {
                    note = "goto target \(entry.details.gotoTarget.map(String.init) ?? "?") does not exist: skipped"
                    steps.append(RuleStep(rule: entry, outcome: .skipped, checks: checks, table: nil, note: note))
                    index += 1
                    continue
                }
                steps.append(RuleStep(rule: entry, outcome: .matched, checks: checks, table: nil, note: "goto \(target)"))
                // Rules jumped over are not evaluated.
                for skipped in rules[(index + 1)..<destination] {
                    steps.append(RuleStep(rule: skipped, outcome: .notReached, checks: [], table: nil, note: "jumped over"))
                }
                index = destination
                continue
            case .nop:
                steps.append(RuleStep(rule: entry, outcome: .matched, checks: checks, table: nil, note: "nop: the walk goes on"))
                index += 1
                continue
            case .unreachable, .prohibit, .blackhole:
                let errno: Errno = rule.action == .unreachable ? .networkUnreachable
                    : rule.action == .prohibit ? .permissionDenied : .invalidArgument
                steps.append(RuleStep(rule: entry, outcome: .matched, checks: checks, table: nil, note: nil))
                outcome = .failed(errno, rule: entry, route: nil, reason: "rule \(rule.priority ?? 0) is \(rule.action == .unreachable ? "an" : "a") \(rule.action) rule")
                index += 1
                break walk
            case .lookup:
                let table = tableLookup(rule.table, key)
                var result = table
                if case .route(let route) = table, let length = rule.suppressPrefixLength, route.destination.length <= Int(length) {
                    result = .suppressed(route, length: length)
                }
                steps.append(RuleStep(rule: entry, outcome: .matched, checks: checks, table: result, note: nil))
                index += 1
                switch result {
                case .route(let route):
                    outcome = .route(route, rule: entry, table: rule.table)
                    break walk
                case .refused(let route, let errno):
                    outcome = .failed(errno, rule: entry, route: route, reason: "\(route.type) route \(route.destination) in table \(RouteTable.name(rule.table))")
                    break walk
                case .noRoute, .thrown, .suppressed:
                    continue
                }
            }
        }
        for entry in rules.dropFirst(index) {
            steps.append(RuleStep(rule: entry, outcome: .notReached, checks: [], table: nil, note: nil))
        }
        return RouteLookup(key: key, steps: steps, outcome: outcome
                           ?? .failed(.networkUnreachable, rule: nil, route: nil, reason: "every rule fell through: no route"))
    }

    /// One table's answer (fib_table_lookup): the longest prefix, then the lowest metric.
    public func tableLookup(_ table: UInt32, _ key: FlowKey) -> TableOutcome {
        let routes = state.routes(inTable: table, family: key.destination.family)
        let candidates = routes.filter { $0.destination.contains(key.destination) }
            .sorted { ($0.destination.length, -Int64($0.effectiveMetric)) > ($1.destination.length, -Int64($1.effectiveMetric)) }
        for route in candidates {
            // A socket bound to a device only takes routes through it.
            if let oif = key.outputInterface, route.device != nil, route.device != oif { continue }
            switch route.type {
            case .throw: return .thrown(route)
            case .unreachable: return .refused(route, .noRouteToHost)
            case .prohibit: return .refused(route, .permissionDenied)
            case .blackhole: return .refused(route, .invalidArgument)
            default: return .route(route)
            }
        }
        return .noRoute(table: table, empty: routes.isEmpty)
    }

    /// fib_rule_match and fib4_rule_match: every selector, and whether all hold (inverted by `not`).
    func match(_ entry: DetailedRule, _ key: FlowKey) -> ([SelectorCheck], Bool, String?) {
        let rule = entry.rule, details = entry.details
        var checks: [SelectorCheck] = []
        var note: String?
        func origin() -> String { key.inputInterface == "lo" ? "locally generated (iif lo)" : "iif \(key.inputInterface)" }
        if let iif = rule.inputInterface {
            let ok = !details.inputInterfaceDetached && iif == key.inputInterface
            checks.append(SelectorCheck(selector: "iif \(iif)" + (details.inputInterfaceDetached ? " [detached]" : ""), matches: ok, packet: origin()))
        }
        if let oif = rule.outputInterface {
            let ok = !details.outputInterfaceDetached && oif == key.outputInterface
            checks.append(SelectorCheck(selector: "oif \(oif)" + (details.outputInterfaceDetached ? " [detached]" : ""), matches: ok,
                                        packet: key.outputInterface.map { "bound to \($0)" } ?? "no socket device (oif 0)"))
        }
        if let mark = rule.fwmark {
            let mask = rule.fwmask ?? UInt32.max
            let ok = (mark ^ key.mark) & mask == 0
            checks.append(SelectorCheck(selector: "fwmark \(hex(mark))" + (rule.fwmask.map { "/\(hex($0))" } ?? ""), matches: ok,
                                        packet: "mark \(hex(key.mark))"))
        }
        if details.l3mdev {
            checks.append(SelectorCheck(selector: "l3mdev", matches: false, packet: "no VRF device"))
            note = "l3mdev rules match only packets of a VRF"
        }
        if let uids = details.uidRange {
            checks.append(SelectorCheck(selector: "uidrange \(uids.lowerBound)-\(uids.upperBound)", matches: uids.contains(key.uid),
                                        packet: "uid \(key.uid)"))
        }
        if let source = rule.source {
            checks.append(SelectorCheck(selector: "from \(source)", matches: source.contains(key.source), packet: "source \(key.source)"))
        }
        if let destination = rule.destination {
            checks.append(SelectorCheck(selector: "to \(destination)", matches: destination.contains(key.destination),
                                        packet: "destination \(key.destination)"))
        }
        if details.tos != 0 {
            checks.append(SelectorCheck(selector: "tos 0x\(String(details.tos, radix: 16))", matches: details.tos == key.tos,
                                        packet: "tos 0x\(String(key.tos, radix: 16))"))
        }
        if let proto = details.ipProtocol {
            checks.append(SelectorCheck(selector: "ipproto \(RuleDetails.protocolName(proto))", matches: proto == key.ipProtocol,
                                        packet: key.ipProtocol.map { "protocol \(RuleDetails.protocolName($0))" } ?? "no protocol given"))
        }
        if let ports = details.sourcePorts {
            checks.append(SelectorCheck(selector: "sport \(RuleDetails.range(ports))", matches: key.sourcePort.map(ports.contains) ?? false,
                                        packet: key.sourcePort.map { "source port \($0)" } ?? "no source port given"))
        }
        if let ports = details.destinationPorts {
            checks.append(SelectorCheck(selector: "dport \(RuleDetails.range(ports))", matches: key.destinationPort.map(ports.contains) ?? false,
                                        packet: key.destinationPort.map { "destination port \($0)" } ?? "no destination port given"))
        }
        let all = checks.allSatisfy(\.matches)
        if rule.invert {
            checks.append(SelectorCheck(selector: "not", matches: !all, packet: all ? "the selectors match: inverted" : "the selectors do not match: inverted"))
            return (checks, !all, note)
        }
        return (checks, all, note)
    }
}

extension RuleDetails {
    static func range(_ r: ClosedRange<UInt16>) -> String {
        r.lowerBound == r.upperBound ? String(r.lowerBound) : "\(r.lowerBound)-\(r.upperBound)"
    }
}

func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
