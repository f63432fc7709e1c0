import FoundationEssentials
import Namespace
import Netlink
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// `bench netlink`: programs N rules and N routes with our rtnetlink layer and with `ip -batch`, each in a fresh
/// throwaway namespace, dumps them, and reports times and the ratio ours / ip -batch.
public struct NetlinkBenchmark: Sendable {
    /// Rules and routes each.
    public var count: Int
    /// Rules added by one `ip` process each, for the per-process reference (0 to skip).
    public var perProcessCount: Int
    /// Each figure is the best of this many rounds.
    public var rounds: Int

    public init(count: Int, perProcessCount: Int, rounds: Int) {
        self.count = count
        self.perProcessCount = perProcessCount
        self.rounds = rounds
    }

    /// The best of `rounds` measurements; the namespaces are gone afterwards (also on SIGINT/SIGTERM).
    public func run() throws(BenchmarkError) -> Result {
        do { _ = try ProgramRun.locate("ip") } catch { throw .program(error) }
        let scratch = ScratchNamespaces(tag: "b")
        defer { scratch.removeAll() }
        var best = try measure(scratch)
        for _ in 1..<max(1, rounds) { best = best.bestOf(try measure(scratch)) }
        return best
    }

    public struct Result: Sendable {
        public var count: Int
        public var rulesAdd, rulesAddIPBatch, routesAdd, routesAddIPBatch, rulesDump, rulesDumpIP, routesDump: Double
        public var perProcessCount: Int
        public var perProcessRule: Double?

        public var table: String {
            func s(_ t: Double) -> String { format("%8.3f s", t) }
            func ratio(_ a: Double, _ b: Double) -> String { format("%5.2f×", a / b) }
            var lines = [
                "returnpath bench netlink: \(count) rules and \(count) routes, fresh namespaces for each run, best of the rounds",
                "",
                "operation                     returnpath     ip -batch   ours/ip",
                "add \(pad(count)) rules          \(s(rulesAdd))    \(s(rulesAddIPBatch))    \(ratio(rulesAdd, rulesAddIPBatch))",
                "add \(pad(count)) routes         \(s(routesAdd))    \(s(routesAddIPBatch))    \(ratio(routesAdd, routesAddIPBatch))",
                "dump \(pad(count)) rules         \(s(rulesDump))    \(s(rulesDumpIP))    \(ratio(rulesDump, rulesDumpIP))   (ip -j rule show)",
                "dump \(pad(count)) routes        \(s(routesDump))",
            ]
            if let perProcessRule {
                lines.append("")
                lines.append(format("one ip process per rule (%d rules): %.2f ms each, %.1f s for %d",
                                    perProcessCount, perProcessRule * 1000, perProcessRule * Double(count), count))
            }
            return lines.joined(separator: "\n")
        }

        /// The smaller of each figure.
        func bestOf(_ other: Result) -> Result {
            var best = self
            best.rulesAdd = min(rulesAdd, other.rulesAdd)
            best.rulesAddIPBatch = min(rulesAddIPBatch, other.rulesAddIPBatch)
            best.routesAdd = min(routesAdd, other.routesAdd)
            best.routesAddIPBatch = min(routesAddIPBatch, other.routesAddIPBatch)
            best.rulesDump = min(rulesDump, other.rulesDump)
            best.rulesDumpIP = min(rulesDumpIP, other.rulesDumpIP)
            best.routesDump = min(routesDump, other.routesDump)
            if let a = perProcessRule, let b = other.perProcessRule { best.perProcessRule = min(a, b) }
            return best
        }

        private func pad(_ n: Int) -> String { String(n).padded(to: 7) }

        public var json: String {
            var object: [String: Any] = [
                "count": count, "rules_add_s": rulesAdd, "rules_add_ip_batch_s": rulesAddIPBatch,
                "routes_add_s": routesAdd, "routes_add_ip_batch_s": routesAddIPBatch, "rules_dump_s": rulesDump,
                "rules_dump_ip_s": rulesDumpIP, "routes_dump_s": routesDump,
                "rules_add_ratio": rulesAdd / rulesAddIPBatch, "routes_add_ratio": routesAdd / routesAddIPBatch,
            ]
            if let perProcessRule {
                object["per_process_count"] = perProcessCount
                object["per_process_rule_s"] = perProcessRule
            }
            return JSONText.serialize(object)
        }
    }

    /// The objects: rule i = pref 10000+i from 10.a.b.c lookup 1000+i; route i = default via the peer in table 1000+i.
    static func rules(_ n: Int) -> [Rule] {
        (0..<n).map { (i: Int) -> Rule in
            let source = IPPrefix(host: IPAddress.v4(0x0a00_0000 | UInt32(i + 1)))
            return Rule(priority: UInt32(10_000 + i), source: source, table: UInt32(1000 + i))
        }
    }

    static func routes(_ n: Int) -> [Route] {
        (0..<n).map { (i: Int) -> Route in
            Route(destination: .defaultRoute(.inet), table: UInt32(1000 + i), gateway: .v4(0x0a63_0002), device: "v0")
        }
    }

    /// A namespace with interface v0 (10.99.0.1/24) whose veth peer (10.99.0.2) is in a second namespace.
    func node(_ scratch: ScratchNamespaces, _ name: String) throws(BenchmarkError) -> (NetworkNamespace, NetlinkSocket, done: () -> Void) {
        try benchmarkStep {
            let ns = try scratch.make(name)
            let peer = try scratch.make(name + "-peer")
            let socket = try NetlinkSocket(namespace: ns)
            try socket.createVeth("v0", in: ns, peer: "v1", in: peer)
            try socket.setLink("v0", up: true)
            try socket.addAddress(try IPPrefix(parsing: "10.99.0.1/24"), to: "v0")
            try NetlinkSocket(namespace: peer).setLink("v1", up: true)
            return (ns, socket, { scratch.remove(ns); scratch.remove(peer) })
        }
    }

    func ipBatch(_ ns: NetworkNamespace, _ lines: [String]) throws(BenchmarkError) -> Double {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("returnpath-bench-\(getpid()).batch")
        try benchmarkStep { try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8) }
        defer { try? FileManager.default.removeItem(at: file) }
        return try time { () throws(BenchmarkError) in
            _ = try runChecked(["ip", "-n", ns.name ?? "", "-batch", file.path], "ip -batch failed")
        }
    }

    func measure(_ scratch: ScratchNamespaces) throws(BenchmarkError) -> Result {
        let ruleList = Self.rules(count), routeList = Self.routes(count)

        let (oursNS, ours, oursDone) = try node(scratch, "ours")
        var dumped = 0
        let (rulesAdd, routesAdd, rulesDump, routesDump) = try benchmarkStep {
            let rulesAdd = try time { try ours.addRules(ruleList).throwFirst() }
            let routesAdd = try time { try ours.addRoutes(routeList).throwFirst() }
            let rulesDump = try time { dumped = try ours.rules(family: .inet).count }
            guard dumped == count + 3 else { throw BenchmarkError.failed("dumped \(dumped) rules, want \(count + 3)") }
            let routesDump = try time { dumped = try ours.routes(family: .inet).count }
            guard dumped >= count else { throw BenchmarkError.failed("dumped \(dumped) routes, want at least \(count)") }
            return (rulesAdd, routesAdd, rulesDump, routesDump)
        }
        let rulesDumpIP = try time { () throws(BenchmarkError) in
            do throws(ProgramError) { _ = try ProgramRun.run(["ip", "-n", oursNS.name ?? "", "-j", "rule", "show"]) } catch { throw .program(error) }
        }
        oursDone()

        let (ipNS, ipSocket, ipDone) = try node(scratch, "ip")
        let rulesAddIPBatch = try ipBatch(ipNS, ruleList.map { "rule add " + $0.description })
        let routesAddIPBatch = try ipBatch(ipNS, routeList.map { "route add " + $0.description })
        // Same state as ours: the comparison is only fair if ip did the same work.
        let same = try benchmarkStep {
            try ipSocket.rules(family: .inet).count == count + 3
                && ipSocket.routes(family: .inet).filter({ $0.table >= 1000 }).count == count
        }
        guard same else { throw .failed("ip -batch did not program the same objects") }
        ipDone()

        var perProcess: Double?
        if perProcessCount > 0 {
            let (oneNS, _, oneDone) = try node(scratch, "one")
            let few = Self.rules(perProcessCount)
            let elapsed = try time { () throws(BenchmarkError) in
                for rule in few {
                    _ = try runChecked(["ip", "-n", oneNS.name ?? "", "rule", "add"] + rule.ipArguments, "ip rule add failed")
                }
            }
            perProcess = elapsed / Double(perProcessCount)
            oneDone()
        }
        return Result(count: count, rulesAdd: rulesAdd, rulesAddIPBatch: rulesAddIPBatch, routesAdd: routesAdd,
                      routesAddIPBatch: routesAddIPBatch, rulesDump: rulesDump, rulesDumpIP: rulesDumpIP,
                      routesDump: routesDump, perProcessCount: perProcessCount, perProcessRule: perProcess)
    }
}
