import FoundationEssentials
import Lab
import Namespace
import Netlink
import ReturnRouting
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// `bench datapath`: for N services and each strategy, the rate of new TCP connections from a client through the
/// router to the node's last service, beside the same lab with no policy and no asymmetry; plus cold apply time
/// next to `ip -batch` + `nft -f` of the same plan, no-op re-apply time, and one-service-change time. With mark,
/// also `mark-ipv6`: the same over IPv6 (N services in fd00:200::/64, a policy with `gateway6`), beside its own
/// IPv6 no-policy rate. The lab is the dual-stack seed (docs/seed-dualstack.yaml).
public struct DatapathBenchmark: Sendable {
    public var services: Int
    public var seconds: Double
    public var strategies: [Strategy]
    public var rounds: Int
    public let manager: LabManager
    /// The argument vector of the load generator (`returnpath bench connect`); its options are appended.
    public var connectCommand: [String]

    /// The port the node's server listens on (every address), and the load generator connects to.
    static let port: UInt16 = 4000
    /// The listen backlog of that server: deep enough for a burst of SYNs from the load generator.
    static let backlog: Int32 = 4096

    public init(services: Int, seconds: Double, strategies: [Strategy], rounds: Int, manager: LabManager,
                connectCommand: [String]) {
        self.services = services
        self.seconds = seconds
        self.strategies = strategies
        self.rounds = rounds
        self.manager = manager
        self.connectCommand = connectCommand
    }

    public struct Row: Sendable {
        public var strategy: String
        /// The family of the services, the client and the connections: .inet, or .inet6 for `mark-ipv6`.
        public var family: AddressFamily = .inet
        public var rate: Double
        /// The no-policy rate measured just before.
        public var baseline = 0.0
        public var coldApply: Double?
        public var coldBaseline: Double?
        public var noop: Double?
        public var change: Double?
    }

    public struct Result: Sendable {
        public var services: Int
        public var seconds: Double
        public var rounds: Int
        /// The best IPv4 no-policy rate.
        public var baseline: Double
        /// The best IPv6 no-policy rate (measured before `mark-ipv6`), nil when no IPv6 row was measured.
        public var baseline6: Double?
        public var rows: [Row]

        public var json: String {
            var object: [String: Any] = [
                "services": services, "seconds": seconds, "no_policy_rate": baseline,
                "strategies": rows.map { r -> [String: Any] in
                    ["strategy": r.strategy, "family": r.family == .inet6 ? "ipv6" : "ipv4", "rate": r.rate, "rate_ratio": r.rate / r.baseline, "no_policy_rate": r.baseline,
                     "cold_apply_s": r.coldApply ?? 0, "cold_apply_ip_batch_nft_s": r.coldBaseline ?? 0,
                     "noop_apply_s": r.noop ?? 0, "one_service_change_s": r.change ?? 0]
                },
            ]
            if let baseline6 { object["no_policy_rate_ipv6"] = baseline6 }
            return JSONText.serialize(object)
        }

        public var table: String {
            var lines = [
                "returnpath bench datapath: \(services) services, client1 → router → node's last service, best of \(rounds) × \(seconds) s per rate",
                format("no policy (symmetric by routing, measured before each strategy): best %.0f connections/s", baseline),
            ]
            if let baseline6 {
                lines.append(format("no policy over IPv6 (measured before mark-ipv6): best %.0f connections/s", baseline6))
            }
            lines += [
                "",
                "strategy        conn/s   vs none   cold apply   ip -batch+nft -f   ours/theirs   no-op apply   one service",
            ]
            for r in rows {
                lines.append(r.strategy.padded(to: 14) + format(" %7.0f   %6.2f×   %8.3f s   %12.3f s      %6.2f×    %8.3f s   %8.3f s",
                             r.rate, r.rate / r.baseline, r.coldApply ?? 0, r.coldBaseline ?? 0,
                             (r.coldApply ?? 0) / max(r.coldBaseline ?? 1, 1e-9), r.noop ?? 0, r.change ?? 0))
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Measures on a seed lab of its own (lab bd<pid>), taken down afterwards (also on SIGINT/SIGTERM).
    public func run() throws(BenchmarkError) -> Result {
        for tool in ["ip", "nft"] {
            do { _ = try ProgramRun.locate(tool) } catch { throw .program(error) }
        }
        let scratch = ScratchNamespaces(tag: "d")
        defer { scratch.removeAll() }
        let manager = self.manager
        let lab = "bd\(getpid())"
        scratch.onCleanup { _ = try? manager.down(name: lab) }
        do {
            let seed = BuiltinTopology.dualstack
            _ = try manager.up(try seed.topology(), name: lab, source: seed.fileName, text: seed.yaml)
        } catch let error as LabError { throw .lab(error) } catch { throw .failed("\(error)") }

        let (node, router, client) = try benchmarkStep {
            (try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "node")),
             try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "router")),
             try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "client1")))
        }
        // N service addresses 10.200.0.1… on the node's lo, routed by the router to eth1 and by the client to the router.
        let addresses = (0..<services).map { IPAddress.v4(0x0ac8_0000 + UInt32($0) + 1) }
        // With mark, the same over IPv6: N addresses fd00:200::1… on lo, routed to the node's fd00:221::11 and by the
        // client to the router's fd00:223::21 (the node's IPv6 default route is the lab's, via fd00:220::1).
        let measuresIPv6 = strategies.contains(.mark)
        let addresses6 = measuresIPv6 ? (0..<services).map { IPAddress.v6(0xfd00_0200_0000_0000, UInt64($0) + 1) } : []
        let nodeSocket = try benchmarkStep { () -> NetlinkSocket in
            let nodeSocket = try NetlinkSocket(namespace: node)
            let routerSocket = try NetlinkSocket(namespace: router), clientSocket = try NetlinkSocket(namespace: client)
            for address in addresses { try nodeSocket.addAddress(IPPrefix(host: address), to: "lo") }
            let block = try IPPrefix(parsing: "10.200.0.0/16")
            try routerSocket.replaceRoute(Route(destination: block, gateway: IPAddress("10.111.221.11"), device: "eth1"))
            try clientSocket.replaceRoute(Route(destination: block, gateway: IPAddress("10.111.223.21"), device: "eth0"))
            if measuresIPv6 {
                for address in addresses6 { try nodeSocket.addAddress(IPPrefix(host: address), to: "lo") }
                let block6 = try IPPrefix(parsing: "fd00:200::/64")
                try routerSocket.replaceRoute(Route(destination: block6, gateway: IPAddress("fd00:221::11"), device: "eth1"))
                try clientSocket.replaceRoute(Route(destination: block6, gateway: IPAddress("fd00:223::21"), device: "eth0"))
            }
            // The same local port range serves IPv6 connections too.
            try client.writeSysctl("net.ipv4.ip_local_port_range", "1024 65535")
            // The server's :: socket answers IPv6 only, beside the 0.0.0.0 one (this namespace only).
            try node.writeSysctl("net.ipv6.bindv6only", "1")
            return nodeSocket
        }
        // The kernel inserts an IPv6 address's local route from its address-configuration work queue, after the
        // netlink request has returned: 10,000 addresses on lo take tens of seconds to become reachable. Wait
        // until every one has its local route before measuring.
        if measuresIPv6 { try awaitLocalRoutes(nodeSocket, addresses6) }
        // The lab's own service server, on every address of the node (both families): each connection is accepted
        // and closed.
        let server: ServiceServer.Background
        do {
            server = try ServiceServer.Background([
                ServiceServer.listen(on: .v4(0), port: Self.port, in: node, reply: nil, backlog: Self.backlog),
                ServiceServer.listen(on: .v6(0, 0), port: Self.port, in: node, reply: nil, backlog: Self.backlog),
            ])
        } catch { throw .service(error) }
        defer { server.stop() }
        let target = addresses[addresses.count - 1]

        // No policy, no asymmetry: the node's default route points at the router.
        let viaGateway = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.220.1"), device: "eth0")
        let viaRouter = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.221.21"), device: "eth1")
        // The same for IPv6: the lab's ::/0 via fd00:220::1, or via the router's fd00:221::21.
        let viaGateway6 = Route(destination: .defaultRoute(.inet6), proto: .static, gateway: IPAddress("fd00:220::1"), device: "eth0")
        let viaRouter6 = Route(destination: .defaultRoute(.inet6), proto: .static, gateway: IPAddress("fd00:221::21"), device: "eth1")
        /// Measured again before each strategy: the machine's speed drifts, and each ratio is to its neighbour.
        func noPolicyRate(_ family: AddressFamily) throws(BenchmarkError) -> Double {
            let (symmetric, asymmetric) = family == .inet6 ? (viaRouter6, viaGateway6) : (viaRouter, viaGateway)
            do { try nodeSocket.replaceRoute(symmetric) } catch { throw .netlink(error) }
            defer { _ = try? nodeSocket.replaceRoute(asymmetric) }
            return try rate(client, family == .inet6 ? addresses6[addresses6.count - 1] : target)
        }
        var baseline = 0.0
        var baseline6: Double?

        let returnRouter: ReturnRouter
        do { returnRouter = try ReturnRouter(namespace: node) } catch { throw .apply(error) }
        var rows: [Row] = []
        // A band wide enough for one source rule per service.
        var ownership = Ownership()
        ownership.priorityBase = 10_000
        ownership.priorityCount = UInt32(max(10_000, services + 200))
        let (clients, clients6) = try benchmarkStep {
            (try IPPrefix(parsing: "10.111.223.0/24"), try IPPrefix(parsing: "fd00:223::/64"))
        }
        let gateway6 = IPAddress.v6(0xfd00_0221_0000_0000, 0x21)   // the router's fd00:221::21
        // ingress twice: with conntrack (the default) and with socket tracking; mark also over IPv6.
        let runs = strategies.flatMap { strategy -> [(Strategy, Policy.IngressTracking, AddressFamily)] in
            switch strategy {
            case .ingress: return [(strategy, .conntrack, .inet), (strategy, .socket, .inet)]
            case .mark: return [(strategy, .conntrack, .inet), (strategy, .conntrack, .inet6)]
            default: return [(strategy, .conntrack, .inet)]
            }
        }
        for (strategy, tracking, family) in runs {
            let ipv6 = family == .inet6
            let policy = Policy(name: "bench", interfaces: [Policy.Interface(
                name: "eth1", gateway: IPAddress.v4(0x0a6f_dd15), gateway6: ipv6 ? gateway6 : nil,
                services: (ipv6 ? addresses6 : addresses).map { IPPrefix(host: $0) },
                clients: [ipv6 ? clients6 : clients])], ownership: ownership, ingressTracking: tracking)
            var row = Row(strategy: tracking == .socket ? "ingress-socket" : strategy.rawValue + (ipv6 ? "-ipv6" : ""),
                          family: family, rate: 0)
            row.baseline = try noPolicyRate(family)
            if ipv6 { baseline6 = max(baseline6 ?? 0, row.baseline) } else { baseline = max(baseline, row.baseline) }
            do {
                row.coldApply = try time { () throws(ApplyError) in _ = try returnRouter.apply(policy, strategy: strategy, dryRun: false) }
            } catch { throw .apply(error) }
            row.rate = try rate(client, ipv6 ? addresses6[addresses6.count - 1] : target)
            var changed = policy
            changed.interfaces[0].services.append(IPPrefix(host: ipv6 ? .v6(0xfd00_0201_0000_0000, 1) : .v4(0x0ac9_0001)))
            do {
                row.noop = try time { () throws(ApplyError) in _ = try returnRouter.apply(policy, strategy: strategy, dryRun: false) }
                row.change = try time { () throws(ApplyError) in _ = try returnRouter.apply(changed, strategy: strategy, dryRun: false) }
                _ = try returnRouter.remove(dryRun: false)
            } catch { throw .apply(error) }
            row.coldBaseline = try baselineApply(Planner.plan(policy, strategy: strategy), node)
            // The baseline's objects sit in this policy's band with returnpath's protocol: an apply adopts them (it
            // finds nothing to change) and records the band, so that remove takes them away.
            do {
                _ = try returnRouter.apply(policy, strategy: strategy, dryRun: false)
                _ = try returnRouter.remove(dryRun: false)
            } catch { throw .apply(error) }
            rows.append(row)
        }
        return Result(services: services, seconds: seconds, rounds: rounds, baseline: baseline, baseline6: baseline6, rows: rows)
    }

    /// Waits (up to 5 minutes) until the node's local table has a route for each of `addresses`.
    func awaitLocalRoutes(_ node: NetlinkSocket, _ addresses: [IPAddress]) throws(BenchmarkError) {
        let wanted = Set(addresses)
        let deadline = Date().addingTimeInterval(300)
        while true {
            let present: Int
            do {
                present = try node.routes(family: .inet6, table: RouteTable.local)
                    .filter { $0.type == .local && $0.destination.length == 128 && wanted.contains($0.destination.address) }.count
            } catch { throw .netlink(error) }
            if present >= wanted.count { return }
            guard Date() < deadline else {
                throw .failed("only \(present) of \(wanted.count) IPv6 service addresses got their local route in 5 minutes")
            }
            usleep(200_000)
        }
    }

    /// Connections per second from the client to target:4000 (the best of `rounds`), by the load generator spawned
    /// in the client's namespace.
    func rate(_ client: NetworkNamespace, _ target: IPAddress) throws(BenchmarkError) -> Double {
        var best = 0.0
        for _ in 0..<max(1, rounds) { best = max(best, try oneRate(client, target)) }
        return best
    }

    func oneRate(_ client: NetworkNamespace, _ target: IPAddress) throws(BenchmarkError) -> Double {
        let run: ProgramRun
        do {
            run = try ProgramRun.run(connectCommand + ["--address", target.description, "--port", String(Self.port),
                                                       "--seconds", String(seconds)], in: client)
        } catch { throw .program(error) }
        guard run.status == 0, let counts = try? JSONDecoder().decode(ConnectLoad.Counts.self, from: Data(run.output.utf8)) else {
            throw .failed("load generator failed: \(run.output)\(run.errors)")
        }
        return Double(counts.completed) / counts.seconds
    }

    /// The same plan the obvious way: one `ip -batch` for routes and rules (and `ip -6 -batch` for the IPv6 ones: a
    /// batch line takes its family from the command line), one `nft -f` for the table, sysctl writes.
    func baselineApply(_ plan: Plan, _ node: NetworkNamespace) throws(BenchmarkError) -> Double {
        let directory = FileManager.default.temporaryDirectory
        let batch = directory.appendingPathComponent("returnpath-datapath-\(getpid()).batch")
        let batch6 = directory.appendingPathComponent("returnpath-datapath-\(getpid())-6.batch")
        let nft = directory.appendingPathComponent("returnpath-datapath-\(getpid()).nft")
        defer {
            for file in [batch, batch6, nft] { try? FileManager.default.removeItem(at: file) }
        }
        func lines(_ family: AddressFamily) -> [String] {
            plan.routes.filter { $0.family == family }.map { "route replace " + $0.description }
                + plan.rules.filter { $0.family == family }.map { "rule add " + $0.description }
        }
        let (lines4, lines6) = (lines(.inet), lines(.inet6))
        try benchmarkStep {
            try (lines4.joined(separator: "\n") + "\n").write(to: batch, atomically: true, encoding: .utf8)
            try (lines6.joined(separator: "\n") + "\n").write(to: batch6, atomically: true, encoding: .utf8)
            try (plan.nftables?.creationScript() ?? "").write(to: nft, atomically: true, encoding: .utf8)
        }
        return try time { () throws(BenchmarkError) in
            for sysctl in plan.sysctls {
                do throws(NamespaceError) { try node.writeSysctl(sysctl.key, sysctl.value) } catch { throw .namespace(error) }
            }
            _ = try runChecked(["ip", "-n", node.name ?? "", "-batch", batch.path], "ip -batch")
            if !lines6.isEmpty {
                _ = try runChecked(["ip", "-6", "-n", node.name ?? "", "-batch", batch6.path], "ip -6 -batch")
            }
            if plan.nftables != nil {
                _ = try runChecked(["ip", "netns", "exec", node.name ?? "", "nft", "-f", nft.path], "nft -f")
            }
        }
    }
}
