import Netlink
import ReturnRouting

/// doctor's checks of a node: per service and interface it is announced on, the request and the reply simulated in
/// the kernel's order (and asked of the kernel too); then every finding.
///
/// Pure over its inputs: the node as read (`NodeState`), the request, and the kernel's route lookup it is handed
/// (`KernelRouteLookup`: RTM_GETROUTE on a live node, `RecordedRouteLookup` on a recorded one). It opens nothing.
/// Each concept lives in a file of its own: what is announced where (Announcements.swift), the policy a record
/// implies (ImpliedPolicy.swift), the simulation of each row (ReplySimulation.swift), fix commands
/// (FixCommands.swift), mark arithmetic (MarkArithmetic.swift), and one file per finding family (Findings/).
public struct Doctor: Sendable {
    public let state: NodeState
    public let request: DoctorRequest
    let path: PacketPath
    let ownership: Ownership
    /// The strategy in force: the record's, else the policy's.
    let strategy: Strategy?

    public init(state: NodeState, request: DoctorRequest) {
        self.state = state
        self.request = request
        path = PacketPath(state)
        ownership = state.record?.ownership ?? request.policy?.ownership ?? Ownership()
        strategy = state.record?.strategy ?? request.policy?.strategy
    }

    /// Every row and every finding. `kernel` answers the route lookups each row is checked against.
    /// Throws only when the host's systemd-networkd configuration cannot be read (`isHostNamespace`).
    public func run(kernel: any KernelRouteLookup) throws(DoctorError) -> DoctorReport {
        var notes: [String] = state.notes
        let (found, reconstructed) = self.announcements(&notes)
        let announcements = withDNAT(found)
        let checks = announcements.map { check($0, kernel: kernel) }
        if announcements.contains(where: { $0.service.family == .inet6 }) {
            notes.append(ipv6ReversePathNote)
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
        findings += try networkdFindings()
        findings += nftFindings(checks)
        findings += inputFindings(announcements)
        findings.sort { ($0.severity, $0.id) < ($1.severity, $1.id) }
        return DoctorReport(target: "\(state.namespace)", source: request.source, strategy: strategy, checks: checks,
                            findings: findings, notes: notes)
    }

    /// IPv6 has no rp_filter: an nftables fib rule is its reverse-path check, when there is one.
    var ipv6ReversePathNote: String {
        if let rule = state.ipv6ReversePathRule {
            return "IPv6 reverse-path check: nft \(rule.family) \(rule.table) \(rule.chain) handle \(rule.handle) (\(rule.text)) drops IPv6 requests whose source has no route back by the interface they came in on (IPv6 has no rp_filter sysctl; this is its equivalent)"
        }
        return "IPv6 has no rp_filter, and no nftables rule (fib saddr . iif oif missing drop) checks IPv6 sources: IPv6 requests are not reverse-path checked here"
    }

    // MARK: what is returnpath's

    func isKernelDefault(_ rule: DetailedRule) -> Bool { NodeState.isKernelDefault(rule) }

    func isOurs(_ rule: DetailedRule) -> Bool {
        rule.rule.proto == ownership.routeProtocol && ownership.ownsPriority(rule.rule.priority ?? 0)
    }

    func isOurs(_ route: Route) -> Bool { route.proto == ownership.routeProtocol && ownership.ownsTable(route.table) }

    var ourRules: [DetailedRule] { state.rules.filter(isOurs) }
}
