import FoundationEssentials
import Lab
import Namespace
import Netlink
import ReturnRouting
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// apply as users run it: the `returnpath apply -f FILE` process in the node's namespace (as on a real node: no
/// --netns), next to the obvious alternative from files, `ip -batch FILE` then `nft -f FILE`, as processes, in the
/// same run, at N services (split between eth1 and eth2 of a seed lab of its own). Cold apply, no-op re-apply, one
/// service added; medians of `rounds`. With `prefixes`, the services are /30 prefixes (mark: interval sets).
public struct ApplyBenchmark: Sendable {
    public var services: [Int]
    public var strategy: Strategy
    public var prefixes = false
    public var rounds: Int
    public let manager: LabManager
    /// The returnpath executable to time.
    public var executable: String

    public init(services: [Int], strategy: Strategy, prefixes: Bool = false, rounds: Int, manager: LabManager, executable: String) {
        self.services = services
        self.prefixes = prefixes
        self.strategy = strategy
        self.rounds = rounds
        self.manager = manager
        self.executable = executable
    }

    public struct Row: Sendable {
        public var services: Int
        public var cold: Double
        public var baseline: Double
        public var noop: Double
        public var oneMore: Double
    }

    public struct Result: Sendable {
        public var strategy: Strategy
        public var prefixes = false
        public var rounds: Int
        public var rows: [Row]
        /// The binary's size, libraries and process start, measured first.
        public var start: StartCost

        public var table: String {
            let what = prefixes ? "prefixes" : "services", one = prefixes ? "one prefix added" : "one service added"
            var lines = ["returnpath bench apply: \(strategy.rawValue)\(prefixes ? " (services as /30 prefixes)" : ""), `returnpath apply -f FILE` as a process in the node's namespace vs",
                         "`ip -batch FILE` + `nft -f FILE` (same objects) as processes; median of \(rounds)", ""]
            lines += start.lines + ["", "\(what)   cold apply   ip -batch+nft -f   ours/theirs   no-op apply   \(one)"]
            for r in rows {
                lines.append(format("%8d   %8.3f s   %12.3f s      %6.2f×      %7.3f s   %9.3f s",
                                    r.services, r.cold, r.baseline, r.cold / r.baseline, r.noop, r.oneMore))
            }
            return lines.joined(separator: "\n")
        }

        public var json: String {
            var object: [String: Any] = ["strategy": strategy.rawValue, "prefixes": prefixes, "rounds": rounds, "runs": rows.map { r -> [String: Any] in
                ["services": r.services, "cold_apply_s": r.cold, "ip_batch_nft_s": r.baseline, "cold_ratio": r.cold / r.baseline,
                 "noop_apply_s": r.noop, "one_service_added_s": r.oneMore]
            }]
            for (key, value) in start.json { object[key] = value }
            return JSONText.serialize(object)
        }
    }

    public func run() throws(BenchmarkError) -> Result {
        let start = try StartCost.measure(executable, runs: max(21, rounds * 10))
        let scratch = ScratchNamespaces(tag: "ba")
        defer { scratch.removeAll() }
        let manager = self.manager
        let lab = "ba\(getpid())"
        scratch.onCleanup { _ = try? manager.down(name: lab) }
        return try benchmarkStep {
            _ = try manager.up(try Seed.topology(), name: lab, source: Seed.fileName, text: Seed.yaml)
            let node = try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "node"))
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rp-bench-apply-\(getpid())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            var rows: [Row] = []
            for count in services { rows.append(try measure(count, node: node, directory: directory)) }
            return Result(strategy: strategy, prefixes: prefixes, rounds: rounds, rows: rows, start: start)
        }
    }

    private func measure(_ count: Int, node: NetworkNamespace, directory: URL) throws -> Row {
        let policy = try Self.policy(count, strategy: strategy, prefixes: prefixes)
        let file = directory.appendingPathComponent("policy-\(count).yaml").path
        let more = directory.appendingPathComponent("policy-\(count)-plus-one.yaml").path
        try Self.yaml(policy, strategy: strategy).write(toFile: file, atomically: true, encoding: .utf8)
        var plusOne = policy
        // 10.250.0.1 (or 10.250.0.0/30): outside the generated range
        plusOne.interfaces[0].services.append(prefixes ? try IPPrefix(.v4(0x0afa_0000), length: 30) : IPPrefix(host: .v4(0x0afa_0001)))
        try Self.yaml(plusOne, strategy: strategy).write(toFile: more, atomically: true, encoding: .utf8)
        let (batch, nft) = try Self.baselineFiles(Planner.plan(policy, strategy: strategy), in: directory, count: count)

        func apply(_ path: String) throws -> Double {
            var result: ProgramRun?
            let seconds = try time { result = try ProgramRun.run([executable, "apply", "-f", path], in: node) }
            guard result?.status == 0 else { throw BenchmarkError.failed("apply -f \(path): \(result?.errors ?? "")") }
            return seconds
        }
        func reset() throws {
            let removed = try ProgramRun.run([executable, "remove"], in: node)
            guard removed.status == 0 else { throw BenchmarkError.failed("remove: \(removed.errors)") }
            for name in ["eth1", "eth2"] { try node.writeSysctl("net.ipv4.conf.\(name).src_valid_mark", "0") }
        }
        var cold: [Double] = [], noop: [Double] = [], oneMore: [Double] = [], baseline: [Double] = []
        for _ in 0..<rounds {
            try reset()
            cold.append(try apply(file))
            noop.append(try apply(file))
            oneMore.append(try apply(more))
            try reset()
            baseline.append(try time {
                for name in ["eth1", "eth2"] { try node.writeSysctl("net.ipv4.conf.\(name).src_valid_mark", "1") }
                let ip = try ProgramRun.run(["ip", "-batch", batch], in: node)
                guard ip.status == 0 else { throw BenchmarkError.failed("ip -batch: \(ip.errors)") }
                if let nft {
                    let run = try ProgramRun.run(["nft", "-f", nft], in: node)
                    guard run.status == 0 else { throw BenchmarkError.failed("nft -f: \(run.errors)") }
                }
            })
        }
        try reset()
        return Row(services: count, cold: median(cold), baseline: median(baseline), noop: median(noop), oneMore: median(oneMore))
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    /// N services 10.200.0.1… or, with `prefixes`, 10.200.0.0/30, 10.200.0.4/30… (adjacent; first half via eth1,
    /// second via eth2), with the seed's gateways and clients.
    static func policy(_ count: Int, strategy: Strategy, prefixes: Bool = false) throws -> Policy {
        let addresses = try (0..<count).map { i throws(PrefixError) in
            prefixes ? try IPPrefix(.v4(0x0ac8_0000 + 4 * UInt32(i)), length: 30) : IPPrefix(host: .v4(0x0ac8_0000 + UInt32(i) + 1))
        }
        var ownership = Ownership()
        if strategy == .source { ownership.priorityCount = UInt32(max(10_000, count + 200)) }
        return Policy(name: "bench", interfaces: [
            Policy.Interface(name: "eth1", gateway: .v4(0x0a6f_dd15), services: Array(addresses[..<(count / 2)]),
                             clients: [try IPPrefix(.v4(0x0a6f_df00), length: 24)]),
            Policy.Interface(name: "eth2", gateway: .v4(0x0a6f_de15), services: Array(addresses[(count / 2)...]),
                             clients: [try IPPrefix(.v4(0x0a6f_e000), length: 24)]),
        ], ownership: ownership)
    }

    /// The policy file a user would write.
    static func yaml(_ policy: Policy, strategy: Strategy) -> String {
        var text = "apiVersion: \(Policy.apiVersion)\nkind: \(Policy.kind)\nmetadata:\n  name: bench\nspec:\n  strategy: \(strategy.rawValue)\n  interfaces:\n"
        for entry in policy.interfaces {
            text += "    - name: \(entry.name)\n      gateway: \(entry.gateway)\n"
            text += "      clients: [\(entry.clients.map(\.cidr).joined(separator: ", "))]\n      services:\n"
            for service in entry.services { text += "        - \(service)\n" }
        }
        if policy.ownership.priorityCount != Ownership().priorityCount {
            text += "  ownership:\n    priorityCount: \(policy.ownership.priorityCount)\n"
        }
        return text
    }

    /// The same objects as `ip -batch` and `nft -f` files.
    static func baselineFiles(_ plan: Plan, in directory: URL, count: Int) throws -> (batch: String, nft: String?) {
        let batch = directory.appendingPathComponent("baseline-\(count).batch").path
        let lines = plan.routes.map { "route replace " + $0.ipArguments.joined(separator: " ") }
            + plan.rules.map { "rule add " + $0.ipArguments.joined(separator: " ") }
        try (lines.joined(separator: "\n") + "\n").write(toFile: batch, atomically: true, encoding: .utf8)
        guard let table = plan.nftables else { return (batch, nil) }
        let nft = directory.appendingPathComponent("baseline-\(count).nft").path
        try table.creationScript().write(toFile: nft, atomically: true, encoding: .utf8)
        return (batch, nft)
    }
}
