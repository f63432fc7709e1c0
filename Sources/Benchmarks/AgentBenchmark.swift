import Dispatch
import FoundationEssentials
import Handle
import Lab
import Namespace
import Netlink
import ReturnRouting
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// The engine of `returnpath bench agent`: on the seed lab with mark, how fast a running agent puts back what a link flap, a
/// deleted rule or route, or a flushed nft table took away (timed from the kernel's own notifications, no polling),
/// how a burst of 10,000 address events settles, and what the agent costs idle (CPU) and at 10,000 services (RSS).
public struct AgentBenchmark: Sendable {
    public var services: [Int]
    public var flaps: Int
    public var repeats: Int
    public var flood: Int
    public var idleSeconds: Double
    public var json: Bool
    public let manager: LabManager
    /// The returnpath executable whose `agent` is measured.
    public var executable: String

    public init(services: [Int], flaps: Int, repeats: Int, flood: Int, idleSeconds: Double, json: Bool,
                manager: LabManager, executable: String) {
        self.services = services
        self.flaps = flaps
        self.repeats = repeats
        self.flood = flood
        self.idleSeconds = idleSeconds
        self.json = json
        self.manager = manager
        self.executable = executable
    }

    struct Row {
        var services: Int
        var flap: [Double] = []
        var rule: [Double] = []
        var route: [Double] = []
        var nft: [Double] = []
        var rssKiB = 0
        var peakKiB = 0
        var stopSeconds = 0.0
        var idleCPU: Double?
    }

    /// Measures, printing each row through `output` as it is done (and the JSON object at the end with `json`).
    public func run(output: (String) -> Void) throws(BenchmarkError) {
        do { try measure(output) } catch { throw .wrapping(error) }
    }

    private func measure(_ print: (String) -> Void) throws {
        for tool in ["ip", "nft"] { _ = try ProgramRun.locate(tool) }
        let scratch = ScratchNamespaces(tag: "ba")
        defer { scratch.removeAll() }
        let lab = "ba\(getpid())"
        scratch.onCleanup { _ = try? manager.down(name: lab) }
        _ = try manager.up(try Seed.topology(), name: lab, source: Seed.fileName, text: Seed.yaml)
        let node = try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: "node"))
        let socket = try NetlinkSocket(namespace: node)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rp-bench-agent-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        var rows: [Row] = []
        for count in services {
            var row = Row(services: count)
            let extra = (0..<(count - 2)).map { "10.200.\($0 / 250).\(1 + $0 % 250)/32" }
            let policy = Self.policy(eth1: ["192.168.1.1/32"] + extra, servicesFrom: nil)
            let path = "\(directory)/policy-\(count).yaml"
            try policy.write(toFile: path, atomically: true, encoding: .utf8)
            let agent = try BenchedAgent(["-f", path, "--netns", node.name ?? "", "--resync-interval", "3600"],
                                         log: "\(directory)/agent-\(count).log", scratch: scratch, executable: executable)
            let events = try EventSocket(namespace: node)
            // Let the first apply's own events pass.
            pause(seconds: 0.2)
            _ = Self.collect(events, for: 0)

            for _ in 0..<flaps {
                try socket.setLink("eth1", up: false)
                _ = Self.collect(events, for: 0)
                try socket.setLink("eth1", up: true)
                let start = Self.now()
                if let t = Self.wait(events, since: start, { $0.kind == .route && !$0.deleted && $0.table == 52001 && $0.proto == 212 }) {
                    row.flap.append(t)
                }
                Self.settle(events)
            }
            for _ in 0..<repeats {
                guard let rule = try socket.rules(family: .inet).first(where: { $0.priority == 20100 && $0.proto.rawValue == 212 }) else { break }
                try socket.deleteRule(rule)
                let start = Self.now()
                if let t = Self.wait(events, since: start, { $0.kind == .rule && !$0.deleted && $0.priority == 20100 }) { row.rule.append(t) }
                Self.settle(events)
            }
            for _ in 0..<repeats {
                guard let route = try socket.routes(family: .inet, table: 52001, proto: RouteProtocol(rawValue: 212)).first else { break }
                try socket.deleteRoute(route)
                let start = Self.now()
                if let t = Self.wait(events, since: start, { $0.kind == .route && !$0.deleted && $0.table == 52001 && $0.proto == 212 }) {
                    row.route.append(t)
                }
                Self.settle(events)
            }
            // libnftables in this process (its socket made in the node's namespace): the flush has been committed
            // when the call returns, so the clock starts at the flush, not at an nft process's exit.
            let nft: Nftables
            do { nft = try Nftables(namespace: node) } catch { throw BenchmarkError.failed(error.description) }
            for _ in 0..<repeats {
                do { try nft.run("flush table inet returnpath", operation: "nft flush table inet returnpath") } catch {
                    throw BenchmarkError.failed(error.description)
                }
                let start = Self.now()
                // NFT_MSG_NEWRULE (6) in our table: the refill is one transaction, its rules arrive together.
                if let t = Self.wait(events, since: start, { $0.kind == .nftables && $0.type == 6 && $0.nftTable == NftTable.name }) {
                    row.nft.append(t)
                }
                Self.settle(events)
            }
            (row.rssKiB, row.peakKiB) = agent.memory()
            if count == services.max(), idleSeconds > 0 {
                pause(seconds: 1)
                let before = agent.cpuSeconds()
                pause(seconds: idleSeconds)
                row.idleCPU = (agent.cpuSeconds() - before) / idleSeconds * 100
            }
            row.stopSeconds = agent.stop()
            rows.append(row)
            if !json { Self.printRow(row, idleSeconds: idleSeconds, print) }
        }

        let flood = try measureFlood(node: node, directory: directory, scratch: scratch)
        if json {
            func stats(_ values: [Double]) -> [String: Double] {
                ["p50_ms": Self.percentile(values, 0.5) * 1000, "p99_ms": Self.percentile(values, 0.99) * 1000,
                 "max_ms": (values.max() ?? 0) * 1000, "count": Double(values.count)]
            }
            let object: [String: Any] = [
                "rows": rows.map { r -> [String: Any] in
                    var o: [String: Any] = ["services": r.services, "link_up_to_routes": stats(r.flap), "rule_deleted": stats(r.rule),
                                            "route_deleted": stats(r.route), "nft_flushed": stats(r.nft), "rss_kib": r.rssKiB,
                                            "peak_rss_kib": r.peakKiB, "sigterm_exit_s": r.stopSeconds]
                    if let cpu = r.idleCPU { o["idle_cpu_percent"] = cpu; o["idle_seconds"] = idleSeconds }
                    return o
                },
                "services_from": ["one_address": stats(flood.single), "flood_addresses": self.flood, "batch_s": flood.batch,
                                  "settled_s": flood.settled, "settled_after_batch_s": flood.settled - flood.batch,
                                  "reconciles": flood.reconciles],
            ]
            print(JSONText.serialize(object))
        } else {
            print(format("servicesFrom: one address added to lo → in its set: p50 %.1f ms, p99 %.1f ms (%d times)",
                         Self.percentile(flood.single, 0.5) * 1000, Self.percentile(flood.single, 0.99) * 1000, flood.single.count))
            print(format("%d addresses added to lo in one ip -batch (the batch took %.2f s): all in the set %.3f s after the batch ended (%.2f s after it began), in %d reconciles",
                         self.flood, flood.batch, flood.settled - flood.batch, flood.settled, flood.reconciles))
        }
    }

    /// servicesFrom on lo: one address at a time (latency), then a flood in one `ip -batch`.
    private func measureFlood(node: NetworkNamespace, directory: String, scratch: ScratchNamespaces) throws
        -> (single: [Double], batch: Double, settled: Double, reconciles: Int) {
        let path = "\(directory)/policy-flood.yaml"
        try Self.policy(eth1: ["192.168.1.1/32"], servicesFrom: "10.201.0.0/16").write(toFile: path, atomically: true, encoding: .utf8)
        let agent = try BenchedAgent(["-f", path, "--netns", node.name ?? "", "--resync-interval", "3600",
                                      "--metrics-address", "127.0.0.1:0"], log: "\(directory)/agent-flood.log", scratch: scratch, executable: executable)
        defer { _ = agent.stop() }
        let socket = try NetlinkSocket(namespace: node)
        let netfilter = try NetlinkSocket(namespace: node, family: NetlinkSocket.netfilter)
        let events = try EventSocket(namespace: node)
        pause(seconds: 0.2)
        _ = Self.collect(events, for: 0)
        var single: [Double] = []
        for i in 0..<20 {
            let address = try IPPrefix(parsing: "10.201.255.\(i + 1)/32")
            try socket.addAddress(address, to: "lo")
            let start = Self.now()
            // NFT_MSG_NEWSETELEM (12) in our table.
            if let t = Self.wait(events, since: start, { $0.kind == .nftables && $0.type == 12 && $0.nftTable == NftTable.name }) { single.append(t) }
            Self.settle(events)
            try socket.deleteAddress(address, from: "lo")
            _ = Self.wait(events, since: Self.now(), { $0.kind == .nftables && $0.type == 14 && $0.nftTable == NftTable.name })
            Self.settle(events)
        }
        let port = agent.metricsPort()
        let before = port.map { Self.reconciles(port: $0) } ?? 0
        let lines = (0..<flood).map { "addr add 10.201.\($0 / 250).\(1 + $0 % 250)/32 dev lo" }.joined(separator: "\n") + "\n"
        let batchFile = "\(directory)/flood.batch"
        try lines.write(toFile: batchFile, atomically: true, encoding: .utf8)
        let start = Self.now()
        let batch = try ProgramRun.run(["ip", "-batch", batchFile], in: node)
        guard batch.status == 0 else { throw BenchmarkError.failed("ip -batch: \(batch.errors)") }
        let batchSeconds = Self.now() - start
        var settled = Double.infinity
        while Self.now() - start < 30 {
            let count = try netfilter.nftSetElements(family: NftTable.inetFamily, table: NftTable.name, set: "svc_1").count
            if count == flood + 1 { settled = Self.now() - start; break }
            usleep(5000)
        }
        pause(seconds: 0.3)   // a reconcile that was already due still counts
        let after = port.map { Self.reconciles(port: $0) } ?? 0
        return (single, batchSeconds, settled, after - before)
    }

    static func policy(eth1: [String], servicesFrom: String?) -> String {
        let from = servicesFrom.map { ", servicesFrom: {interface: lo, prefixes: [\($0)]}" } ?? ""
        return """
            apiVersion: returnpath.dev/v1alpha1
            kind: ReturnTrafficPolicy
            metadata: {name: bench-agent}
            spec:
              strategy: mark
              interfaces:
                - {name: eth1, gateway: 10.111.221.21, services: [\(eth1.joined(separator: ", "))]\(from)}
                - {name: eth2, gateway: 10.111.222.21, services: [192.168.2.1/32]}

            """
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func percentile(_ values: [Double], _ p: Double) -> Double { Benchmarks.percentile(values, p) }

    /// Reads events for `seconds` (0: what is queued now).
    static func collect(_ events: EventSocket, for seconds: Double) -> [NetlinkEvent] {
        var all: [NetlinkEvent] = []
        let end = now() + seconds
        repeat {
            var fds = events.descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let left = max(0, end - now())
            if poll(&fds, nfds_t(fds.count), Int32(left * 1000)) <= 0 && left <= 0 { break }
            for fd in events.descriptors { try? events.drain(fd, into: &all) }
        } while now() < end
        return all
    }

    /// Seconds from `since` until an event matching `match` arrives (nil after 5 s).
    static func wait(_ events: EventSocket, since start: Double, _ match: (NetlinkEvent) -> Bool) -> Double? {
        while now() - start < 5 {
            var fds = events.descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            var batch: [NetlinkEvent] = []
            for (i, fd) in events.descriptors.enumerated() where fds[i].revents != 0 { try? events.drain(fd, into: &batch) }
            if batch.contains(where: match) { return now() - start }
        }
        return nil
    }

    /// Lets the reconcile in progress finish (no event for 30 ms) before the next measurement.
    static func settle(_ events: EventSocket) {
        while !collect(events, for: 0.03).isEmpty {}
    }

    static func reconciles(port: Int) -> Int {
        guard let text = try? localHTTPGet(port: port, "/metrics").body else { return 0 }
        return text.split(separator: "\n").filter { $0.hasPrefix("returnpath_reconciles_total{") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0) { $0 + Int($1) }
    }

    static func printRow(_ row: Row, idleSeconds: Double, _ print: (String) -> Void) {
        func ms(_ values: [Double]) -> String {
            format("p50 %6.1f ms  p99 %6.1f ms", percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000)
        }
        print("services \(row.services) (mark):")
        print("  link up → owned routes back (\(row.flap.count) flaps)   \(ms(row.flap))")
        print("  owned rule deleted → back (\(row.rule.count))             \(ms(row.rule))")
        print("  owned route deleted → back (\(row.route.count))            \(ms(row.route))")
        print("  nft table flushed → rules back (\(row.nft.count))          \(ms(row.nft))")
        print("  agent RSS \(row.rssKiB / 1024) MiB (peak \(row.peakKiB / 1024) MiB); SIGTERM → exit \(format("%.3f", row.stopSeconds)) s")
        if let cpu = row.idleCPU {
            print(format("  idle for %.0f s: %.3f %% of one core", idleSeconds, cpu))
        }
    }
}
