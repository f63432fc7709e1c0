import Namespace
import Netlink

/// Everything a command needs to talk to one network namespace, made once per command and passed down to the
/// features (vishvananda/netlink's `Handle`): the rtnetlink socket, the nfnetlink socket and the libnftables
/// context. The last two are made when first asked for (a strategy without a table never opens them), then kept.
///
/// Not Sendable: a command uses its handle from one thread at a time. The sockets themselves are Sendable and may
/// be handed to other tasks.
public final class NamespaceHandle {
    public let namespace: NetworkNamespace
    /// rtnetlink: links, addresses, routes, rules, route lookups.
    public let route: NetlinkSocket
    private var netfilterSocket: NetlinkSocket?
    private var nftablesContext: Nftables?

    /// Opens the namespace's rtnetlink socket (a missing namespace or missing privileges fail here).
    public init(_ namespace: NetworkNamespace) throws(NetlinkError) {
        self.namespace = namespace
        route = try NetlinkSocket(namespace: namespace)
    }

    /// nfnetlink (nf_tables sets, chains, rules, elements); an error here means the kernel has no nf_tables.
    public func netfilter() throws(NetlinkError) -> NetlinkSocket {
        if let netfilterSocket { return netfilterSocket }
        let made = try NetlinkSocket(namespace: namespace, family: NetlinkSocket.netfilter)
        netfilterSocket = made
        return made
    }

    /// libnftables, for what nfnetlink alone does not say or do (a table's structure, `list ruleset`).
    public func nftables() throws(NftablesError) -> Nftables {
        if let nftablesContext { return nftablesContext }
        // An nfnetlink socket this handle already opened proves the kernel has it: no second probe.
        let made = try Nftables(namespace: namespace, nfnetlinkKnown: netfilterSocket != nil)
        nftablesContext = made
        return made
    }
}
