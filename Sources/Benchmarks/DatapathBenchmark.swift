import Foundation
import Lab
import Namespace
import Netlink
import ReturnRouting

/// `bench datapath`: for N services and each strategy, the rate of new TCP connections from a client through the
/// router to the node's last service, beside the same lab with no policy and no asymmetry; plus cold apply time
/// next to `ip -batch` + `nft -f` of the same plan, no-op re-apply time, and one-service-change time.
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
        /// The best no-policy rate.
        public var baseline: Double
        public var rows: [Row]

        public var json: String {
            let object: [String: Any] = [
                "services": services, "seconds": seconds, "no_policy_rate": baseline,
                "strategies": rows.map { r -> [String: Any] in
                    ["strategy": r.strategy, "rate": r.rate, "rate_ratio": r.rate / r.baseline, "no_policy_rate": r.baseline,
                     "cold_apply_s": r.coldApply ?? 0, "cold_apply_ip_batch_nft_s": r.coldBaseline ?? 0,
                     "noop_apply_s": r.noop ?? 0, "one_service_change_s": r.change ?? 0]
                },
            ]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }

        public var table: String {
            var lines = [
                "returnpath bench datapath: \(services) services, client1 → router → node's last service, best of \(rounds) × \(seconds) s per rate",
                String(format: "no policy (symmetric by routing, measured before each strategy): best %.0f connections/s", baseline),
                "",
                "strategy        conn/s   vs none   cold apply   ip -batch+nft -f   ours/theirs   no-op apply   one service",
            ]
            for r in rows {
                lines.append(r.strategy.padding(toLength: 14, withPad: " ", startingAt: 0) + String(format: " %7.0f   %6.2f×   %8.3f s   %12.3f s      %6.2f×    %8.3f s   %8.3f s",
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
            _ = try manager.up(try Seed.topology(), name: lab, source: Seed.fileName, text: Seed.yaml)
        } catch let error as LabError { throw .lab(error) } catch { throw .failed("\(error)") }

        let (node, router, client) = try benchmarkStep {
            (try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "node")),
             try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "router")),
             try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "client1")))
        }
        // N service addresses 10.200.0.1… on the node's lo, routed by the router to eth1 and by the client to the router.
        let addresses = (0..<services).map { IPAddress.v4(0x0ac8_0000 + UInt32($0) + 1) }
        let nodeSocket = try benchmarkStep { () -> NetlinkSocket in
            let nodeSocket = try NetlinkSocket(namespace: node)
            for address in addresses { try nodeSocket.addAddress(IPPrefix(host: address), to: "lo") }
            let block = try IPPrefix(parsing: "10.200.0.0/16")
            try NetlinkSocket(namespace: router).replaceRoute(Route(destination: block, gateway: IPAddress("10.111.221.11"), device: "eth1"))
            try NetlinkSocket(namespace: client).replaceRoute(Route(destination: block, gateway: IPAddress("10.111.223.21"), device: "eth0"))
            try client.writeSysctl("net.ipv4.ip_local_port_range", "1024 65535")
            return nodeSocket
        }
        // The lab's own service server, on every address of the node: each connection is accepted and closed.
        let server: ServiceServer.Background
        do {
            server = try ServiceServer.Background([
                ServiceServer.listen(on: .v4(0), port: Self.port, in: node, reply: nil, backlog: Self.backlog),
            ])
        } catch { throw .service(error) }
        defer { server.stop() }
        let target = addresses[addresses.count - 1]

        // No policy, no asymmetry: the node's default route points at the router.
        let viaGateway = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.220.1"), device: "eth0")
        let viaRouter = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.221.21"), device: "eth1")
        /// Measured again before each strategy: the machine's speed drifts, and each ratio is to its neighbour.
        func noPolicyRate() throws(BenchmarkError) -> Double {
            do { try nodeSocket.replaceRoute(viaRouter) } catch { throw .netlink(error) }
            defer { _ = try? nodeSocket.replaceRoute(viaGateway) }
            return try rate(client, target)
        }
        var baseline = 0.0

        let returnRouter: ReturnRouter
        do { returnRouter = try ReturnRouter(namespace: node) } catch { throw .apply(error) }
        var rows: [Row] = []
        // A band wide enough for one source rule per service.
        var ownership = Ownership()
        ownership.priorityBase = 10_000
        ownership.priorityCount = UInt32(max(10_000, services + 200))
        let clients = try benchmarkStep { try IPPrefix(parsing: "10.111.223.0/24") }
        // ingress twice: with conntrack (the default) and with socket tracking.
        let runs = strategies.flatMap { strategy -> [(Strategy, Policy.IngressTracking)] in
            strategy == .ingress ? [(strategy, .conntrack), (strategy, .socket)] : [(strategy, .conntrack)]
        }
        for (strategy, tracking) in runs {
            let policy = Policy(name: "bench", interfaces: [Policy.Interface(
                name: "eth1", gateway: IPAddress.v4(0x0a6f_dd15), services: addresses.map { IPPrefix(host: $0) },
                clients: [clients])], ownership: ownership, ingressTracking: tracking)
            var row = Row(strategy: tracking == .socket ? "ingress-socket" : strategy.rawValue, rate: 0)
            row.baseline = try noPolicyRate()
            baseline = max(baseline, row.baseline)
            do {
                row.coldApply = try time { () throws(ApplyError) in _ = try returnRouter.apply(policy, strategy: strategy, dryRun: false) }
            } catch { throw .apply(error) }
            row.rate = try rate(client, target)
            var changed = policy
            changed.interfaces[0].services.append(IPPrefix(host: .v4(0x0ac9_0001)))
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
        return Result(services: services, seconds: seconds, rounds: rounds, baseline: baseline, rows: rows)
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

    /// The same plan the obvious way: one `ip -batch` for routes and rules, one `nft -f` for the table, sysctl writes.
    func baselineApply(_ plan: Plan, _ node: NetworkNamespace) throws(BenchmarkError) -> Double {
        let directory = FileManager.default.temporaryDirectory
        let batch = directory.appendingPathComponent("returnpath-datapath-\(getpid()).batch")
        let nft = directory.appendingPathComponent("returnpath-datapath-\(getpid()).nft")
        defer { try? FileManager.default.removeItem(at: batch); try? FileManager.default.removeItem(at: nft) }
        let lines = plan.routes.map { "route replace " + $0.description } + plan.rules.map { "rule add " + $0.description }
        try benchmarkStep {
            try (lines.joined(separator: "\n") + "\n").write(to: batch, atomically: true, encoding: .utf8)
            try (plan.nftables?.creationScript() ?? "").write(to: nft, atomically: true, encoding: .utf8)
        }
        return try time { () throws(BenchmarkError) in
            for sysctl in plan.sysctls {
                do throws(NamespaceError) { try node.writeSysctl(sysctl.key, sysctl.value) } catch { throw .namespace(error) }
            }
            _ = try runChecked(["ip", "-n", node.name ?? "", "-batch", batch.path], "ip -batch")
            if plan.nftables != nil {
                _ = try runChecked(["ip", "netns", "exec", node.name ?? "", "nft", "-f", nft.path], "nft -f")
            }
        }
    }
}
