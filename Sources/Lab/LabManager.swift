import Namespace
import Netlink
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Builds labs in network namespaces, converges them, and removes them without a trace.
///
/// Ownership: every namespace of a lab carries a marker, the alias of its `lo` ("returnpath lab=NAME"), and is
/// recorded in the lab's state file before it is created. `down` removes only namespaces that carry the marker (or
/// that the state file planned and that are still empty), so a foreign namespace with a similar name is left alone.
///
/// The work is split by concept: the build pipeline (LabBuild.swift), links and addresses (LabLinks.swift), carrier
/// (LabCarrier.swift), the service process (LabServices.swift) and teardown (LabTeardown.swift).
public final class LabManager: Sendable {
    public let store: LabStore
    /// The argument vector that starts the service process of a lab (`returnpath lab serve --name NAME`): the
    /// lab name is appended.
    public let serveCommand: [String]
    let progress: @Sendable (String) -> Void

    /// The protocol number of routes the lab installs (iproute2's "static").
    public static let routeProtocol = RouteProtocol.static

    public init(store: LabStore = LabStore(), serveCommand: [String], progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.store = store
        self.serveCommand = serveCommand
        self.progress = progress
    }

    public static func marker(_ lab: String) -> String { "returnpath lab=\(lab)" }

    public struct UpReport: Sendable {
        public var createdNamespaces: [String]
        public var reusedNamespaces: [String]
        public var links: Int
        public var addresses: Int
        public var routes: Int
        public var services: Int
        /// DNAT entries installed (or found in place), and how each host's nat table changed.
        public var dnat: Int = 0
        public var dnatChanges: [String: LabNat.Change] = [:]
    }

    /// Makes the lab `name` match `topology`: creates what is missing, fixes what differs, removes what the
    /// topology no longer has, and (re)starts the services. On failure everything this run created is removed.
    public func up(_ topology: Topology, name: String, source: String, text: String) throws(LabError) -> UpReport {
        try store.locked(name) { () throws(LabError) -> UpReport in
            var run = LabBuild(lab: name, topology: topology, manager: self)
            // up rewrites the state; one that does not decode is replaced (the namespaces are found by their markers).
            var state = (try? store.load(name)) ?? LabState(name: name, namespaces: [], servicePID: nil, services: [],
                                                     source: source, topology: text, complete: false)
            state.source = source
            state.topology = text
            state.complete = false
            do throws(LabError) {
                let report = try run.build(&state)
                state.complete = true
                try store.save(state)
                return report
            } catch {
                run.rollback(&state)
                throw error
            }
        }
    }
}

/// Where a lab's links live: one of its hosts, or the switch, the namespace that holds the bridges of networks
/// with more than two members.
enum LabNode: Hashable, Sendable, CustomStringConvertible {
    case host(String)
    case `switch`

    /// The host's name; for the switch "_switch", the suffix of its namespace (rp-LAB-_switch), as errors name it.
    var description: String {
        switch self {
        case .host(let name): return name
        case .switch: return "_switch"
        }
    }

    func namespaceName(lab: String) -> String {
        switch self {
        case .host(let name): return Topology.namespaceName(lab: lab, host: name)
        case .switch: return Topology.switchNamespaceName(lab: lab)
        }
    }
}

/// A test hook for crash safety, like apply's: with `RETURNPATH_LAB_FAILPOINT=N` in the environment, `lab up`
/// kills itself with SIGKILL right after its N-th step (a state save, a namespace created or marked, links,
/// addresses, sysctls, routes, DNAT, carrier, the service process). Tests run it with N = 1, 2, … and check that
/// `lab down` still leaves nothing.
enum LabFailpoint {
    private static let target: Int? = getenv("RETURNPATH_LAB_FAILPOINT").flatMap { Int(String(cString: $0)) }
    private static let count = Atomic<Int>(0)

    static func step() {
        guard let target else { return }
        if count.add(1, ordering: .relaxed).newValue == target { kill(getpid(), SIGKILL) }
    }
}
