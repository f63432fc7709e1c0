import ArgumentParser
import Foundation
import Lab
import Namespace
import Netlink
import ReturnRouting

/// `returnpath bench datapath`: for N services and each strategy, the rate of new TCP connections from a client
/// through the router to the node's last service, beside the same lab with no policy and no asymmetry; plus cold
/// apply time next to `ip -batch` + `nft -f` of the same plan, no-op re-apply time, and one-service-change time.
struct BenchDatapath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datapath",
        abstract: "Connection rate per strategy at N services, and apply times against ip -batch + nft -f.")

    @Option(name: .long, help: "Service addresses on the node (the probed one is the last).")
    var services = 10_000

    @Option(name: .long, help: "Seconds of load per measurement.")
    var seconds: Double = 2

    @Option(name: .long, parsing: .upToNextOption, help: "Strategies to measure.")
    var strategies: [Strategy] = Strategy.allCases

    @Option(name: .long, help: "Rate measurements per configuration; the best is kept (the machine's own load adds noise).")
    var rounds = 3

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (1...20_000).contains(services) else { throw ValidationError("--services must be between 1 and 20000 (the rule band must stay below 32764)") }
        guard seconds > 0 && seconds <= 30 else { throw ValidationError("--seconds must be in (0, 30]") }
    }

    struct Row {
        var strategy: String
        var rate: Double
        /// The no-policy rate measured just before.
        var baseline = 0.0
        var coldApply: Double?
        var coldBaseline: Double?
        var noop: Double?
        var change: Double?
    }

    func run() throws {
        for tool in ["ip", "nft"] { _ = try ProgramRun.locate(tool) }
        let scratch = ScratchNamespaces(tag: "d")
        defer { scratch.removeAll() }
        let manager = LabSupport.manager()
        let lab = "bd\(getpid())"
        scratch.onCleanup { _ = try? manager.down(name: lab) }
        let seed = try LabSupport.load(file: nil)
        _ = try manager.up(seed.topology, name: lab, source: seed.source, text: seed.text)

        let node = try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "node"))
        let router = try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "router"))
        let client = try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "client1"))
        let nodeSocket = try NetlinkSocket(namespace: node)
        // N service addresses 10.200.0.1… on the node's lo, routed by the router to eth1 and by the client to the router.
        let addresses = (0..<services).map { IPAddress.v4(0x0ac8_0000 + UInt32($0) + 1) }
        for address in addresses { try nodeSocket.addAddress(IPPrefix(host: address), to: "lo") }
        let block = try IPPrefix(parsing: "10.200.0.0/16")
        try NetlinkSocket(namespace: router).replaceRoute(Route(destination: block, gateway: IPAddress("10.111.221.11"), device: "eth1"))
        try NetlinkSocket(namespace: client).replaceRoute(Route(destination: block, gateway: IPAddress("10.111.223.21"), device: "eth0"))
        try client.writeSysctl("net.ipv4.ip_local_port_range", "1024 65535")
        let server = try AcceptServer(namespace: node, port: 4000)
        defer { server.stop() }
        let target = addresses[addresses.count - 1]

        // No policy, no asymmetry: the node's default route points at the router.
        let viaGateway = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.220.1"), device: "eth0")
        let viaRouter = Route(destination: .defaultRoute(.inet), proto: .static, gateway: IPAddress("10.111.221.21"), device: "eth1")
        /// Measured again before each strategy: the machine's speed drifts, and each ratio is to its neighbour.
        func noPolicyRate() throws -> Double {
            try nodeSocket.replaceRoute(viaRouter)
            defer { _ = try? nodeSocket.replaceRoute(viaGateway) }
            return try rate(client, target)
        }
        var baseline = 0.0

        let router_ = try ReturnRouter(namespace: node)
        var rows: [Row] = []
        // A band wide enough for one source rule per service.
        var ownership = Ownership()
        ownership.priorityBase = 10_000
        ownership.priorityCount = UInt32(max(10_000, services + 200))
        for strategy in strategies {
            let policy = Policy(name: "bench", interfaces: [Policy.Interface(
                name: "eth1", gateway: IPAddress.v4(0x0a6f_dd15), services: addresses.map { IPPrefix(host: $0) },
                clients: [try IPPrefix(parsing: "10.111.223.0/24")])], ownership: ownership)
            var row = Row(strategy: strategy.rawValue, rate: 0)
            row.baseline = try noPolicyRate()
            baseline = max(baseline, row.baseline)
            row.coldApply = try time { _ = try router_.apply(policy, strategy: strategy, dryRun: false) }
            row.rate = try rate(client, target)
            row.noop = try time { _ = try router_.apply(policy, strategy: strategy, dryRun: false) }
            var changed = policy
            changed.interfaces[0].services.append(IPPrefix(host: .v4(0x0ac9_0001)))
            row.change = try time { _ = try router_.apply(changed, strategy: strategy, dryRun: false) }
            _ = try router_.remove(dryRun: false)
            row.coldBaseline = try baselineApply(Planner.plan(policy, strategy: strategy), node)
            _ = try router_.remove(dryRun: false)
            rows.append(row)
        }

        if json {
            let object: [String: Any] = [
                "services": services, "seconds": seconds, "no_policy_rate": baseline,
                "strategies": rows.map { r -> [String: Any] in
                    ["strategy": r.strategy, "rate": r.rate, "rate_ratio": r.rate / r.baseline, "no_policy_rate": r.baseline,
                     "cold_apply_s": r.coldApply ?? 0, "cold_apply_ip_batch_nft_s": r.coldBaseline ?? 0,
                     "noop_apply_s": r.noop ?? 0, "one_service_change_s": r.change ?? 0]
                },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("returnpath bench datapath: \(services) services, client1 → router → node's last service, best of \(rounds) × \(seconds) s per rate")
        print(String(format: "no policy (symmetric by routing, measured before each strategy): best %.0f connections/s", baseline))
        print("")
        print("strategy  conn/s   vs none   cold apply   ip -batch+nft -f   ours/theirs   no-op apply   one service")
        for r in rows {
            print(r.strategy.padding(toLength: 8, withPad: " ", startingAt: 0) + String(format: " %7.0f   %6.2f×   %8.3f s   %12.3f s      %6.2f×    %8.3f s   %8.3f s",
                         r.rate, r.rate / r.baseline, r.coldApply ?? 0, r.coldBaseline ?? 0,
                         (r.coldApply ?? 0) / max(r.coldBaseline ?? 1, 1e-9), r.noop ?? 0, r.change ?? 0))
        }
    }

    /// Connections per second from the client to target:4000, by the load generator spawned in the client's namespace.
    func rate(_ client: NetworkNamespace, _ target: IPAddress) throws -> Double {
        var best = 0.0
        for _ in 0..<max(1, rounds) { best = max(best, try oneRate(client, target)) }
        return best
    }

    func oneRate(_ client: NetworkNamespace, _ target: IPAddress) throws -> Double {
        let run = try ProgramRun.run([LabSupport.executablePath(), "bench", "connect", "--address", target.description,
                                      "--port", "4000", "--seconds", String(seconds)], in: client)
        guard run.status == 0, let object = try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any],
              let completed = object["completed"] as? Int, let elapsed = object["seconds"] as? Double else {
            throw Failure(description: "load generator failed: \(run.output)\(run.errors)")
        }
        return Double(completed) / elapsed
    }

    /// The same plan the obvious way: one `ip -batch` for routes and rules, one `nft -f` for the table, sysctl writes.
    func baselineApply(_ plan: Plan, _ node: NetworkNamespace) throws -> Double {
        let directory = FileManager.default.temporaryDirectory
        let batch = directory.appendingPathComponent("returnpath-datapath-\(getpid()).batch")
        let nft = directory.appendingPathComponent("returnpath-datapath-\(getpid()).nft")
        defer { try? FileManager.default.removeItem(at: batch); try? FileManager.default.removeItem(at: nft) }
        let lines = plan.routes.map { "route replace " + $0.description } + plan.rules.map { "rule add " + $0.description }
        try (lines.joined(separator: "\n") + "\n").write(to: batch, atomically: true, encoding: .utf8)
        try (plan.nftables?.creationScript() ?? "").write(to: nft, atomically: true, encoding: .utf8)
        return try time {
            for sysctl in plan.sysctls { try node.writeSysctl(sysctl.key, sysctl.value) }
            let ip = try ProgramRun.run(["ip", "-n", node.name ?? "", "-batch", batch.path])
            guard ip.status == 0 else { throw Failure(description: "ip -batch: \(ip.errors)") }
            if plan.nftables != nil {
                let run = try ProgramRun.run(["ip", "netns", "exec", node.name ?? "", "nft", "-f", nft.path])
                guard run.status == 0 else { throw Failure(description: "nft -f: \(run.errors)") }
            }
        }
    }
}

/// Accepts and closes connections on 0.0.0.0:PORT inside a namespace, on its own thread, until stopped.
final class AcceptServer: @unchecked Sendable {
    private let fd: Int32
    private let thread: Thread

    init(namespace: NetworkNamespace, port: UInt16) throws {
        let fd = try namespace.socket(domain: AF_INET, type: Int32(SOCK_STREAM.rawValue), protocol: 0)
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        let bound = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 4096) == 0 else {
            close(fd)
            throw Failure(description: "listen on port \(port) in \(namespace): \(String(cString: strerror(errno)))")
        }
        let listener = fd
        thread = Thread {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return
                }
                close(client)
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
