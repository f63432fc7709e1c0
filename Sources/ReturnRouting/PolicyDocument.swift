import Netlink

/// A policy as its file says it, before it meets a node: entries may name their interface by the network it is on
/// (`network:`), take their gateway from the node (`gateway: auto`), and `spec.nodes` may give some nodes other
/// entries. `PolicyResolver` turns it into the `Policy` one node applies.
public struct PolicyDocument: Sendable, Equatable {
    /// A gateway as written: an address, or `auto` (the one the node's own routes give the interface).
    public enum Gateway: Sendable, Equatable {
        case address(IPAddress)
        case auto(AddressFamily)

        public var family: AddressFamily {
            switch self {
            case .address(let address): return address.family
            case .auto(let family): return family
            }
        }
    }

    /// One item of `spec.interfaces` (or of a `spec.nodes` item's `interfaces`).
    public struct Entry: Sendable, Equatable {
        public var name: String?
        /// The interface that has an address inside this prefix.
        public var network: IPPrefix?
        /// `gateway:` (either family) and `gateway6:`.
        public var gateway: Gateway?
        public var gateway6: Gateway?
        /// `gateways: [A, B]`: two or more routers (either family), instead of gateway/gateway6.
        public var gateways: [IPAddress] = []
        public var onlink = false
        public var services: [IPPrefix] = []
        public var clients: [IPPrefix] = []
        public var servicesFrom: Policy.ServicesFrom?
        /// FILE:LINE of the entry.
        public var origin: String

        public init(name: String?, network: IPPrefix? = nil, gateway: Gateway?, gateway6: Gateway? = nil,
                    gateways: [IPAddress] = [], origin: String) {
            self.name = name
            self.network = network
            self.gateway = gateway
            self.gateway6 = gateway6
            self.gateways = gateways
            self.origin = origin
        }

        /// How the entry is named for the user: its interface, else its network.
        public var label: String {
            if let name { return name }
            return network.map { "network \($0.cidr)" } ?? "interface"
        }

        /// The families the entry has a router of, whatever the node says.
        public var families: Set<AddressFamily> {
            var set = Set(gateways.map(\.family))
            if let gateway { set.insert(gateway.family) }
            if gateway6 != nil { set.insert(.inet6) }
            return set
        }

        /// Whether resolving the entry needs the node's state (its addresses or routes).
        public var needsNode: Bool {
            if network != nil { return true }
            for case .auto? in [gateway, gateway6] { return true }
            return false
        }
    }

    /// One item of `spec.nodes`.
    public struct NodeGroup: Sendable, Equatable {
        /// Globs (fnmatch: `*`, `?`, `[…]`) over the node's name.
        public var names: [String]
        public var interfaces: [Entry]
        /// Replaces spec.exempt for these nodes when given.
        public var exempt: [IPPrefix]?
        /// FILE:LINE of the item.
        public var origin: String
        /// Its place in spec.nodes, from 1.
        public var index: Int
    }

    public var name: String
    public var strategy: Strategy?
    public var interfaces: [Entry]
    public var exempt: [IPPrefix]
    public var ownership: Ownership
    public var ingressTracking: Policy.IngressTracking
    public var nodes: [NodeGroup]

    /// Whether resolving the document for a node needs the node's name or state.
    public var needsNode: Bool { !nodes.isEmpty || interfaces.contains { $0.needsNode } }
}
