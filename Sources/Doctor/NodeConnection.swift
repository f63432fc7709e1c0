import Handle
import Namespace
import Netlink
import ReturnRouting

/// Doctor on one namespace, through its `NamespaceHandle` (made once, by the caller or here): the rtnetlink socket
/// (the dumps, and RTM_GETROUTE for every kernel check), the nfnetlink socket (the parameters of iptables-nft
/// extensions) and the libnftables context (`list ruleset`), each opened once and handed down; the record is found
/// through the same handle.
///
///     let node = try NodeConnection(namespace)
///     let report = try Doctor(state: try node.read(), request: request).run(kernel: node.kernel)
public struct NodeConnection {
    public let handle: NamespaceHandle
    public var namespace: NetworkNamespace { handle.namespace }
    public var route: NetlinkSocket { handle.route }
    /// nfnetlink, or why it could not be opened (a kernel without nf_tables: then no ruleset is read, and said so).
    let netfilter: Result<NetlinkSocket, NetlinkError>

    public init(_ namespace: NetworkNamespace) throws(DoctorError) {
        do { try self.init(handle: NamespaceHandle(namespace)) } catch { throw .netlink(error) }
    }

    public init(handle: NamespaceHandle) {
        self.handle = handle
        // Not an error yet: `read` says what a missing nfnetlink means (no nftables, a note) or fails then.
        do { netfilter = .success(try handle.netfilter()) } catch { netfilter = .failure(error) }
    }

    /// The kernel's route lookup, over this connection's rtnetlink socket.
    public var kernel: NetlinkRouteLookup { NetlinkRouteLookup(route) }

    /// Reads the namespace (changes nothing).
    public func read() throws(DoctorError) -> NodeState {
        let links: [Link], addresses: [InterfaceAddress], rules: [DetailedRule], routes: [Route]
        do {
            links = try route.links()
            // Both families: the kernel keeps a rule list per family, and IPv6 routes in tables of their own.
            addresses = try route.addresses(family: .inet) + route.addresses(family: .inet6)
            rules = try route.detailedRules(family: .inet) + route.detailedRules(family: .inet6)
            routes = try route.routes(family: .inet) + route.routes(family: .inet6)
        } catch { throw .netlink(error) }
        var sysctls: [String: String] = [:]
        for key in ["net.ipv4.ip_forward", "net.ipv4.tcp_fwmark_accept", "net.ipv6.conf.all.forwarding"] {
            sysctls[key] = try readSysctl(key)
        }
        for name in ["all", "default"] + links.map(\.name) {
            for setting in NodeState.interfaceSettings {
                let key = NodeState.interfaceKey(name, setting)
                if let value = try readSysctl(key) { sysctls[key] = value }
            }
            // IPv6 has no rp_filter, src_valid_mark or accept_local: only its forwarding switch.
            let forwarding = NodeState.interfaceKey(name, "forwarding", family: .inet6)
            if let value = try readSysctl(forwarding) { sysctls[forwarding] = value }
        }
        var notes: [String] = []
        let nftables: NftRuleset
        do {
            nftables = try NftablesReader.ruleset(handle, netfilter: netfilter)
        } catch {
            switch error {
            case .nftablesUnavailable(let why):
                // No nf_tables in this kernel: no chain can mark a packet. Everything else still holds.
                nftables = NftRuleset()
                notes.append("nftables cannot be read (\(why)): no marks from nftables are assumed")
            case .failed(let failure):
                throw failure
            }
        }
        var record: AppliedRecord?, problem: String?
        // Not ignored: a record that cannot be read is the `record-unreadable` finding.
        do { record = try ReturnRouter(handle: handle).record() } catch {
            problem = error.description
        }
        var state = NodeState(namespace: namespace, links: links, addresses: addresses, rules: rules, routes: routes,
                              sysctls: sysctls, nftables: nftables, record: record, recordProblem: problem)
        state.notes = notes
        return state
    }

    /// A sysctl's value; nil when the namespace has no such key (an interface without IPv4, or gone meanwhile).
    private func readSysctl(_ key: String) throws(DoctorError) -> String? {
        do { return try namespace.readSysctl(key) } catch {
            if case .invalidSysctl = error { return nil }
            throw .namespace(error)
        }
    }
}
