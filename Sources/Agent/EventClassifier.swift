import CLinux
import Netlink
import ReturnRouting

/// Decides which kernel events can touch what returnpath owns, and so trigger a reconcile. Pure state: the
/// policy's interfaces and servicesFrom prefixes, the ownership, the port ids of our own netlink sockets (the
/// kernel puts the requester's port id into every notification its request caused: our own changes are not news),
/// and what it last saw of each watched link.
public struct EventClassifier: Sendable {
    public var interfaces: Set<String> = []
    /// servicesFrom: interface → the prefixes whose addresses are services.
    public var sources: [String: [IPPrefix]] = [:]
    public var ownership = Ownership()
    public var ownPorts: Set<UInt32> = []
    /// The policy depends on the node (spec.nodes, network:, gateway: auto): any link, any address and any route
    /// of a table returnpath does not own (but local) can change what it resolves to.
    public var followsNode = false
    /// Interface index → name, kept from link events (address events carry only the index).
    public var names: [Int32: String] = [:]
    /// Watched link → (index, the flags that matter: up, lower up, running).
    var links: [String: (index: Int32, flags: UInt32)] = [:]

    static let relevantFlags: UInt32 = clinux_IFF_UP | clinux_IFF_LOWER_UP | 0x40 /* IFF_RUNNING */

    public init() {}

    /// Watches what `policy` names.
    public mutating func watch(_ policy: Policy) {
        interfaces = Set(policy.interfaces.map(\.name))
        sources = [:]
        for entry in policy.interfaces {
            if let from = entry.servicesFrom { sources[from.interface, default: []] += from.prefixes }
        }
        ownership = policy.ownership
    }

    /// Starts from a link dump: names, and the state of the watched links (so that the first event of an unchanged
    /// link is not mistaken for news).
    public mutating func learn(_ all: [Link]) {
        names = Dictionary(all.map { ($0.index, $0.name) }, uniquingKeysWith: { _, last in last })
        links = [:]
        for link in all { links[link.name] = (link.index, link.flags & Self.relevantFlags) }
    }

    var watchedLinks: Set<String> { interfaces.union(sources.keys) }

    /// The trigger this event calls for, nil when it cannot touch what we own.
    public mutating func classify(_ event: NetlinkEvent) -> Trigger? {
        switch event.kind {
        case .link:
            guard let index = event.interfaceIndex else { return nil }
            let name = event.interfaceName ?? names[index]
            if event.deleted {
                names[index] = nil
            } else if let name {
                names[index] = name
            }
            guard let name, watchedLinks.contains(name) || followsNode else { return nil }
            if event.deleted {
                links[name] = nil
                return .link
            }
            let now = (index: index, flags: (event.linkFlags ?? 0) & Self.relevantFlags)
            let before = links[name]
            links[name] = now
            if let before, before.index == now.index, before.flags == now.flags { return nil }
            // Going down takes the routes through the link with it, and they cannot be put back until it is up
            // again (the kernel refuses a route via a down device): coming up is the event that matters.
            if now.flags & clinux_IFF_UP == 0 { return nil }
            return .link
        case .address:
            if followsNode, event.family == AddressFamily.inet.rawValue || event.address.map({ !$0.isLinkLocal }) == true {
                return .address
            }
            guard let index = event.interfaceIndex, let name = names[index] else { return nil }
            // A policy interface's addresses decide whether it can reach its gateways: IPv4's, and IPv6's global ones
            // (the link-local fe80:: address comes and goes with the link; a link-local gateway needs no address).
            if interfaces.contains(name) {
                if event.family == AddressFamily.inet.rawValue { return .address }
                if event.family == AddressFamily.inet6.rawValue, let address = event.address, !address.isLinkLocal { return .address }
            }
            if let prefixes = sources[name], let address = event.address, prefixes.contains(where: { $0.contains(address) }) {
                return .address
            }
            return nil
        case .route:
            guard !ownPorts.contains(event.sender), let table = event.table else { return nil }
            if ownership.ownsTable(table) { return .route }
            return followsNode && table != RouteTable.local ? .route : nil
        case .rule:
            guard !ownPorts.contains(event.sender), let priority = event.priority, ownership.ownsPriority(priority) else { return nil }
            return .rule
        case .nftables:
            guard !ownPorts.contains(event.sender), event.family == NftTable.inetFamily, event.nftTable == NftTable.name else { return nil }
            return .nftables
        }
    }
}
