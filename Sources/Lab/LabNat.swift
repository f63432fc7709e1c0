import Handle
import Namespace
import Netlink

/// A host's DNAT entries as nftables rules, in a table the lab owns in that host's namespace:
///
/// ```
/// table inet returnpath-lab {
///     comment "returnpath lab=NAME"
///     chain prerouting {                       # connections that arrive (kube-proxy's PREROUTING)
///         type nat hook prerouting priority dstnat; policy accept;
///         ip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:3000
///     }
///     chain output {                           # connections the host makes itself (kube-proxy's OUTPUT)
///         type nat hook output priority -100; policy accept;
///         ip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:3000
///     }
///     chain postrouting {                      # only with masquerade entries
///         type nat hook postrouting priority srcnat; policy accept;
///         meta l4proto tcp ct status dnat ct original ip daddr 192.168.1.1 ct original proto-dst 3000 masquerade
///     }
/// }
/// ```
///
/// Converging compares the table as nft lists it with the text above (written in nft's own listing format) and
/// replaces the whole table in one transaction when they differ; a host without entries loses the table.
public enum LabNat {
    /// NFPROTO_INET.
    public static let family: UInt8 = 1
    public static let table = "returnpath-lab"

    public enum Change: String, Sendable, Equatable {
        case unchanged, created, replaced, removed
    }

    /// The table for `entries`, exactly as `nft list table inet returnpath-lab` prints it (tabs, blank lines
    /// between chains, trailing newline).
    public static func listing(_ entries: [Topology.DNAT], lab: String) -> String {
        var lines = ["table inet \(table) {", "\tcomment \"\(LabManager.marker(lab))\""]
        var chains: [[String]] = [
            ["\tchain prerouting {", "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
                + entries.map { "\t\t" + dnatRule($0) } + ["\t}"],
            ["\tchain output {", "\t\ttype nat hook output priority -100; policy accept;"]
                + entries.map { "\t\t" + dnatRule($0) } + ["\t}"],
        ]
        let masqueraded = entries.filter(\.masquerade)
        if !masqueraded.isEmpty {
            chains.append(["\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
                          + masqueraded.map { "\t\t" + masqueradeRule($0) } + ["\t}"])
        }
        for (index, chain) in chains.enumerated() {
            if index > 0 { lines.append("") }
            lines += chain
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `ip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:3000` (IPv6: `ip6 … dnat ip6 to [ADDR]:PORT`).
    static func dnatRule(_ entry: Topology.DNAT) -> String {
        let ip = entry.address.family == .inet6 ? "ip6" : "ip"
        return "\(ip) daddr \(entry.address) \(entry.proto.rawValue) dport \(entry.port) dnat \(ip) to \(entry.backendEndpoint)"
    }

    /// Connections DNATed by `entry` leave with the outgoing interface's address as source.
    static func masqueradeRule(_ entry: Topology.DNAT) -> String {
        let ip = entry.address.family == .inet6 ? "ip6" : "ip"
        return "meta l4proto \(entry.proto.rawValue) ct status dnat ct original \(ip) daddr \(entry.address) "
            + "ct original proto-dst \(entry.port) masquerade"
    }

    /// The lab's table in `namespace` as nft lists it, or nil when there is none.
    public static func current(in namespace: NetworkNamespace) throws(NftablesError) -> String? {
        try current(try Nftables(namespace: namespace))
    }

    private static func current(_ context: Nftables) throws(NftablesError) -> String? {
        do {
            return try context.run("list table inet \(table)", operation: "list table inet \(table)")
        } catch where error.isNoSuchObject {
            return nil
        }
    }

    /// Makes the lab's table in `namespace` hold exactly `entries` (no table when there are none), in one
    /// transaction; changes nothing when it already does.
    public static func converge(_ entries: [Topology.DNAT], lab: String,
                                in namespace: NetworkNamespace) throws(NftablesError) -> Change {
        if entries.isEmpty {
            // Most hosts have no entries: ask the kernel directly whether a table is left over (no libnftables).
            let exists: Bool
            do {
                let netfilter = try NetlinkSocket(namespace: namespace, family: NetlinkSocket.netfilter)
                exists = try netfilter.nftTableComment(family: family, table: table) != nil
            } catch {
                throw .failed(operation: "look for table inet \(table) in \(namespace)", message: error.description)
            }
            guard exists else { return .unchanged }
            try Nftables(namespace: namespace).run("delete table inet \(table)", operation: "delete table inet \(table)")
            return .removed
        }
        let wanted = listing(entries, lab: lab)
        let context = try Nftables(namespace: namespace)
        let present = try current(context)
        if let present, normalized(present) == normalized(wanted) { return .unchanged }
        // Replace the whole table atomically: declaring it first makes the delete valid when it is missing.
        let script = "add table inet \(table)\ndelete table inet \(table)\n" + wanted
        try context.run(script, operation: "install DNAT rules (table inet \(table))")
        return present == nil ? .created : .replaced
    }

    /// Lines without trailing blanks, without trailing empty lines.
    static func normalized(_ text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }
}
