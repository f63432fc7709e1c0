import Netlink
import ReturnRouting
import SystemPackage

/// How fix commands address the node, and what doctor checks it against.
public struct DoctorRequest: Sendable {
    /// Where the services and their interfaces came from.
    public enum PolicySource: Sendable, Hashable {
        case file(String)
        case lab(String)
        /// The record of the last apply (and what the kernel has of it).
        case record
        /// The global addresses on lo: interfaces and gateways unknown.
        case addresses
    }

    public var policy: Policy?
    public var source: PolicySource
    /// `ip -n NS` (or `ip`) for fix commands.
    public var ip: [String]
    /// `ip netns exec NS sysctl -w` (or `sysctl -w`).
    public var sysctl: [String]
    /// returnpath's target options for fix commands: `--lab seed`, `--netns NS`, nothing for the current namespace.
    public var returnpathTarget: [String]
    /// The machine's own namespace: systemd-networkd is checked.
    public var isHostNamespace: Bool
    /// Service ports (from a lab's topology), so that rules on ports can be evaluated.
    public var servicePorts: [IPAddress: UInt16]
    /// Filesystem root for the systemd-networkd check.
    public var systemRoot: String

    public init(policy: Policy?, source: PolicySource, ip: [String], sysctl: [String], returnpathTarget: [String],
                isHostNamespace: Bool, servicePorts: [IPAddress: UInt16] = [:], systemRoot: String = "/") {
        self.policy = policy
        self.source = source
        self.ip = ip
        self.sysctl = sysctl
        self.returnpathTarget = returnpathTarget
        self.isHostNamespace = isHostNamespace
        self.servicePorts = servicePorts
        self.systemRoot = systemRoot
    }
}

/// One row of doctor's table: would a reply from the service to a client behind the interface leave by it?
public struct ReplyCheck: Sendable {
    public enum Verdict: String, Sendable, Encodable {
        case ok, asymmetric, unreachable
        /// The interface the service is announced on is not known (services found on lo only).
        case unknown
    }
    public var service: IPPrefix
    /// The address the checks use for the service (the prefix itself for a host prefix).
    public var address: IPAddress
    /// For a service the node DNATs (a nat chain's `dnat to`): the port, and the backend ADDRESS:PORT. Its reply is
    /// the backend's, forwarded.
    public var port: UInt16?
    public var backend: String?
    /// "192.168.1.1", or "192.168.1.1:3000" for a DNATed port.
    public var label: String { port.map { service.isHost ? address.endpoint(port: $0) : "\(service):\($0)" } ?? service.description }
    public var interface: String?
    public var client: IPAddress
    public var clientPrefix: IPPrefix?
    /// The request (client → service, in on the interface): its prerouting, route and reverse-path check.
    public var requestTrace: NftTrace?
    public var requestResult: PathResult?
    public var reversePath: ReversePathCheck?
    public var requestKernel: KernelAnswer?
    public var requestMark: UInt32
    /// The reply (service → client): the output chains and the route that decides it.
    public var replyTrace: NftTrace
    public var replyResult: PathResult
    public var replyMark: UInt32
    public var replyKernel: KernelAnswer
    public var verdict: Verdict
    /// Why, in a few words ("via 10.111.220.1 in table main", "request dropped by rp_filter").
    public var reason: String
    /// The deciding rule of the reply.
    public var rule: DetailedRule? { replyResult.lookup?.outcome.rule }
    public var table: UInt32? { replyResult.lookup?.outcome.table }
}

public struct DoctorReport: Sendable {
    /// "rp-seed-node", "(current namespace)".
    public var target: String
    public var source: DoctorRequest.PolicySource
    public var strategy: Strategy?
    public var checks: [ReplyCheck]
    public var findings: [Finding]
    public var notes: [String]

    /// 1 when a finding is an error, else 0.
    public var exitCode: Int32 { findings.contains { $0.severity == .error } ? 1 : 0 }
}

/// doctor's checks of a node: per service and interface it is announced on, the request and the reply simulated in
/// the kernel's order (and asked of the kernel too); then every finding.
public struct Doctor: Sendable {
    public let state: NodeState
    public let request: DoctorRequest
    let path: PacketPath
    let ownership: Ownership
    /// The strategy in force: the record's, else the policy's.
    let strategy: Strategy?

    /// A client address for replies when no client prefix is known (TEST-NET-3, RFC 5737).
    static let genericClient = IPAddress.v4(0xcb00_710a)   // 203.0.113.10
    /// The same for IPv6 (the documentation prefix, RFC 3849): 2001:db8::10.
    static let genericClient6 = IPAddress.v6(0x2001_0db8_0000_0000, 0x10)

    static func genericClient(for family: AddressFamily) -> IPAddress { family == .inet6 ? genericClient6 : genericClient }
    static let clientPort: UInt16 = 40000

    public init(state: NodeState, request: DoctorRequest) {
        self.state = state
        self.request = request
        path = PacketPath(state)
        ownership = state.record?.ownership ?? request.policy?.ownership ?? Ownership()
        strategy = state.record?.strategy ?? request.policy?.strategy
    }

    /// A service announced on an interface (its gateway and clients when known).
    struct Announcement {
        var service: IPPrefix
        var interface: String?
        var gateway: IPAddress?
        var clients: [IPPrefix]
        /// A port the node DNATs for this service.
        var port: UInt16? = nil
    }

    /// (address, port) pairs nat prerouting chains DNAT: `ip daddr A tcp dport P … dnat to …`.
    func dnatEntries() -> [(IPAddress, UInt16)] {
        var entries: [(IPAddress, UInt16)] = []
        for chain in state.nftables.baseChains(hook: "prerouting") where chain.type == "nat" {
            for rule in state.nftables.rules(of: chain) {
                guard rule.statements.contains(where: { if case .dnat = $0 { return true } else { return false } }) else { continue }
                var address: IPAddress?, port: UInt16?
                for statement in rule.statements {
                    guard case .match("==", let left, let right) = statement else { continue }
                    if case .payload(let family, "daddr") = left, family == "ip" || family == "ip6", case .string(let text) = right { address = IPAddress(text) }
                    if case .payload(let proto, "dport") = left, proto == "tcp" || proto == "th", case .number(let n) = right {
                        port = UInt16(exactly: n)
                    }
                }
                if let address, let port, !entries.contains(where: { $0 == (address, port) }) { entries.append((address, port)) }
            }
        }
        return entries
    }

    /// Adds a row per DNATed port of each announced service.
    func withDNAT(_ announcements: [Announcement]) -> [Announcement] {
        let entries = dnatEntries()
        guard !entries.isEmpty else { return announcements }
        var result = announcements
        for a in announcements where a.interface != nil {
            for (address, port) in entries where a.service.contains(address) {
                var extra = a
                extra.service = IPPrefix(host: address)
                extra.port = port
                result.append(extra)
            }
        }
        return result
    }

    public func run() throws(DoctorError) -> DoctorReport {
        var notes: [String] = state.notes
        let (found, reconstructed) = self.announcements(&notes)
        let announcements = withDNAT(found)
        var checks: [ReplyCheck] = []
        let socket: NetlinkSocket
        do { socket = try NetlinkSocket(namespace: state.namespace) } catch { throw .netlink(error) }
        for announcement in announcements {
            checks.append(check(announcement, socket: socket))
        }
        if announcements.contains(where: { $0.service.family == .inet6 }) {
            // IPv6 has no rp_filter: an nftables fib rule is its reverse-path check.
            if let rule = state.ipv6ReversePathRule {
                notes.append("IPv6 reverse-path check: nft \(rule.family) \(rule.table) \(rule.chain) handle \(rule.handle) (\(rule.text)) drops IPv6 requests whose source has no route back by the interface they came in on (IPv6 has no rp_filter sysctl; this is its equivalent)")
            } else {
                notes.append("IPv6 has no rp_filter, and no nftables rule (fib saddr . iif oif missing drop) checks IPv6 sources: IPv6 requests are not reverse-path checked here")
            }
        }
        var findings: [Finding] = []
        let validMark = srcValidMarkFindings(announcements, checks: checks)
        findings += validMark.findings
        findings += rowFindings(checks, announcements, explained: validMark.interfaces)
        findings += gatewayFindings()
        findings += offLinkGatewayFindings()
        findings += ruleInterfaceFindings(announcements)
        findings += tableFindings(announcements)
        findings += duplicateFindings()
        findings += foreignFirstFindings(checks)
        findings += markOverlapFindings()
        findings += driftFindings(reconstructed)
        findings += bandFindings()
        findings += networkdFindings()
        findings += nftFindings(checks)
        if let problem = state.recordProblem {
            findings.append(Finding(id: FindingID.recordUnreadable, severity: .error,
                                    message: "the record of the last apply cannot be read: \(problem)",
                                    objects: [], fix: nil, hint: "fix or move the file; it holds the original sysctl values remove restores"))
        }
        if announcements.isEmpty {
            findings.append(Finding(id: FindingID.servicesUnknown, severity: .warning,
                                    message: "no services to check: no policy, no record of an apply, and no global address on lo",
                                    hint: "give -f POLICY.yaml (or --lab NAME)"))
        } else if announcements.contains(where: { $0.interface == nil }) {
            findings.append(Finding(id: FindingID.servicesUnknown, severity: .info,
                                    message: "the services are the global addresses on lo; the interfaces they are announced on and their gateways are unknown, so replies cannot be judged — only shown",
                                    hint: "give -f POLICY.yaml, or watch real traffic: returnpath probe --passive \(request.returnpathTarget.joined(separator: " "))"))
        }
        findings.sort { ($0.severity, $0.id) < ($1.severity, $1.id) }
        return DoctorReport(target: "\(state.namespace)", source: request.source, strategy: strategy, checks: checks,
                            findings: findings, notes: notes)
    }

    // MARK: what to check

    /// The services and their interfaces: from the policy, else the record and what the kernel has of it, else lo.
    /// Also the policy the record implies (for drift), when there is no policy.
    func announcements(_ notes: inout [String]) -> ([Announcement], Policy?) {
        let lo = state.addresses.filter { $0.interface == "lo" && $0.scope == .universe && !$0.prefix.address.isLoopback }
            .map { IPPrefix(host: $0.prefix.address) }
        if let policy = request.policy {
            var result: [Announcement] = []
            for entry in policy.interfaces {
                let services = entry.services.isEmpty ? lo : entry.services
                if entry.services.isEmpty && !lo.isEmpty {
                    notes.append("\(entry.name) lists no services: checking the addresses on lo (\(lo.map(\.description).joined(separator: ", ")))")
                }
                for service in services {
                    // Each family has its gateway and clients: an IPv6 service replies to IPv6 clients via gateway6.
                    let clients = entry.clients.filter { $0.family == service.family }
                    result.append(Announcement(service: service, interface: entry.name, gateway: entry.gateway(for: service.family),
                                               clients: clients))
                }
            }
            return (result, nil)
        }
        if let record = state.record, !record.slots.isEmpty {
            let implied = impliedPolicy(record, lo: lo, &notes)
            var result: [Announcement] = []
            for entry in implied.interfaces {
                for service in entry.services.isEmpty ? lo : entry.services {
                    let gateway = entry.gateway(for: service.family)
                    result.append(Announcement(service: service, interface: entry.name,
                                               gateway: gateway == .v4(0) ? nil : gateway,
                                               clients: entry.clients.filter { $0.family == service.family }))
                }
            }
            return (result, implied)
        }
        notes.append("no policy and no record of an apply: the services are the global addresses on lo")
        return (lo.map { Announcement(service: $0, interface: nil, gateway: nil, clients: []) }, nil)
    }

    /// The policy the record and the kernel imply: the record's interfaces (by slot), each one's gateway from its
    /// table's default route (0.0.0.0 when it is gone), its services from returnpath's own objects (mark and
    /// ingress: the nftables sets; source: the from-rules; otherwise none), its clients from static routes.
    func impliedPolicy(_ record: AppliedRecord, lo: [IPPrefix], _ notes: inout [String]) -> Policy {
        let own = record.ownership
        var interfaces: [Policy.Interface] = []
        for (name, slot) in record.slots.sorted(by: { $0.value < $1.value }) {
            let table = own.tableBase + UInt32(slot)
            let gateway = state.routes(inTable: table, family: .inet).first { $0.destination.isDefault && $0.proto == own.routeProtocol }?.gateway
            let gateway6 = state.routes(inTable: table, family: .inet6).first { $0.destination.isDefault && $0.proto == own.routeProtocol }?.gateway
            var services: [IPPrefix] = []
            switch record.strategy {
            case .mark?, .ingress?:
                // mark's sets; ingress keeps the same sets (of the services listed on one interface) for its
                // by-source fallback.
                for set in ["svc_\(slot)", "svcnet_\(slot)", "svc6_\(slot)", "svcnet6_\(slot)"] {
                    if let collection = state.nftables.collection(family: "inet", table: "returnpath", name: set) {
                        services += collection.elements.compactMap { element -> IPPrefix? in
                            switch element {
                            case .string(let s): return try? IPPrefix(parsing: s)
                            case .prefix(let a, let l): return IPAddress(a).flatMap { try? IPPrefix($0, length: l) }
                            default: return nil
                            }
                        }
                    }
                }
            case .source?:
                services = state.rules.filter { $0.rule.proto == own.routeProtocol && own.ownsPriority($0.rule.priority ?? 0)
                                                && $0.rule.table == table }.compactMap(\.rule.source)
            default:
                services = []
            }
            let clients = record.strategy == .static
                ? state.routes(inTable: own.tableBase).filter { $0.device == name && $0.proto == own.routeProtocol }.map(\.destination)
                : []
            // An interface with IPv6 services (or an IPv6 default route in its table) has a gateway6; without a
            // default route its gateway is unknown (0.0.0.0 / ::), as for IPv4.
            let hasV6 = gateway6 != nil || services.contains { $0.family == .inet6 }
            let hasV4 = gateway != nil || services.contains { $0.family == .inet } || !hasV6
            if hasV4 && gateway == nil { notes.append("table \(table) of \(name) has no default route: its gateway is unknown") }
            if hasV6 && gateway6 == nil { notes.append("table \(table) of \(name) has no IPv6 default route: its gateway6 is unknown") }
            let first: IPAddress = hasV4 ? (gateway ?? .v4(0)) : (gateway6 ?? .v6(0, 0))
            interfaces.append(Policy.Interface(name: name, gateway: first, gateway6: hasV4 && hasV6 ? (gateway6 ?? .v6(0, 0)) : nil,
                                               services: services, clients: clients))
        }
        notes.append("no policy given: checking the interfaces of the last apply (\(interfaces.map(\.name).joined(separator: ", ")), strategy \(record.strategy?.rawValue ?? "unknown")) and the services returnpath's objects name")
        var policy = Policy(name: "recorded", strategy: record.strategy, interfaces: interfaces)
        policy.ownership = own
        return policy
    }

    static func representative(_ prefix: IPPrefix) -> IPAddress {
        if prefix.isHost { return prefix.address }
        if case .v4(let v) = prefix.network.address { return .v4(v + 1) }
        if case .v6(let high, let low) = prefix.network.address { return .v6(high, low + 1) }
        return prefix.address
    }

    /// The request and the reply for one announcement.
    func check(_ a: Announcement, socket: NetlinkSocket) -> ReplyCheck {
        let address = Self.representative(a.service)
        let clientPrefix = a.clients.first
        let client = clientPrefix.map(Self.representative) ?? Self.genericClient(for: address.family)
        let port = a.port ?? request.servicePorts[address]
        var requestTrace: NftTrace?, requestResult: PathResult?, reverse: ReversePathCheck?, requestKernel: KernelAnswer?
        var requestMark: UInt32 = 0, ctMark: UInt32 = 0
        var forwarded: (backend: IPAddress, port: UInt16?, device: String)?
        if let interface = a.interface {
            var incoming = NftPacket(source: client, destination: address, ipProtocol: 6, sourcePort: Self.clientPort,
                                     destinationPort: port, inputInterface: interface)
            let input = path.input(incoming)
            requestTrace = input.trace
            requestResult = input.final
            reverse = input.reversePath
            requestMark = input.mark
            ctMark = input.trace.ctMarkAfter
            incoming.mark = input.mark
            // The route was looked up for the translated destination, when a nat chain DNATed it.
            let destination = input.trace.dnat?.address ?? address
            let destinationPort = input.trace.dnat.map { $0.port ?? port } ?? port
            let requestQuery = RouteQuery(destination: destination, source: client, inputInterface: interface, mark: input.mark,
                                          ipProtocol: 6, sourcePort: Self.clientPort, destinationPort: destinationPort)
            requestKernel = Explainer.compare(query: requestQuery, expected: input.final) { () throws(NetlinkError) -> RouteDecision in
                try socket.lookup(requestQuery)
            }
            if let dnat = input.trace.dnat, case .sent(_, let device, _) = input.final {
                forwarded = (dnat.address, dnat.port ?? port, device)
            }
        }
        if let forwarded {
            // A DNATed request went on to its backend: the reply is the backend's, arriving on that device, routed
            // (forwarded) before conntrack puts the service address back.
            let reply = NftPacket(source: forwarded.backend, destination: client, ipProtocol: 6, sourcePort: forwarded.port,
                                  destinationPort: Self.clientPort, inputInterface: forwarded.device, ctMark: ctMark,
                                  ctState: "established", ctDirection: "reply")
            let input = path.input(reply)
            let query = RouteQuery(destination: client, source: forwarded.backend, inputInterface: forwarded.device, mark: input.mark,
                                   ipProtocol: 6, sourcePort: forwarded.port, destinationPort: Self.clientPort)
            let replyKernel = Explainer.compare(query: query, expected: input.final) { () throws(NetlinkError) -> RouteDecision in
                try socket.lookup(query)
            }
            var row = ReplyCheck(service: a.service, address: address, port: port,
                                 backend: forwarded.backend.endpoint(port: forwarded.port ?? 0), interface: a.interface, client: client,
                                 clientPrefix: clientPrefix, requestTrace: requestTrace, requestResult: requestResult, reversePath: reverse,
                                 requestKernel: requestKernel, requestMark: requestMark, replyTrace: input.trace, replyResult: input.final,
                                 replyMark: input.mark, replyKernel: replyKernel, verdict: .unknown, reason: "")
            (row.verdict, row.reason) = verdict(row)
            return row
        }
        let socketMark = state.tcpFwmarkAccept ? requestMark : 0
        let reply = NftPacket(source: address, destination: client, ipProtocol: 6, sourcePort: port, destinationPort: Self.clientPort,
                              mark: socketMark, ctMark: ctMark, ctState: a.interface == nil ? "new" : "established",
                              ctDirection: a.interface == nil ? "original" : "reply")
        let output = path.output(reply)
        let query = RouteQuery(destination: client, source: address, mark: output.mark, ipProtocol: 6, sourcePort: port,
                               destinationPort: Self.clientPort)
        let replyKernel = Explainer.compare(query: query, expected: output.final) { () throws(NetlinkError) -> RouteDecision in
            try socket.lookup(query)
        }
        var row = ReplyCheck(service: a.service, address: address, port: a.port, backend: nil, interface: a.interface, client: client,
                             clientPrefix: clientPrefix,
                             requestTrace: requestTrace, requestResult: requestResult, reversePath: reverse,
                             requestKernel: requestKernel, requestMark: requestMark, replyTrace: output.trace,
                             replyResult: output.final, replyMark: output.mark, replyKernel: replyKernel, verdict: .unknown, reason: "")
        (row.verdict, row.reason) = verdict(row)
        return row
    }

    func verdict(_ row: ReplyCheck) -> (ReplyCheck.Verdict, String) {
        if let result = row.requestResult {
            switch result {
            case .refused(let errno, let reason, _): return (.unreachable, "the request is refused: \(reason) (\(errno))")
            case .dropped(let by): return (.unreachable, "the request is dropped by nftables: \(by)")
            case .sent(_, let device, _):
                if row.backend == nil { return (.unreachable, "the request is forwarded out \(device): \(row.address) is not this node's") }
            case .local: break
            }
        }
        switch row.replyResult {
        case .sent(_, let device, let gateway):
            if let gateway, state.isLocal(gateway) {
                return (.unreachable, "the reply's gateway \(gateway) is this node's own address")
            }
            guard let interface = row.interface else { return (.unknown, "leaves by \(device)") }
            return device == interface ? (.ok, "") : (.asymmetric, "leaves by \(device), not \(interface)")
        case .local: return (.unreachable, "the client address \(row.client) is local")
        case .refused(let errno, let reason, _): return (.unreachable, "\(reason) (\(errno))")
        case .dropped(let by): return (.unreachable, "the reply is dropped by nftables: \(by)")
        }
    }

    // MARK: fix commands

    func ipCommand(_ words: [String], family: AddressFamily = .inet) -> String {
        (request.ip + (family == .inet6 ? ["-6"] : []) + words).joined(separator: " ")
    }
    func sysctlCommand(_ key: String, _ value: String) -> String { (request.sysctl + ["\(key)=\(value)"]).joined(separator: " ") }

    /// `returnpath apply` for this target: its policy file, and the strategy in force when there is one.
    func applyCommand(strategy chosen: Strategy? = nil) -> String {
        var words = ["returnpath", "apply"] + request.returnpathTarget
        switch request.source {
        case .file(let path): words += ["-f", path]
        case .lab: break
        case .record, .addresses: words += ["-f", "POLICY.yaml"]
        }
        if let s = chosen ?? strategy { words += ["--strategy", s.rawValue] }
        return words.joined(separator: " ")
    }

    var applyNeedsPolicy: Bool {
        switch request.source {
        case .record, .addresses: return true
        default: return false
        }
    }

    func ruleArguments(_ rule: DetailedRule) -> [String] { rule.ipArguments.filter { $0 != "[detached]" } }

    func isKernelDefault(_ rule: DetailedRule) -> Bool { NodeState.isKernelDefault(rule) }

    func isOurs(_ rule: DetailedRule) -> Bool {
        rule.rule.proto == ownership.routeProtocol && ownership.ownsPriority(rule.rule.priority ?? 0)
    }

    func isOurs(_ route: Route) -> Bool { route.proto == ownership.routeProtocol && ownership.ownsTable(route.table) }

    var ourRules: [DetailedRule] { state.rules.filter(isOurs) }

    // MARK: findings

    /// `explained`: interfaces whose dropped requests another finding already explains (src_valid_mark).
    func rowFindings(_ checks: [ReplyCheck], _ announcements: [Announcement], explained: Set<String>) -> [Finding] {
        var findings: [Finding] = []
        for row in checks {
            guard let interface = row.interface else { continue }
            let behind = row.clientPrefix.map { "clients behind \(interface) (\($0.cidr))" } ?? "a client behind \(interface)"
            var objects = ["service \(row.label)", "interface \(interface)"]
            if let backend = row.backend { objects.append("DNAT to \(backend)") }
            let from = row.backend.map { "\(row.label) (DNATed to \($0); the backend's replies are forwarded)" } ?? row.address.description
            if let rule = row.rule { objects.append("rule \(rule)") }
            if let route = row.replyResult.lookup?.outcome.route {
                objects.append("route \(route.description)")
            }
            switch row.verdict {
            case .asymmetric:
                let decided = row.rule.map { rule in
                    " — decided by rule \(rule.rule.priority ?? 0) (\(ExplainText.ruleText(rule)))" + (row.table.map { " → table \(RouteTable.name($0))" } ?? "")
                        + (row.replyResult.lookup?.outcome.route.map { ": \(ExplainText.routeText($0))" } ?? "")
                } ?? ""
                var fix = applyCommand()
                if let rule = row.rule, !isOurs(rule), !isKernelDefault(rule) {
                    fix = ipCommand(["rule", "del"] + ruleArguments(rule), family: rule.rule.family) + " && " + fix
                }
                findings.append(Finding(id: FindingID.replyAsymmetric, severity: .error,
                                        message: "replies from \(from) to \(behind) leave by \(row.replyResult.device ?? "?")"
                                            + (row.replyResult.gateway.map { " via \($0)" } ?? "") + decided
                                            + ": the request comes in on \(interface), the reply goes out another way and is lost (or dropped by a stateful firewall or a strict rp_filter on the way)",
                                        objects: objects, fix: fix, hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil))
            case .unreachable:
                if let check = row.reversePath, !check.passed {
                    if explained.contains(interface) { continue }
                    var requestObjects = ["service \(row.label)", "interface \(interface)",
                                          "sysctl net.ipv4.conf.\(interface).rp_filter=\(check.ownValue) (all=\(check.allValue))"]
                    if let reverse = check.lookup, let rule = reverse.outcome.rule { requestObjects.append("rule \(rule)") }
                    if let route = check.lookup?.outcome.route { requestObjects.append("route \(route.description)") }
                    findings.append(Finding(id: FindingID.requestDropped, severity: .error,
                                            message: "requests from \(behind) to \(row.label) never get in: \(check.reason)",
                                            objects: requestObjects,
                                            fix: applyCommand(),
                                            hint: "every returnpath strategy makes the reverse-path check pass; loose mode (rp_filter=2) would too, for every packet"))
                } else {
                    findings.append(Finding(id: FindingID.replyUnreachable, severity: .error,
                                            message: "replies from \(from) to \(behind) cannot leave: \(row.reason)",
                                            objects: objects, fix: applyCommand(),
                                            hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil))
                }
            case .ok, .unknown:
                break
            }
            for answer in [row.requestKernel, row.replyKernel].compactMap({ $0 }) where answer.agrees == false {
                findings.append(Finding(id: FindingID.kernelDisagrees, severity: .error,
                                        message: "doctor's model and the kernel disagree (\(answer.differences.joined(separator: "; "))): trust the kernel's answer and report this",
                                        objects: [answer.command, "kernel: \(answer.answer)"], fix: nil))
            }
        }
        return findings
    }

    /// Routes whose gateway is the node's own address, and policy gateways that are.
    func gatewayFindings() -> [Finding] {
        var findings: [Finding] = []
        for route in state.routes where route.table != RouteTable.local {
            guard let gateway = route.gateway, state.isLocal(gateway) else { continue }
            let right = request.policy?.interfaces.first { $0.name == route.device }?.gateway(for: route.family).flatMap { state.isLocal($0) ? nil : $0 }
            var replacement = route
            replacement.gateway = right
            let fix = right.map { _ in ipCommand(["route", "replace"] + replacement.ipArguments.filter { $0 != "proto" && $0 != route.proto.description }, family: route.family) }
                ?? ipCommand(["route", "del"] + route.ipArguments, family: route.family)
            findings.append(Finding(id: FindingID.gatewayIsLocal, severity: .error,
                                    message: "the route \(route.description) has this node's own address \(gateway) as its gateway (the POC's typo): packets sent by it go nowhere — the gateway is the router at the other end of \(route.device ?? "the link")",
                                    objects: ["route \(route.description)", "address \(gateway) dev \(state.interfaceHolding(gateway) ?? "?")"],
                                    fix: fix, hint: right == nil ? "replace it with a route via the router on that link" : nil))
        }
        for entry in request.policy?.interfaces ?? [] {
          for gateway in [entry.gateway, entry.gateway6].compactMap({ $0 }) where state.isLocal(gateway) {
            let fileHint: String
            if case .file(let path) = request.source { fileHint = "correct the gateway of \(entry.name) in \(path)" } else { fileHint = "correct the policy's gateway of \(entry.name)" }
            findings.append(Finding(id: FindingID.gatewayIsLocal, severity: .error,
                                    message: "the policy's gateway \(gateway) of \(entry.name) is this node's own address (apply refuses it): it must be the router at the other end of \(entry.name)",
                                    objects: ["policy interface \(entry.name) \(gateway.family == .inet6 && entry.gateway != gateway ? "gateway6" : "gateway") \(gateway)"] + (entry.origin.map { ["at \($0)"] } ?? []),
                                    fix: nil, hint: fileHint))
          }
        }
        return findings
    }

    /// Policy gateways on no subnet connected to their interface (a link-local IPv6 gateway is always on-link).
    /// After a link flap IPv6 has lost the interface's global addresses (unless keep_addr_on_down is set): apply
    /// then refuses the gateway, and the IPv6 table cannot get its default route back.
    func offLinkGatewayFindings() -> [Finding] {
        var findings: [Finding] = []
        for entry in request.policy?.interfaces ?? [] where state.link(entry.name) != nil {
            for gateway in [entry.gateway, entry.gateway6].compactMap({ $0 }) where !gateway.isLinkLocal && !state.isLocal(gateway) {
                let own = state.addresses.filter { $0.interface == entry.name && $0.prefix.family == gateway.family }
                let connected = own.contains { $0.prefix.network.contains(gateway) || $0.peer == gateway }
                    || state.routes.contains { $0.table == RouteTable.main && $0.device == entry.name && $0.gateway == nil
                                               && $0.type == .unicast && !$0.destination.isDefault && $0.destination.contains(gateway) }
                guard !connected else { continue }
                let v6 = gateway.family == .inet6
                let have = own.map(\.prefix.cidr)
                findings.append(Finding(id: FindingID.gatewayOffLink, severity: .error,
                                        message: "the policy's \(v6 ? "IPv6 " : "")gateway \(gateway) of \(entry.name) is on no subnet connected to \(entry.name) (its \(v6 ? "IPv6" : "IPv4") addresses: \(have.isEmpty ? "none" : have.joined(separator: ", "))): replies cannot be sent to it, and apply refuses it"
                                            + (v6 ? ". IPv6 removes an interface's global addresses when its link goes down and does not restore them when it comes back up (unless net.ipv6.conf.\(entry.name).keep_addr_on_down=1)" : ""),
                                        objects: ["policy interface \(entry.name) \(v6 && entry.gateway != gateway ? "gateway6" : "gateway") \(gateway)"]
                                            + own.map { "address \($0.prefix.cidr) dev \(entry.name)" },
                                        fix: nil,
                                        hint: v6 ? "add \(entry.name)'s IPv6 address again (ip -6 address add ADDRESS/LEN dev \(entry.name)), set keep_addr_on_down=1 so that a link flap keeps it, then apply"
                                                 : "give \(entry.name) an address on the gateway's subnet, or correct the policy's gateway"))
            }
        }
        return findings
    }

    /// Source rules that send a service to the table of another interface than the one it is announced on.
    func ruleInterfaceFindings(_ announcements: [Announcement]) -> [Finding] {
        var findings: [Finding] = []
        for entry in state.rules where entry.rule.action == .lookup {
            guard let from = entry.rule.source, !from.isDefault else { continue }
            let table = entry.rule.table
            guard table != RouteTable.local else { continue }
            for a in announcements {
                guard let interface = a.interface else { continue }
                let address = Self.representative(a.service)
                guard from.contains(address) else { continue }
                let client = a.clients.first.map(Self.representative) ?? Self.genericClient(for: address.family)
                let key = FlowKey(source: address, destination: client, mark: 0, ipProtocol: 6)
                guard case .route(let route) = path.routes.tableLookup(table, key), route.type == .unicast,
                      let device = route.device, device != interface else { continue }
                // A table whose route for the client leaves by the right interface, to point the rule at instead.
                // Not returnpath's own tables: apply changes them.
                let candidates = Set(state.routes.filter { $0.family == address.family }.map(\.table)).filter {
                    $0 != RouteTable.local && $0 != RouteTable.main && $0 != table && !ownership.ownsTable($0)
                }.sorted()
                let right = candidates.first { t in
                    if case .route(let r) = path.routes.tableLookup(t, key), r.device == interface, r.gateway.map({ !state.isLocal($0) }) ?? true { return true }
                    return false
                }
                var fix: String
                if let right {
                    var corrected = entry.rule
                    corrected.table = right
                    corrected.proto = .unspecified
                    fix = ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family) + " && " + ipCommand(["rule", "add"] + corrected.ipArguments, family: entry.rule.family)
                } else {
                    fix = ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family) + " && " + applyCommand()
                }
                findings.append(Finding(id: FindingID.ruleWrongInterface, severity: .error,
                                        message: "rule \(entry.rule.priority ?? 0) (\(ExplainText.ruleText(entry))) sends the replies of \(a.service), announced on \(interface), to table \(RouteTable.name(table)), whose route leaves by \(device) (\(ExplainText.routeText(route))): they leave by another interface than their requests came in on, and a router with a strict rp_filter drops them (its way back to \(a.service) is \(interface)'s link)",
                                        objects: ["rule \(entry)", "route \(route.description)", "service \(a.service) on \(interface)"],
                                        fix: fix))
            }
        }
        return findings
    }

    /// Rules that look up a table that is empty or has no default route.
    func tableFindings(_ announcements: [Announcement]) -> [Finding] {
        struct FamilyTable: Hashable, Comparable {
            var family: AddressFamily
            var table: UInt32
            static func < (a: FamilyTable, b: FamilyTable) -> Bool { (a.family.rawValue, a.table) < (b.family.rawValue, b.table) }
        }
        // Per family: an IPv6 rule looks up the IPv6 routes of its table, which a link flap empties too.
        var byTable: [FamilyTable: [DetailedRule]] = [:]
        for entry in state.rules where entry.rule.action == .lookup {
            let t = entry.rule.table
            guard ![RouteTable.local, RouteTable.main, RouteTable.default, RouteTable.unspecified].contains(t) else { continue }
            // returnpath's static table holds client routes, no default: that is its design.
            if isOurs(entry) && strategy == .static && t == ownership.tableBase { continue }
            byTable[FamilyTable(family: entry.rule.family, table: t), default: []].append(entry)
        }
        var findings: [Finding] = []
        for (key, rules) in byTable.sorted(by: { $0.key < $1.key }) {
            let table = key.table, family = key.family
            let v6 = family == .inet6 ? "IPv6 " : ""
            let routes = state.routes(inTable: table, family: family)
            if routes.contains(where: { $0.destination.isDefault }) { continue }
            let ours = rules.contains(where: isOurs) || ownership.ownsTable(table)
            let empty = routes.isEmpty
            // The gateway the table should lead to: a from-rule's service's interface, or our record's slot.
            var fix: String?
            let services = rules.compactMap(\.rule.source)
            if ours {
                fix = applyCommand()
            } else if let a = announcements.first(where: { a in services.contains { $0.contains(Self.representative(a.service)) } }),
                      let interface = a.interface, let gateway = a.gateway, gateway.family == family, !state.isLocal(gateway) {
                fix = ipCommand(["route", "replace", "default", "via", gateway.description, "dev", interface, "table", String(table)], family: family)
            }
            let severity: Finding.Severity = empty || ours ? .error : .warning
            let what = empty ? (v6.isEmpty ? "is empty" : "has no IPv6 routes") : "has no \(v6)default route (only \(routes.map { $0.destination.description }.joined(separator: ", ")))"
            findings.append(Finding(id: FindingID.tableWithoutDefault, severity: severity,
                                    message: "\(v6)\(rules.count == 1 ? "rule" : "rules") \(rules.map { String($0.rule.priority ?? 0) }.joined(separator: ", ")) \(rules.count == 1 ? "looks" : "look") up table \(RouteTable.name(table)), which \(what): \(rules.count == 1 ? "its" : "their") lookups fall through to the next rules (main). A link that goes down loses its routes in every table, and coming back up restores only the connected ones: whoever made this table must add its routes again",
                                    objects: rules.map { "\(v6)rule \($0)" } + ["\(v6)table \(RouteTable.name(table)): \(routes.isEmpty ? "no routes" : routes.map(\.description).joined(separator: "; "))"],
                                    fix: fix, hint: fix == nil ? "add the table's default route again (ip \(v6.isEmpty ? "" : "-6 ")route replace default via GATEWAY dev IF table \(table))" : nil))
        }
        return findings
    }

    /// The same rule more than once (scripts that append on every run).
    func duplicateFindings() -> [Finding] {
        var groups: [String: [DetailedRule]] = [:]
        var order: [String] = []
        for entry in state.rules {
            let key = (entry.rule.family == .inet6 ? "-6 " : "") + ExplainText.ruleText(entry)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(entry)
        }
        return order.compactMap { key -> Finding? in
            guard let rules = groups[key], rules.count > 1 else { return nil }
            let extra = rules.dropFirst()
            let fix = extra.map { ipCommand(["rule", "del"] + ruleArguments($0), family: $0.rule.family) }.joined(separator: " && ")
            return Finding(id: FindingID.duplicateRule, severity: .error,
                           message: "\(rules.count) identical rules (\(key)) at priorities \(rules.map { String($0.rule.priority ?? 0) }.joined(separator: ", ")): whatever adds it appends on every run — the list grows, every lookup walks it, and deleting \"the\" rule leaves a copy in force",
                           objects: rules.map { "rule \($0)" }, fix: fix)
        }
    }

    /// A foreign rule ahead of returnpath's band that decides replies returnpath's rules would have decided.
    func foreignFirstFindings(_ checks: [ReplyCheck]) -> [Finding] {
        let ours = ourRules
        guard !ours.isEmpty, let firstOurs = ours.compactMap(\.rule.priority).min() else { return [] }
        var byRule: [DetailedRule: [ReplyCheck]] = [:]
        for row in checks {
            guard let lookup = row.replyResult.lookup, let rule = lookup.outcome.rule,
                  !isOurs(rule), !isKernelDefault(rule), (rule.rule.priority ?? 0) < firstOurs else { continue }
            let oursWouldMatch = ours.contains { path.routes.match($0, lookup.key).1 }
            if oursWouldMatch { byRule[rule, default: []].append(row) }
        }
        let band = "\(ownership.priorityBase)-\(ownership.priorityBase + ownership.priorityCount - 1)"
        let last = ownership.priorityBase + ownership.priorityCount - 1
        return byRule.keys.sorted { ($0.rule.priority ?? 0) < ($1.rule.priority ?? 0) }.map { (rule: DetailedRule) -> Finding in
            let rows: [ReplyCheck] = byRule[rule] ?? []
            let broken = rows.contains { $0.verdict != .ok }
            let services: String = Set(rows.map(\.label)).sorted().joined(separator: ", ")
            let pref = rule.rule.priority ?? 0
            var message = "rule \(pref) (\(ExplainText.ruleText(rule))) is not returnpath's and comes before its band \(band): "
            message += "it decides the replies of \(services) before returnpath's rules can"
            message += broken ? ", and sends them the wrong way" : " (the same way, for now)"
            var objects: [String] = ["rule \(rule)"]
            for row in rows { if let interface = row.interface { objects.append("service \(row.label) on \(interface)") } }
            return Finding(id: FindingID.foreignRuleFirst, severity: broken ? .error : .warning, message: message,
                           objects: objects, fix: ipCommand(["rule", "del"] + ruleArguments(rule), family: rule.rule.family),
                           hint: "or move it after priority \(last)")
        }
    }

    /// fwmark rules while src_valid_mark=0 and rp_filter is strict on an interface requests come in on.
    func srcValidMarkFindings(_ announcements: [Announcement], checks: [ReplyCheck]) -> (findings: [Finding], interfaces: Set<String>) {
        // rp_filter and src_valid_mark are IPv4's: IPv6 fwmark rules are not checked by them.
        let fwmarkRules = state.rules(family: .inet).filter { $0.rule.fwmark != nil && $0.rule.action == .lookup }
        guard !fwmarkRules.isEmpty else { return ([], []) }
        var seen: Set<String> = []
        var result: [Finding] = []
        let interfaces = Set(announcements.compactMap(\.interface)).sorted()
        for interface in interfaces {
            guard state.setting("rp_filter", on: interface) == 1, state.setting("src_valid_mark", on: interface) == 0 else { continue }
            // Only when requests on this interface carry a mark (prerouting marks them) or are ours to mark.
            let marked = checks.contains { $0.interface == interface && $0.requestMark != 0 }
            let oursMarks = (strategy == .mark || strategy == .ingress) && !ourRules.filter { $0.rule.fwmark != nil && $0.rule.family == .inet }.isEmpty
            guard marked || oursMarks else { continue }
            seen.insert(interface)
            let values = state.settingValues("src_valid_mark", on: interface)
            let rp = state.settingValues("rp_filter", on: interface)
            result.append(Finding(id: FindingID.fwmarkWithoutSrcValidMark, severity: .error,
                                  message: "fwmark rules (\(fwmarkRules.map { String($0.rule.priority ?? 0) }.joined(separator: ", "))) steer marked packets, but \(interface) has src_valid_mark=0 and a strict rp_filter: the reverse-path check of a request ignores its mark, looks the client up in main, finds another interface and drops the request",
                                  objects: ["sysctl net.ipv4.conf.\(interface).src_valid_mark=\(values.own) (all=\(values.all))",
                                            "sysctl net.ipv4.conf.\(interface).rp_filter=\(rp.own) (all=\(rp.all))"]
                                      + fwmarkRules.map { "rule \($0)" },
                                  fix: sysctlCommand("net.ipv4.conf.\(interface).src_valid_mark", "1")))
        }
        return (result, seen)
    }

    // MARK: marks

    /// Bits of the packet or conntrack mark a rule or chain reads or writes.
    struct MarkUse {
        var what: String
        var bits: UInt32
        /// It reads or writes the whole mark (an exact match, a plain set): every bit of ours touches it.
        var whole: Bool
    }

    func markOverlapFindings() -> [Finding] {
        guard strategy == .mark || strategy == .ingress else { return [] }
        let ours = ownership.markMask
        var uses: [MarkUse] = []
        for entry in state.rules where entry.rule.fwmark != nil && !isOurs(entry) {
            let mask = entry.rule.fwmask
            uses.append(MarkUse(what: "rule \(entry)", bits: mask ?? (entry.rule.fwmark ?? 0), whole: mask == nil))
        }
        for rule in state.nftables.rules where !(rule.family == "inet" && rule.table == "returnpath") {
            let place = "nft \(rule.family) \(rule.table) \(rule.chain) handle \(rule.handle): \(rule.text)"
            var extensions = state.nftables.extensions(of: rule)[...]
            for statement in rule.statements {
                switch statement {
                case .match(_, let left, _) where left.isMark:
                    if case .binary("&", _, .number(let mask)) = left {
                        uses.append(MarkUse(what: place, bits: UInt32(truncatingIfNeeded: mask), whole: false))
                    } else {
                        uses.append(MarkUse(what: place, bits: 0, whole: true))
                    }
                case .mangle(let key, let value) where key.isMark:
                    let (bits, whole) = Self.affectedBits(value, key: key)
                    uses.append(MarkUse(what: place, bits: bits, whole: whole))
                case .xt(let type, let name):
                    guard let ext = extensions.popFirst() else { continue }
                    if type == "target", name == "MARK", let value = ext.u32(0), let mask = ext.u32(4) {
                        uses.append(MarkUse(what: place + " (-j MARK --set-xmark \(hex(value))/\(hex(mask)))", bits: mask | value, whole: mask == UInt32.max))
                    } else if type == "target", name == "CONNMARK", let ctmask = ext.u32(4), let nfmask = ext.u32(8) {
                        uses.append(MarkUse(what: place + " (-j CONNMARK)", bits: ctmask | nfmask, whole: ctmask == UInt32.max || nfmask == UInt32.max))
                    } else if type == "match", name == "mark" || name == "connmark", let mask = ext.u32(4) {
                        uses.append(MarkUse(what: place + " (-m \(name))", bits: mask, whole: mask == UInt32.max))
                    }
                default: continue
                }
            }
        }
        var findings: [Finding] = []
        let overlapping = uses.filter { !$0.whole && $0.bits & ours != 0 }
        if !overlapping.isEmpty {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .error,
                                    message: "returnpath's mark bits \(hex(ours)) (strategy \(strategy?.rawValue ?? "?")) overlap bits other rules use (\(hex(overlapping.reduce(0) { $0 | $1.bits } & ours))): one of them changes or misreads the other's marks",
                                    objects: overlapping.map { "\($0.what) uses \(hex($0.bits))" },
                                    fix: markFix(excluding: uses), hint: markHint(excluding: uses)))
        }
        // Tools known by their chains, whose bits are reserved even where no rule shows them yet.
        var known: [(String, UInt32)] = []
        let names = state.nftables.chains.map(\.name) + state.nftables.tables.map(\.name)
        if names.contains(where: { $0.hasPrefix("KUBE-") || $0 == "kube-proxy" }) { known.append(("kube-proxy", 0xc000)) }
        if names.contains(where: { $0.hasPrefix("cali-") }) { known.append(("Calico (default mark mask)", 0xffff_0000)) }
        if names.contains(where: { $0.hasPrefix("CILIUM") || $0.hasPrefix("cilium") }) { known.append(("Cilium", 0x0f00)) }
        if names.contains(where: { $0.hasPrefix("mwan3") }) { known.append(("mwan3", 0x3f00)) }
        for (tool, bits) in known where bits & ours != 0 {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .error,
                                    message: "\(tool) runs here and uses the mark bits \(hex(bits)), which overlap returnpath's \(hex(ours))",
                                    objects: ["\(tool): \(hex(bits))", "returnpath markMask \(hex(ours))"],
                                    fix: markFix(excluding: uses + [MarkUse(what: tool, bits: bits, whole: false)]),
                                    hint: markHint(excluding: uses + [MarkUse(what: tool, bits: bits, whole: false)])))
        }
        let whole = uses.filter(\.whole)
        if !whole.isEmpty {
            findings.append(Finding(id: FindingID.markBitsOverlap, severity: .warning,
                                    message: "rules that match or set the whole mark: a packet carrying returnpath's bits \(hex(ours)) no longer equals what they expect, and a plain `mark set` clears returnpath's bits",
                                    objects: whole.map(\.what), fix: nil,
                                    hint: "match and set with a mask (meta mark & MASK == VALUE; meta mark set meta mark & ~MASK | VALUE)"))
        }
        return findings
    }

    /// The bits `meta mark set VALUE` (or ct mark) may change: (old & A) | B, (old & A) ^ B → ~A | B; a plain value
    /// or anything else: the whole mark.
    static func affectedBits(_ value: NftExpr, key: NftExpr) -> (UInt32, Bool) {
        switch value {
        case .binary(let op, let inner, .number(let n)):
            let (bits, whole) = affectedBits(inner, key: key)
            if whole { return (bits, true) }
            let m = UInt32(truncatingIfNeeded: n)
            switch op {
            case "&": return (bits | ~m, false)
            case "|", "^": return (bits | m, false)
            default: return (0, true)
            }
        default:
            if value == key { return (0, false) }
            return (0, true)
        }
    }

    /// Free bits for returnpath's marks: as many as ours has, contiguous, clear of every other use.
    func freeMask(excluding uses: [MarkUse]) -> UInt32? {
        let used = uses.filter { !$0.whole }.reduce(UInt32(0xc000)) { $0 | $1.bits }
        let width = ownership.markMask.nonzeroBitCount
        guard width > 0 else { return nil }
        let block = UInt32.max >> UInt32(32 - width)
        for shift in stride(from: 32 - width, through: 0, by: -1) {
            let candidate = block << UInt32(shift)
            if candidate & used == 0 { return candidate }
        }
        return nil
    }

    func markFix(excluding uses: [MarkUse]) -> String? {
        guard freeMask(excluding: uses) != nil else { return nil }
        if case .file(let path) = request.source { return applyCommand().replacingOccurrences(of: "-f \(path)", with: "-f \(path)") }
        return nil
    }

    func markHint(excluding uses: [MarkUse]) -> String {
        guard let free = freeMask(excluding: uses) else { return "no free bits of that width: move the other tool's marks" }
        return "set spec.ownership.markMask: \(hex(free)) in the policy (free of every mark seen here) and apply it with -f"
    }

    // MARK: drift

    /// What the kernel has of returnpath's objects against what apply installed (the plan for the policy, the
    /// record's strategy and slots).
    func driftFindings(_ implied: Policy?) -> [Finding] {
        let ownedRules = ourRules
        let ownedRoutes = state.routes.filter(isOurs)
        let table = state.nftables.tables.first { $0.family == "inet" && $0.name == "returnpath" }
        guard let record = state.record else {
            guard !ownedRules.isEmpty || !ownedRoutes.isEmpty || table != nil else { return [] }
            return [Finding(id: FindingID.drift, severity: .error,
                            message: "returnpath's objects are here but there is no record of the apply that made them (a crash before the first record, or a deleted /run/returnpath): remove cannot restore sysctls it does not know",
                            objects: ownedRules.map { "rule \($0)" } + ownedRoutes.map { "route \($0)" } + (table == nil ? [] : ["nft table inet returnpath"]),
                            fix: (["returnpath", "remove"] + request.returnpathTarget).joined(separator: " "),
                            hint: "or apply again: \(applyCommand())")]
        }
        guard let recorded = record.strategy else {
            return [Finding(id: FindingID.drift, severity: .error, message: "the record has no strategy: an apply did not finish",
                            objects: [], fix: applyCommand(), hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil)]
        }
        guard var policy = request.policy ?? implied else { return [] }
        policy.ownership = record.ownership
        // Interfaces whose gateway is gone (their table lost its default route) cannot be planned: say so.
        var differences: [String] = []
        let unknownGateways = policy.interfaces.filter { $0.gateway == .v4(0) || $0.gateway == .v6(0, 0) || $0.gateway6 == .v6(0, 0) }.map(\.name)
        let plan = Planner.plan(policy, strategy: recorded, slots: record.slots)
        // Per family: `ip rule` and `ip -6 rule` are separate lists, and may hold the same text.
        func ruleKey(_ rule: Rule) -> String { (rule.family == .inet6 ? "-6 " : "") + rule.description }
        let plannedRules = Set(plan.rules.map(ruleKey))
        let kernelRules = Set(ownedRules.map { ruleKey($0.rule) })
        for rule in plan.rules where !kernelRules.contains(ruleKey(rule)) { differences.append("missing \(rule.family == .inet6 ? "IPv6 " : "")rule \(rule)") }
        for rule in ownedRules where !plannedRules.contains(ruleKey(rule.rule)) { differences.append("unexpected \(rule.rule.family == .inet6 ? "IPv6 " : "")rule \(rule)") }
        let plannedRoutes = plan.routes.filter { $0.gateway != .v4(0) && $0.gateway != .v6(0, 0) }
        let kernelRouteKeys = Set(ownedRoutes.map(\.key))
        for route in plannedRoutes where !kernelRouteKeys.contains(route.key) { differences.append("missing route \(route)") }
        for name in unknownGateways {
            if let slot = record.slots[name] {
                differences.append("missing route: table \(record.ownership.tableBase + UInt32(slot)) (\(name)) has no default route, and its gateway is not recorded")
            }
        }
        let plannedKeys = Set(plannedRoutes.map(\.key))
        for route in ownedRoutes where !plannedKeys.contains(route.key)
            && !(unknownGateways.contains(route.device ?? "") && route.destination.isDefault) {
            differences.append("unexpected route \(route)")
        }
        for sysctl in plan.sysctls {
            let now = state.sysctls[sysctl.key] ?? "?"
            if now != sysctl.value { differences.append("sysctl \(sysctl.key) is \(now); apply set \(sysctl.value)") }
        }
        differences += nftDrift(plan.nftables, table: table != nil)
        guard !differences.isEmpty else { return [] }
        return [Finding(id: FindingID.drift, severity: .error,
                        message: "the node differs from what returnpath's last apply (strategy \(recorded.rawValue)) installed"
                            + (request.policy == nil ? "" : " for this policy") + ": changed by hand, a link flap, or another tool",
                        objects: differences, fix: applyCommand(strategy: recorded),
                        hint: unknownGateways.isEmpty && !applyNeedsPolicy ? nil : "apply needs the policy (-f POLICY.yaml): the record does not hold gateways or services")]
    }

    func nftDrift(_ desired: NftTable?, table exists: Bool) -> [String] {
        guard let desired else { return exists ? ["unexpected nft table inet returnpath (the strategy needs none)"] : [] }
        guard exists else { return ["missing nft table inet returnpath"] }
        var differences: [String] = []
        let chains = state.nftables.chains.filter { $0.family == "inet" && $0.table == "returnpath" }
        for chain in desired.chains {
            guard let current = chains.first(where: { $0.name == chain.name }) else {
                differences.append("missing nft chain inet returnpath \(chain.name)")
                continue
            }
            let rules = state.nftables.rules(of: current)
            if rules.count != chain.rules.count || rules.contains(where: { $0.comment != desired.ruleComment }) {
                differences.append("nft chain inet returnpath \(chain.name) has \(rules.count) rules, \(rules.filter { $0.comment == desired.ruleComment }.count) of them apply's; apply installed \(chain.rules.count)")
            }
        }
        for chain in chains where !desired.chains.contains(where: { $0.name == chain.name }) {
            differences.append("unexpected nft chain inet returnpath \(chain.name)")
        }
        for set in desired.sets {
            guard let current = state.nftables.collection(family: "inet", table: "returnpath", name: set.name) else {
                differences.append("missing nft set inet returnpath \(set.name)")
                continue
            }
            let have = Set(current.elements.map { element -> String in
                switch element {
                case .prefix(let a, let l): return "\(a)/\(l)"
                default: return element.description
                }
            })
            let want = Set(set.elements.map { $0.isHost ? $0.address.description : $0.cidr })
            if have != want {
                differences.append("nft set inet returnpath \(set.name) holds \(have.sorted().joined(separator: ", ")); apply put \(want.sorted().joined(separator: ", "))")
            }
        }
        return differences
    }

    /// Foreign rules inside returnpath's band, foreign routes inside its tables: apply refuses to run.
    func bandFindings() -> [Finding] {
        var findings: [Finding] = []
        for entry in state.rules where ownership.ownsPriority(entry.rule.priority ?? 0) && !isOurs(entry) {
            findings.append(Finding(id: FindingID.foreignInBand, severity: .error,
                                    message: "rule \(entry.rule.priority ?? 0) is inside returnpath's priority band \(ownership.priorityBase)-\(ownership.priorityBase + ownership.priorityCount - 1) but is not returnpath's (protocol \(entry.rule.proto)): apply refuses to run",
                                    objects: ["rule \(entry)"], fix: ipCommand(["rule", "del"] + ruleArguments(entry), family: entry.rule.family),
                                    hint: "or move returnpath's band (spec.ownership.priorityBase)"))
        }
        for route in state.routes where ownership.ownsTable(route.table) && !isOurs(route) {
            findings.append(Finding(id: FindingID.foreignInBand, severity: .error,
                                    message: "route \(route.description) is inside returnpath's table range \(ownership.tableBase)-\(ownership.tableBase + ownership.tableCount - 1) but is not returnpath's: apply refuses to run",
                                    objects: ["route \(route)"], fix: ipCommand(["route", "del"] + route.ipArguments, family: route.family),
                                    hint: "or move returnpath's tables (spec.ownership.tableBase)"))
        }
        return findings
    }

    func networkdFindings() -> [Finding] {
        guard request.isHostNamespace else { return [] }
        let status = NetworkdStatus.read(root: request.systemRoot)
        guard status.running, status.managesForeignRules else { return [] }
        let applied = !ourRules.isEmpty || state.record != nil
        return [Finding(id: FindingID.networkdForeignRules, severity: applied || request.policy != nil ? .error : .warning,
                        message: "systemd-networkd manages this node's network and deletes routing rules it did not create (ManageForeignRoutingPolicyRules is yes, the default since systemd 248) whenever it reconfigures a link: returnpath's rules\(applied ? "" : ", once applied,") would vanish",
                        objects: ["systemd-networkd ManageForeignRoutingPolicyRules=yes" + (status.setBy.map { " (\($0))" } ?? " (default)")],
                        fix: "mkdir -p /etc/systemd/networkd.conf.d && printf '[Network]\\nManageForeignRoutingPolicyRules=no\\n' > /etc/systemd/networkd.conf.d/90-returnpath.conf && systemctl restart systemd-networkd")]
    }

    /// Rules on the requests' and replies' paths that doctor could not evaluate, and marks set where no re-route
    /// follows.
    func nftFindings(_ checks: [ReplyCheck]) -> [Finding] {
        var unevaluated: [String: String] = [:]
        var filterMarks: Set<String> = []
        for row in checks {
            for trace in [row.requestTrace, row.replyTrace].compactMap({ $0 }) {
                for step in trace.steps where step.outcome == .unevaluated {
                    unevaluated["\(step.chain) handle \(step.handle): \(step.text)"] = step.reason
                }
                if trace.markChangedWithoutReroute { filterMarks.insert(row.service.description) }
            }
        }
        var findings: [Finding] = []
        if !unevaluated.isEmpty {
            findings.append(Finding(id: FindingID.nftRuleNotEvaluated, severity: .warning,
                                    message: "nftables rules on the requests' or replies' path that doctor cannot evaluate (treated as not matching): its marks may be wrong where they apply",
                                    objects: unevaluated.keys.sorted().map { "\($0) — \(unevaluated[$0] ?? "")" }, fix: nil))
        }
        if !filterMarks.isEmpty {
            findings.append(Finding(id: FindingID.markInFilterChain, severity: .warning,
                                    message: "a filter-type output chain changes the mark of replies from \(filterMarks.sorted().joined(separator: ", ")): the kernel does not route a packet again for a mark set there",
                                    objects: [], fix: nil, hint: "set marks for routing in a chain of type route (type route hook output)"))
        }
        return findings
    }
}
