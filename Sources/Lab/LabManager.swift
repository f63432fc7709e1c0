import Foundation
import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// Builds labs in network namespaces, converges them, and removes them without a trace.
///
/// Ownership: every namespace of a lab carries a marker, the alias of its `lo` ("returnpath lab=NAME"), and is
/// recorded in the lab's state file before it is created. `down` removes only namespaces that carry the marker (or
/// that the state file planned and that are still empty), so a foreign namespace with a similar name is left alone.
public final class LabManager: Sendable {
    public let store: LabStore
    /// The argument vector that starts the service process of a lab (`returnpath lab serve --name NAME`): the
    /// lab name is appended.
    public let serveCommand: [String]
    private let progress: @Sendable (String) -> Void

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

    // MARK: up

    /// Makes the lab `name` match `topology`: creates what is missing, fixes what differs, removes what the
    /// topology no longer has, and (re)starts the services. On failure everything this run created is removed.
    public func up(_ topology: Topology, name: String, source: String, text: String) throws(LabError) -> UpReport {
        try store.locked(name) { () throws(LabError) -> UpReport in
            var run = Run(lab: name, topology: topology, manager: self)
            var state = store.load(name) ?? LabState(name: name, namespaces: [], servicePID: nil, services: [],
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

    /// One `up`: what it created, so that a failure can undo exactly that.
    private struct Run {
        let lab: String
        let topology: Topology
        let manager: LabManager
        var created: [NetworkNamespace] = []
        var spawnedPID: pid_t?
        var sockets: [String: NetlinkSocket] = [:]   // by host name (and the switch)
        /// "host/interface" → ifindex: 100 + position, host interfaces first, then switch ports.
        let indices: [String: Int32]

        init(lab: String, topology: Topology, manager: LabManager) {
            self.lab = lab
            self.topology = topology
            self.manager = manager
            var keys = topology.hosts.flatMap { host in host.interfaces.filter { !$0.isLoopback }.map { "\(host.name)/\($0.name)" } }
            for (n, network) in topology.networks.enumerated() where topology.members(of: network.name).count > 2 {
                keys += topology.members(of: network.name).indices.map { "_switch/\(Run.switchPort(n, $0))" }
            }
            indices = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, Int32(100 + $0)) })
        }

        /// The switch end of member `member` of network number `network`.
        static func switchPort(_ network: Int, _ member: Int) -> String { "n\(network)m\(member)" }

        func fail(_ step: String, _ host: String?, _ error: any Error) -> LabError {
            if let error = error as? LabError { return error }
            return LabError(lab: lab, step: step, host: host, reason: "\(error)")
        }

        var needsSwitch: Bool { topology.networks.contains { topology.members(of: $0.name).count > 2 } }

        mutating func build(_ state: inout LabState) throws(LabError) -> UpReport {
            let store = manager.store
            var report = UpReport(createdNamespaces: [], reusedNamespaces: [], links: 0, addresses: 0, routes: 0, services: 0)

            // 1. Namespaces. Check every name first, so that a conflict stops us before anything is created.
            var plan: [(host: String, ns: NetworkNamespace)] = []
            for host in topology.hosts {
                plan.append((host.name, try namespace(Topology.namespaceName(lab: lab, host: host.name), host.name)))
            }
            if needsSwitch { plan.append(("_switch", try namespace(Topology.switchNamespaceName(lab: lab), nil))) }
            var owned: [NetworkNamespace] = []
            for (host, ns) in plan where ns.exists {
                guard manager.owns(ns, lab: lab, planned: state.namespaces.contains(ns.name ?? "")) else {
                    throw LabError(lab: lab, step: "create namespace \(ns)", host: host,
                                   reason: "a namespace of that name exists and is not part of this lab; remove it or choose another --name")
                }
                owned.append(ns)
            }
            manager.progress("namespaces: \(plan.count) (\(plan.count - owned.count) new)")
            for (host, ns) in plan {
                if owned.contains(ns) {
                    report.reusedNamespaces.append(ns.name ?? "")
                } else {
                    if !state.namespaces.contains(ns.name ?? "") {
                        state.namespaces.append(ns.name ?? "")
                        try store.save(state)  // recorded before it exists: a kill now still leaves it findable
                    }
                    do { try NetworkNamespace.create(ns.name ?? "") } catch { throw fail("create namespace \(ns)", host, error) }
                    created.append(ns)
                    report.createdNamespaces.append(ns.name ?? "")
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
                    sockets[host] = socket
                } catch { throw fail("mark namespace \(ns)", host, error) }
            }

            // 2. Links: a veth pair per two-member network, a bridge in the switch namespace for larger ones.
            report.links = try links()
            manager.progress("links: \(report.links)")
            // 3. Interfaces up, MTU, addresses.
            report.addresses = try addresses()
            manager.progress("addresses: \(report.addresses)")
            // 4. Sysctls (interfaces exist by now, for per-interface keys).
            for host in topology.hosts {
                let ns = namespaceOf(host.name)
                for sysctl in host.sysctls {
                    do { try ns.writeSysctl(sysctl.key, sysctl.value) } catch {
                        throw fail("set sysctl \(sysctl.key)=\(sysctl.value)", host.name, error)
                    }
                }
            }
            // 5. Routes.
            report.routes = try routes()
            manager.progress("routes: \(report.routes)")
            // 6. DNAT rules (a table of the lab's own in each host that has entries; none elsewhere).
            report.dnatChanges = try dnat()
            report.dnat = topology.dnat.count
            let changed = report.dnatChanges.filter { $0.value != .unchanged }.map { "\($0.value.rawValue) on \($0.key)" }.sorted()
            if report.dnat > 0 || !changed.isEmpty {
                manager.progress("dnat: \(report.dnat) (\(changed.isEmpty ? "unchanged" : changed.joined(separator: ", ")))")
            }
            // 7. Carrier on every interface (the kernel settles it asynchronously), so that the lab does not change
            //    after up returns.
            try waitForCarrier()
            // 8. Services.
            try services(&state)
            report.services = state.services.count
            if report.services > 0 { manager.progress("services: \(report.services) answering") }
            return report
        }

        func namespace(_ name: String, _ host: String?) throws(LabError) -> NetworkNamespace {
            do { return try NetworkNamespace(named: name) } catch { throw fail("name namespace", host, error) }
        }

        func namespaceOf(_ host: String) -> NetworkNamespace {
            sockets[host]?.namespace ?? .current
        }

        func socket(_ host: String) throws(LabError) -> NetlinkSocket {
            guard let socket = sockets[host] else {
                throw LabError(lab: lab, step: "open netlink socket", host: host, reason: "no namespace for this host")
            }
            return socket
        }

        /// Creates missing veth pairs and bridges, recreates broken ones, removes veths the topology lacks.
        func links() throws(LabError) -> Int {
            var count = 0
            var wanted: [String: Set<String>] = [:]   // host → interface names that should exist
            for (networkIndex, network) in topology.networks.enumerated() {
                let members = topology.members(of: network.name)
                if members.count == 2 {
                    let (a, b) = (members[0], members[1])
                    try pair(a.host.name, a.interface.name, b.host.name, b.interface.name, step: "network \(network.name)")
                    wanted[a.host.name, default: []].insert(a.interface.name)
                    wanted[b.host.name, default: []].insert(b.interface.name)
                    count += 1
                } else {
                    let bridge = "n\(networkIndex)"
                    let sw = try socket("_switch")
                    do {
                        if try sw.link(named: bridge)?.kind != "bridge" {
                            if try sw.link(named: bridge) != nil { try sw.deleteLink(bridge) }
                            try sw.createBridge(bridge)
                        }
                        try sw.setLink(bridge, up: true)
                    } catch { throw fail("create bridge for network \(network.name)", "_switch", error) }
                    wanted["_switch", default: []].insert(bridge)
                    for (memberIndex, member) in members.enumerated() {
                        let port = Run.switchPort(networkIndex, memberIndex)
                        try pair(member.host.name, member.interface.name, "_switch", port, step: "network \(network.name)")
                        do {
                            try sw.setMaster(port, bridge)
                            try sw.setLink(port, up: true)
                        } catch { throw fail("attach \(port) to bridge \(bridge)", "_switch", error) }
                        wanted[member.host.name, default: []].insert(member.interface.name)
                        wanted["_switch", default: []].insert(port)
                        count += 1
                    }
                }
            }
            // Veths and bridges the topology no longer has (from an earlier version of it).
            for (host, socket) in sockets {
                do {
                    for link in try socket.links() where (link.kind == "veth" || link.kind == "bridge")
                        && !(wanted[host]?.contains(link.name) ?? false) {
                        try socket.deleteLink(link.name)
                    }
                } catch { throw fail("remove links the topology no longer has", host, error) }
            }
            return count
        }

        /// The ifindex of a lab interface: unique in the lab, so that the two ends of a veth never share an index
        /// (see `createVeth`) and indices stay the same from one `up` to the next.
        func interfaceIndex(_ host: String, _ name: String) -> Int32 { indices["\(host)/\(name)"] ?? 0 }

        /// A veth pair hostA:nameA — hostB:nameB, kept when both ends exist as veths, else (re)created.
        func pair(_ hostA: String, _ nameA: String, _ hostB: String, _ nameB: String, step: String) throws(LabError) {
            let a = try socket(hostA), b = try socket(hostB)
            do {
                let endA = try a.link(named: nameA), endB = try b.link(named: nameB)
                if let endA, let endB, endA.kind == "veth", endB.kind == "veth",
                   endA.peerIndex == endB.index, endB.peerIndex == endA.index {
                    return
                }
                if endA != nil { try a.deleteLink(nameA) }
                if try b.link(named: nameB) != nil { try b.deleteLink(nameB) }
                try a.createVeth(nameA, in: a.namespace, peer: nameB, in: b.namespace,
                                 index: interfaceIndex(hostA, nameA), peerIndex: interfaceIndex(hostB, nameB))
            } catch { throw fail("create veth \(hostA):\(nameA) — \(hostB):\(nameB) (\(step))", hostA, error) }
        }

        /// Interfaces up with their MTU and exactly the declared global addresses.
        func addresses() throws(LabError) -> Int {
            var count = 0
            for host in topology.hosts {
                let socket = try socket(host.name)
                do {
                    let present = try socket.addresses()
                    for interface in host.interfaces {
                        if let mtu = interface.mtu { try socket.setMTU(interface.name, mtu) }
                        for prefix in interface.addresses {
                            let flags = prefix.family == .inet6 ? InterfaceAddress.noDAD : 0
                            try socket.addAddress(prefix, to: interface.name, flags: flags)
                            count += 1
                        }
                        for stale in present where stale.interface == interface.name && stale.scope == .universe
                            && !interface.addresses.contains(where: { $0 == stale.prefix }) {
                            try socket.deleteAddress(stale.prefix, from: interface.name)
                        }
                        if !interface.isLoopback { try socket.setLink(interface.name, up: true) }
                    }
                } catch { throw fail("configure interfaces", host.name, error) }
            }
            if let sw = sockets["_switch"] {
                do { for link in try sw.links() where !link.isUp { try sw.setLink(link.name, up: true) } }
                catch { throw fail("bring switch ports up", "_switch", error) }
            }
            return count
        }

        /// Waits (3 s at most) until every declared interface is operationally up.
        func waitForCarrier() throws(LabError) {
            let deadline = monotonicMilliseconds() + 3000
            for host in topology.hosts {
                let socket = try socket(host.name)
                let wanted = Set(host.interfaces.filter { !$0.isLoopback }.map(\.name))
                while true {
                    let down: [String]
                    do {
                        down = try socket.links().filter { wanted.contains($0.name) && !$0.isOperationallyUp }.map(\.name)
                    } catch { throw fail("wait for carrier", host.name, error) }
                    if down.isEmpty { break }
                    guard monotonicMilliseconds() < deadline else {
                        throw LabError(lab: lab, step: "wait for carrier", host: host.name,
                                       reason: "\(down.joined(separator: ", ")) still without carrier after 3 s")
                    }
                    usleep(1000)
                }
            }
        }

        /// Exactly the declared routes, with protocol "static" (the lab's own marker for routes).
        func routes() throws(LabError) -> Int {
            var count = 0
            for host in topology.hosts {
                let socket = try socket(host.name)
                let desired = host.routes.map { spec in
                    Route(destination: spec.destination, table: spec.table ?? RouteTable.main, proto: LabManager.routeProtocol,
                          gateway: spec.gateway, device: spec.device, preferredSource: spec.source, metric: spec.metric)
                }
                do {
                    try socket.replaceRoutes(desired).throwFirst()
                    for stale in try socket.routes() where stale.proto == LabManager.routeProtocol
                        && !desired.contains(where: { $0.destination == stale.destination && $0.table == stale.table
                                                      && $0.effectiveMetric == stale.effectiveMetric }) {
                        try socket.deleteRoute(stale)
                    }
                } catch { throw fail("install routes", host.name, error) }
                count += desired.count
            }
            return count
        }

        /// Every host's nat table made to hold exactly its DNAT entries.
        func dnat() throws(LabError) -> [String: LabNat.Change] {
            var changes: [String: LabNat.Change] = [:]
            for host in topology.hosts {
                // The host's own namespace, never the caller's: no socket for the host is an error.
                let namespace = try socket(host.name).namespace
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
                                      address: entry.service.address.description, port: entry.service.port,
                                      reply: entry.service.reply)
            }
            try manager.store.save(state)
            guard !state.services.isEmpty else { return }
            let pid = try manager.startServices(lab: lab) { pid throws(LabError) in
                state.servicePID = pid
                try manager.store.save(state)
            }
            spawnedPID = pid
        }

        /// Undoes this run: stops a service process it started, deletes the namespaces it created.
        mutating func rollback(_ state: inout LabState) {
            if let spawnedPID { manager.terminate(spawnedPID) }
            if spawnedPID != nil { state.servicePID = nil }
            sockets.removeAll()
            for ns in created.reversed() {
                try? ns.delete()
                state.namespaces.removeAll { $0 == ns.name }
            }
            if state.namespaces.isEmpty { manager.store.remove(lab) } else { try? manager.store.save(state) }
        }
    }

    // MARK: services

    /// Spawns `serveCommand NAME` detached (own session, stdio on /dev/null, stderr to the lab's log), reports its
    /// pid through `started` at once, then waits (5 s at most) for "ready" on a pipe.
    func startServices(lab: String, started: (pid_t) throws(LabError) -> Void) throws(LabError) -> pid_t {
        var readyPipe: [Int32] = [0, 0]
        guard pipe(&readyPipe) == 0 else {
            throw LabError(lab: lab, step: "start services", host: nil, reason: String(cString: strerror(errno)))
        }
        _ = fcntl(readyPipe[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(readyPipe[1], F_SETFD, FD_CLOEXEC)
        defer { close(readyPipe[0]) }
        let log = open(store.logPath(lab), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { if log >= 0 { close(log) } }
        let pid: pid_t
        do {
            pid = try NetworkNamespace.current.spawn(serveCommand + [lab], descriptors: [
                ChildDescriptor(nil, as: 0), ChildDescriptor(nil, as: 1),
                ChildDescriptor(log >= 0 ? log : nil, as: 2), ChildDescriptor(readyPipe[1], as: 3),
            ], newSession: true)
        } catch {
            close(readyPipe[1])
            throw LabError(lab: lab, step: "start services", host: nil, reason: error.description)
        }
        close(readyPipe[1])
        do { try started(pid) } catch {
            terminate(pid)
            throw error
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        let deadline = monotonicMilliseconds() + 5000
        while true {
            var pfd = pollfd(fd: readyPipe[0], events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, deadline - monotonicMilliseconds()))
            guard poll(&pfd, 1, left) > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { read(readyPipe[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text == "ready" else {
            terminate(pid)
            throw LabError(lab: lab, step: "start services", host: nil,
                           reason: text.isEmpty ? "the service process did not report ready within 5 s" : text)
        }
        return pid
    }

    /// Stops the lab's service process: the recorded pid and any process whose command line is this lab's
    /// `lab serve` (found in /proc, in case `up` was killed before it could record the pid).
    func stopServices(lab: String, state: LabState?) {
        var pids = Set(servicePIDs(lab: lab))
        if let pid = state?.servicePID, isServeProcess(pid, lab: lab) { pids.insert(pid) }
        for pid in pids { terminate(pid) }
    }

    func servicePIDs(lab: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { isServeProcess($0, lab: lab) }
    }

    /// True when /proc/PID/cmdline ends with this lab's serve arguments.
    func isServeProcess(_ pid: pid_t, lab: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        let tail = Array(serveCommand.dropFirst()) + [lab]
        return arguments.count == tail.count + 1 && Array(arguments.dropFirst()) == tail
    }

    /// SIGTERM, then SIGKILL after 1 s; reaps the child when it is ours.
    func terminate(_ pid: pid_t) {
        guard pid > 0, kill(pid, SIGTERM) == 0 else { return }
        for _ in 0..<200 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return }
            if !isAlive(pid) { return }
            usleep(5_000)
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    /// Running (not gone, not a zombie waiting for a parent that does not reap).
    func isAlive(_ pid: pid_t) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              let close = data.lastIndex(of: UInt8(ascii: ")")), close + 2 < data.count else { return false }
        return data[close + 2] != UInt8(ascii: "Z")
    }

    // MARK: down

    public struct DownReport: Sendable {
        public var existed: Bool
        public var removedNamespaces: [String]
        public var leftAlone: [String]
        public var stoppedServices: Bool
    }

    /// Removes the lab's service process and namespaces (their veths and bridges go with them) and its state.
    /// Works from the state file alone, or, without one, from the markers in namespaces named rp-NAME-…
    /// `beforeDeleting` sees each of the lab's namespaces just before it goes (to drop records kept about it).
    public func down(name: String, beforeDeleting: (NetworkNamespace) -> Void = { _ in }) throws(LabError) -> DownReport {
        try store.locked(name) { () throws(LabError) -> DownReport in
            let state = store.load(name)
            var candidates = state?.namespaces ?? []
            for ns in NetworkNamespace.list() where ns.hasPrefix("rp-\(name)-") && !candidates.contains(ns) {
                candidates.append(ns)
            }
            let hadServices = !servicePIDs(lab: name).isEmpty || state?.servicePID.map { isServeProcess($0, lab: name) } == true
            stopServices(lab: name, state: state)
            var report = DownReport(existed: state != nil, removedNamespaces: [], leftAlone: [], stoppedServices: hadServices)
            for candidate in candidates {
                guard let ns = try? NetworkNamespace(named: candidate) else { continue }
                let planned = state?.namespaces.contains(candidate) ?? false
                if !ns.exists {
                    // A file left by an interrupted create (not a mount): ours only if planned.
                    if planned, FileManager.default.fileExists(atPath: ns.path ?? "") { try? ns.delete() }
                    continue
                }
                guard owns(ns, lab: name, planned: planned) else {
                    report.leftAlone.append(candidate)
                    continue
                }
                beforeDeleting(ns)
                do throws(NamespaceError) { try ns.delete() } catch {
                    throw LabError(lab: name, step: "delete namespace \(candidate)", host: nil, reason: error.description)
                }
                report.removedNamespaces.append(candidate)
            }
            report.existed = report.existed || !report.removedNamespaces.isEmpty || hadServices
            store.remove(name)
            return report
        }
    }

    /// A namespace belongs to lab `lab` when its lo carries the lab's marker, or when the state planned it and it
    /// is still empty (up was killed between creating it and marking it).
    func owns(_ ns: NetworkNamespace, lab: String, planned: Bool) -> Bool {
        guard let socket = try? NetlinkSocket(namespace: ns), let links = try? socket.links() else { return false }
        if links.first(where: { $0.name == "lo" })?.alias == LabManager.marker(lab) { return true }
        return planned && links.count == 1 && links.first?.alias == nil
    }
}
