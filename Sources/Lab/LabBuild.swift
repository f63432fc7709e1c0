import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// One `lab up`: the build pipeline, and what it created, so that a failure can undo exactly that.
///
/// 1. namespaces (every name checked first), each marked as the lab's; 2. links (LabLinks.swift); 3. interfaces up,
/// MTU, addresses; 4. sysctls; 5. routes; 6. DNAT rules; 7. carrier on every interface (LabCarrier.swift);
/// 8. the service process (LabServices.swift).
struct LabBuild {
    let lab: String
    let topology: Topology
    let manager: LabManager
    var created: [NetworkNamespace] = []
    var spawnedPID: pid_t?
    /// One socket per node, in its namespace.
    var sockets: [LabNode: NetlinkSocket] = [:]
    /// Each lab interface's ifindex: 100 + position, host interfaces first, then switch ports (see `interfaceIndex`).
    let indices: [InterfaceKey: Int32]

    /// The first ifindex a lab interface gets.
    static let firstInterfaceIndex: Int32 = 100

    struct InterfaceKey: Hashable {
        var node: LabNode
        var name: String
    }

    init(lab: String, topology: Topology, manager: LabManager) {
        self.lab = lab
        self.topology = topology
        self.manager = manager
        var keys = topology.hosts.flatMap { host in
            host.interfaces.filter { !$0.isLoopback }.map { InterfaceKey(node: .host(host.name), name: $0.name) }
        }
        for (n, network) in topology.networks.enumerated() where topology.members(of: network.name).count > 2 {
            keys += topology.members(of: network.name).indices.map { InterfaceKey(node: .switch, name: Self.switchPort(n, $0)) }
        }
        indices = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, Self.firstInterfaceIndex + Int32($0)) })
    }

    func fail(_ step: String, _ node: LabNode?, _ error: any Error) -> LabError {
        if let error = error as? LabError { return error }
        return LabError(lab: lab, step: step, host: node?.description, reason: "\(error)")
    }

    var needsSwitch: Bool { topology.networks.contains { topology.members(of: $0.name).count > 2 } }

    mutating func build(_ state: inout LabState) throws(LabError) -> LabManager.UpReport {
        let store = manager.store
        var report = LabManager.UpReport(createdNamespaces: [], reusedNamespaces: [], links: 0, addresses: 0, routes: 0,
                                         services: 0)

        // 1. Namespaces. Check every name first, so that a conflict stops us before anything is created.
        var plan: [(node: LabNode, ns: NetworkNamespace)] = []
        for node in topology.hosts.map({ LabNode.host($0.name) }) + (needsSwitch ? [.switch] : []) {
            plan.append((node, try namespace(node)))
        }
        var owned: [NetworkNamespace] = []
        for (node, ns) in plan where ns.exists {
            let ownership: LabManager.Ownership
            do {
                ownership = try manager.owner(of: ns, lab: lab, planned: state.namespaces.contains(ns.name ?? ""))
            } catch { throw fail("create namespace \(ns)", node, error) }
            switch ownership {
            case .ours: owned.append(ns)
            case .gone: break
            case .foreign:
                throw LabError(lab: lab, step: "create namespace \(ns)", host: node.description,
                               reason: "a namespace of that name exists and is not part of this lab; remove it or choose another --name")
            }
        }
        manager.progress("namespaces: \(plan.count) (\(plan.count - owned.count) new)")
        for (node, ns) in plan {
            if owned.contains(ns) {
                report.reusedNamespaces.append(ns.name ?? "")
            } else {
                if !state.namespaces.contains(ns.name ?? "") {
                    state.namespaces.append(ns.name ?? "")
                    try store.save(state)  // recorded before it exists: a kill now still leaves it findable
                    LabFailpoint.step()
                }
                do { try NetworkNamespace.create(ns.name ?? "") } catch { throw fail("create namespace \(ns)", node, error) }
                created.append(ns)
                report.createdNamespaces.append(ns.name ?? "")
                LabFailpoint.step()
            }
            do {
                let socket = try NetlinkSocket(namespace: ns)
                try socket.setAlias("lo", LabManager.marker(lab))
                // Lab addresses are usable at once: no IPv6 duplicate address detection (a lab's addresses are
                // checked for duplicates by the topology file), so nothing changes after up returns.
                for key in ["net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"] {
                    if (try? ns.readSysctl(key)) != "0" { try ns.writeSysctl(key, "0") }
                }
                try socket.setLink("lo", up: true)
                sockets[node] = socket
            } catch { throw fail("mark namespace \(ns)", node, error) }
            LabFailpoint.step()
        }

        // 2. Links: a veth pair per two-member network, a bridge in the switch namespace for larger ones.
        report.links = try links()
        manager.progress("links: \(report.links)")
        LabFailpoint.step()
        // 3. Interfaces up, MTU, addresses.
        report.addresses = try addresses()
        manager.progress("addresses: \(report.addresses)")
        LabFailpoint.step()
        // 4. Sysctls (interfaces exist by now, for per-interface keys).
        for host in topology.hosts {
            let ns = try socket(.host(host.name)).namespace
            for sysctl in host.sysctls {
                do { try ns.writeSysctl(sysctl.key, sysctl.value) } catch {
                    throw fail("set sysctl \(sysctl.key)=\(sysctl.value)", .host(host.name), error)
                }
            }
        }
        LabFailpoint.step()
        // 5. Routes.
        report.routes = try routes()
        manager.progress("routes: \(report.routes)")
        LabFailpoint.step()
        // 6. DNAT rules (a table of the lab's own in each host that has entries; none elsewhere).
        report.dnatChanges = try dnat()
        report.dnat = topology.dnat.count
        let changed = report.dnatChanges.filter { $0.value != .unchanged }.map { "\($0.value.rawValue) on \($0.key)" }.sorted()
        if report.dnat > 0 || !changed.isEmpty {
            manager.progress("dnat: \(report.dnat) (\(changed.isEmpty ? "unchanged" : changed.joined(separator: ", ")))")
        }
        LabFailpoint.step()
        // 7. Carrier on every interface (the kernel settles it asynchronously), so that the lab does not change
        //    after up returns.
        try waitForCarrier()
        try waitForIPv6Addresses()
        LabFailpoint.step()
        // 8. Services.
        try services(&state)
        report.services = state.services.count
        if report.services > 0 { manager.progress("services: \(report.services) answering") }
        return report
    }

    func namespace(_ node: LabNode) throws(LabError) -> NetworkNamespace {
        do { return try NetworkNamespace(named: node.namespaceName(lab: lab)) } catch { throw fail("name namespace", node, error) }
    }

    func socket(_ node: LabNode) throws(LabError) -> NetlinkSocket {
        guard let socket = sockets[node] else {
            throw LabError(lab: lab, step: "open netlink socket", host: node.description, reason: "no namespace for this host")
        }
        return socket
    }

    /// Exactly the declared routes, with protocol "static" (the lab's own marker for routes).
    func routes() throws(LabError) -> Int {
        var count = 0
        for host in topology.hosts {
            let socket = try socket(.host(host.name))
            let desired = host.routes.map { spec in
                Route(destination: spec.destination, table: spec.table ?? RouteTable.main,
                      proto: spec.proto.map(RouteProtocol.init(rawValue:)) ?? LabManager.routeProtocol,
                      gateway: spec.gateway, device: spec.gateways.isEmpty ? spec.device : nil, preferredSource: spec.source,
                      metric: spec.metric, onlink: spec.onlink && spec.gateways.isEmpty,
                      nexthops: spec.gateways.map { Route.NextHop(gateway: $0, device: spec.device, onlink: spec.onlink) })
            }
            do {
                try socket.replaceRoutes(desired).throwFirst()
                let protocols = Set(desired.map(\.proto)).union([LabManager.routeProtocol])
                for stale in try socket.routes() where protocols.contains(stale.proto)
                    && !desired.contains(where: { $0.destination == stale.destination && $0.table == stale.table
                                                  && $0.effectiveMetric == stale.effectiveMetric }) {
                    try socket.deleteRoute(stale)
                }
            } catch { throw fail("install routes", .host(host.name), error) }
            count += desired.count
        }
        return count
    }

    /// Every host's nat table made to hold exactly its DNAT entries.
    func dnat() throws(LabError) -> [String: LabNat.Change] {
        var changes: [String: LabNat.Change] = [:]
        for host in topology.hosts {
            // The host's own namespace, never the caller's: no socket for the host is an error.
            let namespace = try socket(.host(host.name)).namespace
            do {
                changes[host.name] = try LabNat.converge(host.dnat, lab: lab, in: namespace)
            } catch {
                throw LabError(lab: lab, step: error.operation, host: host.name, reason: error.message)
            }
        }
        return changes
    }

    /// Stops the lab's old service process and starts one for the current services; waits until they listen.
    mutating func services(_ state: inout LabState) throws(LabError) {
        manager.stopServices(lab: lab, state: state)
        state.servicePID = nil
        state.services = topology.services.map { entry in
            LabState.ServiceEntry(host: entry.host.name, namespace: Topology.namespaceName(lab: lab, host: entry.host.name),
                                  address: entry.service.address, port: entry.service.port, reply: entry.service.reply)
        }
        try manager.store.save(state)
        guard !state.services.isEmpty else { return }
        let manager = self.manager
        let pid = try manager.startServices(lab: lab) { pid throws(LabError) in
            state.servicePID = pid
            try manager.store.save(state)
            LabFailpoint.step()
        }
        spawnedPID = pid
    }

    /// Undoes this run: stops a service process it started, deletes the namespaces it created.
    mutating func rollback(_ state: inout LabState) {
        if let spawnedPID { ProcessTable.terminate(spawnedPID) }
        if spawnedPID != nil { state.servicePID = nil }
        sockets.removeAll()
        for ns in created.reversed() {
            try? ns.delete()
            state.namespaces.removeAll { $0 == ns.name }
        }
        if state.namespaces.isEmpty { manager.store.remove(lab) } else { try? manager.store.save(state) }
    }
}
