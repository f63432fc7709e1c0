import Netlink

/// Everything a strategy needs on the node: rules, routes, an nftables table, sysctls. Pure: computed from the
/// policy alone, compared with the kernel's state by `ReturnRouter`.
public struct Plan: Sendable, Equatable {
    public var strategy: Strategy
    public var rules: [Rule]
    public var routes: [Route]
    /// nil: no nftables table (static, source).
    public var nftables: NftTable?
    /// key → value, in order.
    public var sysctls: [(key: String, value: String)]

    public static func == (a: Plan, b: Plan) -> Bool {
        a.strategy == b.strategy && a.rules == b.rules && a.routes == b.routes && a.nftables == b.nftables
            && a.sysctls.map { "\($0.key)=\($0.value)" } == b.sysctls.map { "\($0.key)=\($0.value)" }
    }
}

/// The `inet returnpath` table: its structure (sets, chains, rules) and the elements of its sets. The structure's
/// hash is kept in the table's comment, so that an unchanged structure is recognised without parsing rules back,
/// and a changed service list touches only set elements.
public struct NftTable: Sendable, Equatable {
    public static let family = "inet"
    /// NFPROTO_INET, for nfnetlink.
    public static let inetFamily: UInt8 = 1
    public static let name = "returnpath"

    public struct Set: Sendable, Equatable {
        public var name: String
        public var interface: String
        public var elements: [IPPrefix]
        /// A set of addresses only is a hash set (fast to update over nfnetlink); prefixes need intervals.
        public var interval: Bool { elements.contains { !$0.isHost } }
    }

    public var sets: [Set]
    /// Chain definitions, in nft syntax, one string per chain.
    public var chains: [String]
    /// Number of rules across the chains (for counting changes).
    public var ruleCount: Int

    /// The structure without elements, in nft syntax.
    public var structure: String {
        var text = ""
        for set in sets {
            text += "\tset \(set.name) {\n\t\ttype ipv4_addr\n" + (set.interval ? "\t\tflags interval\n" : "")
                + "\t\tcomment \"services answered via \(set.interface)\"\n\t}\n"
        }
        for chain in chains { text += chain }
        return text
    }

    /// FNV-1a of the structure: the table comment carries it.
    public var structureHash: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in structure.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    public var comment: String { "returnpath structure \(structureHash)" }

    /// The whole table in one nft script (elements included), for a new table.
    public var script: String { script(hashSetElements: true) }

    /// The table's script; without `hashSetElements`, the elements of hash sets are left to nfnetlink.
    public func script(hashSetElements: Bool) -> String {
        var text = "table \(Self.family) \(Self.name) {\n\tcomment \"\(comment)\"\n" + structure + "}\n"
        for set in sets where !set.elements.isEmpty && (hashSetElements || set.interval) {
            text += "add element \(Self.family) \(Self.name) \(set.name) { \(set.elements.map(\.description).joined(separator: ", ")) }\n"
        }
        return text
    }

    /// Objects for counting: each set, chain and rule.
    public var objectCount: Int { sets.count + chains.count + ruleCount }
}

public enum Planner {
    /// Table of interface k (from 0): tableBase + 1 + k. tableBase itself holds static routes.
    static func table(_ ownership: Ownership, _ k: Int) -> UInt32 { ownership.tableBase + 1 + UInt32(k) }

    public static func plan(_ policy: Policy, strategy: Strategy) -> Plan {
        let own = policy.ownership
        let proto = own.routeProtocol
        var rules: [Rule] = []
        var routes: [Route] = []
        var nft: NftTable?
        var sysctls: [(key: String, value: String)] = []

        // Exempt destinations keep the main table, ahead of everything else of ours.
        for (i, prefix) in policy.exempt.enumerated() {
            rules.append(Rule(priority: own.priorityBase + UInt32(i), destination: prefix, table: RouteTable.main, proto: proto))
        }
        let first = own.priorityBase + 100

        switch strategy {
        case .static:
            for entry in policy.interfaces {
                for client in entry.clients {
                    routes.append(Route(destination: client, table: own.tableBase, proto: proto, gateway: entry.gateway,
                                        device: entry.name))
                }
            }
            rules.append(Rule(priority: first, table: own.tableBase, proto: proto))
        case .source:
            var n = 0
            for (k, entry) in policy.interfaces.enumerated() {
                routes.append(defaultRoute(own, k, entry))
                for service in entry.services {
                    rules.append(Rule(priority: first + UInt32(n), source: service, table: table(own, k), proto: proto))
                    n += 1
                }
            }
        case .mark, .ingress:
            let keep = String(~own.markMask, radix: 16)
            var output: [String] = []
            var prerouting: [String] = []
            var sets: [NftTable.Set] = []
            for (k, entry) in policy.interfaces.enumerated() {
                let value = own.mark(k + 1)
                let mark = "0x" + String(value, radix: 16)
                routes.append(defaultRoute(own, k, entry))
                rules.append(Rule(priority: first + UInt32(k), fwmark: value, fwmask: own.markMask, table: table(own, k), proto: proto))
                sysctls.append((key: "net.ipv4.conf.\(entry.name).src_valid_mark", value: "1"))
                if strategy == .mark {
                    let set = "svc_\(k)"
                    sets.append(.init(name: set, interface: entry.name, elements: entry.services))
                    output.append("ip saddr @\(set) meta mark set meta mark & 0x\(keep) | \(mark)")
                } else {
                    prerouting.append("ct state new iifname \"\(entry.name)\" ct mark set ct mark & 0x\(keep) | \(mark)")
                    output.append("ct mark & 0x\(String(own.markMask, radix: 16)) == \(mark) meta mark set meta mark & 0x\(keep) | \(mark)")
                }
            }
            var chains: [String] = []
            if !prerouting.isEmpty {
                chains.append(chain("prerouting", "type filter hook prerouting priority mangle; policy accept;", prerouting))
            }
            // A route-type chain: the kernel routes the packet again when its mark changed here.
            chains.append(chain("output", "type route hook output priority mangle; policy accept;", output))
            nft = NftTable(sets: sets, chains: chains, ruleCount: output.count + prerouting.count)
        }
        return Plan(strategy: strategy, rules: rules, routes: routes, nftables: nft, sysctls: sysctls)
    }

    static func defaultRoute(_ own: Ownership, _ k: Int, _ entry: Policy.Interface) -> Route {
        Route(destination: .defaultRoute(.inet), table: table(own, k), proto: own.routeProtocol, gateway: entry.gateway,
              device: entry.name)
    }

    static func chain(_ name: String, _ hook: String, _ rules: [String]) -> String {
        "\tchain \(name) {\n\t\t\(hook)\n" + rules.map { "\t\t\($0)\n" }.joined() + "\t}\n"
    }
}
