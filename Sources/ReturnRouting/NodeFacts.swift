import Netlink

/// What resolving a policy reads of a node: its name, its interfaces, their addresses, and the routes of tables
/// returnpath does not own. Read once per resolution by `ReturnRouter.nodeFacts`, or recorded for tests.
public struct NodeFacts: Sendable, Equatable {
    /// The node's name and where it came from ("--node", "NODE_NAME", "lab host", "hostname").
    public var name: String
    public var nameSource: String
    /// Interface names.
    public var links: [String]
    /// Every address with the interface it is on.
    public var addresses: [(interface: String, prefix: IPPrefix)]
    /// Routes with a gateway, of tables returnpath does not own, main first (the order gateway: auto looks in).
    public var routes: [Route]

    public init(name: String, nameSource: String, links: [String], addresses: [(interface: String, prefix: IPPrefix)] = [],
                routes: [Route] = []) {
        self.name = name
        self.nameSource = nameSource
        self.links = links
        self.addresses = addresses
        self.routes = routes
    }

    public static func == (a: NodeFacts, b: NodeFacts) -> Bool {
        a.name == b.name && a.nameSource == b.nameSource && a.links == b.links && a.routes == b.routes
            && a.addresses.map { "\($0.interface) \($0.prefix)" } == b.addresses.map { "\($0.interface) \($0.prefix)" }
    }

    /// The node's name: the command line's, else $NODE_NAME (the DaemonSet sets it from spec.nodeName), else
    /// `fallback` (a lab host's name), else the kernel's hostname.
    public static func nodeName(given: String?, environment: [String: String], fallback: String? = nil,
                                hostname: () -> String?) -> (name: String, source: String) {
        if let given, !given.isEmpty { return (given, "--node") }
        if let env = environment["NODE_NAME"], !env.isEmpty { return (env, "NODE_NAME") }
        if let fallback { return (fallback, "lab host") }
        return (hostname() ?? "localhost", "hostname")
    }
}

extension ReturnRouter {
    /// The node's state a resolution of `document` needs; nothing is dumped that it does not use (a document
    /// without `network:` or `auto` needs no addresses or routes).
    public func nodeFacts(for document: PolicyDocument, name: (name: String, source: String)) throws(ApplyError) -> NodeFacts {
        let entries = document.interfaces + document.nodes.flatMap(\.interfaces)
        do {
            var facts = NodeFacts(name: name.name, nameSource: name.source, links: try socket.links().map(\.name))
            if entries.contains(where: { $0.network != nil }) {
                facts.addresses = try socket.addresses().map { (interface: $0.interface, prefix: $0.prefix) }
            }
            if entries.contains(where: \.needsNode) {
                let own = document.ownership
                // One dump of every table; main first, then the others by id (the order gateway: auto looks in).
                let all = try socket.routes().filter { !$0.gateways.isEmpty && $0.table != RouteTable.local && !own.ownsTable($0.table) }
                facts.routes = all.filter { $0.table == RouteTable.main } + all.filter { $0.table != RouteTable.main }.sorted { $0.table < $1.table }
            }
            return facts
        } catch {
            throw .netlink(error)
        }
    }
}
