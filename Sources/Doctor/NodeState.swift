import Namespace
import Netlink
import ReturnRouting

/// Everything doctor reads from one network namespace, once, before it reasons: links, addresses, rules (with
/// every selector), routes of every table, the sysctls that decide reverse-path checks and marks, the nftables
/// ruleset, and the record of returnpath's last apply. Reading (`NodeConnection.read`) changes nothing; a test builds
/// one from literal rules, routes and addresses.
public struct NodeState: Sendable {
    public var namespace: NetworkNamespace
    public var links: [Link]
    public var addresses: [InterfaceAddress]
    /// In the kernel's order: the order a lookup walks them.
    public var rules: [DetailedRule]
    public var routes: [Route]
    public var sysctls: [String: String]
    public var nftables: NftRuleset
    public var record: AppliedRecord?
    /// Why the record could not be read (it exists but does not decode).
    public var recordProblem: String?
    /// What could not be read and why the answers may be partial ("this kernel has no nf_tables").
    public var notes: [String] = []
    /// The kernel the node runs: a few of its answers differ between releases (`KernelRelease`).
    public var kernel: KernelRelease? = KernelRelease.running

    public init(namespace: NetworkNamespace, links: [Link], addresses: [InterfaceAddress], rules: [DetailedRule],
                routes: [Route], sysctls: [String: String], nftables: NftRuleset, record: AppliedRecord? = nil,
                recordProblem: String? = nil) {
        self.namespace = namespace
        self.links = links
        self.addresses = addresses
        self.rules = rules
        self.routes = routes
        self.sysctls = sysctls
        self.nftables = nftables
        self.record = record
        self.recordProblem = recordProblem
    }

    static let interfaceSettings = ["rp_filter", "src_valid_mark", "forwarding", "accept_local"]

    /// `net.ipv4.conf.IF.SETTING`, or the slash form for names with dots (eth0.100).
    static func interfaceKey(_ interface: String, _ setting: String, family: AddressFamily = .inet) -> String {
        let ip = family == .inet6 ? "ipv6" : "ipv4"
        return interface.contains(".") ? "net/\(ip)/conf/\(interface)/\(setting)" : "net.\(ip).conf.\(interface).\(setting)"
    }

    /// `net.ipv6.conf.IF.forwarding` (the interface's own; IPv6 forwards per interface).
    public func forwards6(on interface: String) -> Bool {
        sysctls[Self.interfaceKey(interface, "forwarding", family: .inet6)] == "1"
    }

    // MARK: questions

    /// The namespace's own addresses (what the kernel routes as local).
    public var localAddresses: Set<IPAddress> { Set(addresses.map(\.prefix.address)) }

    public func isLocal(_ address: IPAddress) -> Bool {
        addresses.contains { $0.prefix.address == address }
            || routes.contains { $0.table == RouteTable.local && $0.type == .local && $0.destination.contains(address) }
    }

    public func routes(inTable table: UInt32) -> [Route] { routes.filter { $0.table == table } }

    /// One family's routes of a table (the kernel keeps IPv4 and IPv6 tables apart, under the same numbers).
    public func routes(inTable table: UInt32, family: AddressFamily) -> [Route] {
        routes.filter { $0.table == table && $0.family == family }
    }

    public func hasTable(_ table: UInt32) -> Bool { routes.contains { $0.table == table } }

    /// One family's rule list, in the kernel's order (`ip rule`, `ip -6 rule`).
    public func rules(family: AddressFamily) -> [DetailedRule] { rules.filter { $0.rule.family == family } }

    /// An interface setting as the kernel applies it: `rp_filter` the maximum of all and the interface's;
    /// `src_valid_mark` and `accept_local` either of them; `forwarding` the interface's own.
    public func setting(_ setting: String, on interface: String) -> Int {
        let own = Int(sysctls[Self.interfaceKey(interface, setting)] ?? "0") ?? 0
        let all = Int(sysctls[Self.interfaceKey("all", setting)] ?? "0") ?? 0
        switch setting {
        case "rp_filter": return max(own, all)
        case "src_valid_mark", "accept_local": return own != 0 || all != 0 ? 1 : 0
        default: return own
        }
    }

    /// The raw value of one interface's own setting and of `all`.
    public func settingValues(_ setting: String, on interface: String) -> (own: String, all: String) {
        (sysctls[Self.interfaceKey(interface, setting)] ?? "?", sysctls[Self.interfaceKey("all", setting)] ?? "?")
    }

    public var tcpFwmarkAccept: Bool { sysctls["net.ipv4.tcp_fwmark_accept"] == "1" }

    /// The kernel's default rules (local, main, default) and nothing else: no policy routing at all.
    public var hasCustomRules: Bool {
        rules(family: .inet).contains { !Self.isKernelDefault($0) }
    }

    /// One of the three rules the kernel starts with: 0 lookup local, 32766 lookup main, 32767 lookup default.
    public static func isKernelDefault(_ entry: DetailedRule) -> Bool {
        let r = entry.rule
        let defaults: [(UInt32, UInt32)] = [(0, RouteTable.local), (32766, RouteTable.main), (32767, RouteTable.default)]
        guard let priority = r.priority, entry.details == RuleDetails() else { return false }
        return r.source == nil && r.destination == nil && r.fwmark == nil && r.inputInterface == nil && r.outputInterface == nil
            && r.action == .lookup && !r.invert && r.suppressPrefixLength == nil
            && defaults.contains { $0.0 == priority && $0.1 == r.table }
    }

    /// The interface that has `address` on a connected subnet (the device of the kernel's connected route).
    public func interfaceHolding(_ address: IPAddress) -> String? {
        addresses.first { $0.prefix.address == address }?.interface
    }

    /// An nftables rule that drops packets whose source has no route back by the interface they came in on
    /// (`fib saddr . iif oif missing drop`, or `… oif 0 drop`, as firewalld writes it): IPv6's reverse-path check,
    /// the equivalent of IPv4's rp_filter. nil when none is in a prerouting chain of family ip6 or inet.
    public var ipv6ReversePathRule: NftRuleset.Rule? {
        let chains = nftables.chains.filter { $0.hook == "prerouting" && ($0.family == "ip6" || $0.family == "inet") }
        for chain in chains {
            for rule in nftables.rules(of: chain) {
                let checksSource = rule.statements.contains { statement in
                    guard case .match(_, .fib(let result, let flags), _) = statement else { return false }
                    return result == "oif" && flags.contains("saddr") && flags.contains("iif")
                }
                let drops = rule.statements.contains { statement in
                    if case .verdict(let verdict, _) = statement { return verdict == "drop" || verdict == "reject" }
                    return false
                }
                let ipv4Only = rule.statements.contains { statement in
                    if case .match(_, .meta("nfproto"), .string("ipv4")) = statement { return true }
                    if case .match(_, .payload("ip", _), _) = statement { return true }
                    return false
                }
                if checksSource && drops && !ipv4Only { return rule }
            }
        }
        return nil
    }

    public func link(_ name: String) -> Link? { links.first { $0.name == name } }
}
