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

/// `returnpath bench cluster`: on the cluster lab (docs/cluster.yaml) with one agent per node started as the
/// DaemonSet starts it — how long until replies stop going to a ToR that stopped answering (and come back when it
/// answers), and how long a ConfigMap swap takes until every node's agent has the new policy in force.
public struct ClusterBenchmark {
    public var trials: Int
    public var manager: LabManager

    public init(trials: Int, manager: LabManager) {
        self.trials = trials
        self.manager = manager
    }

    public struct Result: Sendable {
        public var failover: [Double]
        public var recovery: [Double]
        public var swap: [Double]

        public var table: String {
            func row(_ name: String, _ values: [Double]) -> String {
                name.padded(to: 56) + format(" p50 %6.0f ms  p99 %6.0f ms  max %6.0f ms  (%d trials)",
                       percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000, (values.max() ?? 0) * 1000, values.count)
            }
            return [row("a ToR stops → every rack node's replies avoid it", failover),
                    row("the ToR answers again → every rack node uses it again", recovery),
                    row("a ConfigMap swap → in force on all four nodes", swap)].joined(separator: "\n")
        }

        public var json: String {
            func stats(_ values: [Double]) -> String {
                format("{\"p50_ms\": %.1f, \"p99_ms\": %.1f, \"max_ms\": %.1f, \"trials\": %d}",
                       percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000, (values.max() ?? 0) * 1000, values.count)
            }
            return "{\"failover\": \(stats(failover)), \"recovery\": \(stats(recovery)), \"configmap_swap\": \(stats(swap))}"
        }
    }

    static let nodes = ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"]

    public func run() throws(BenchmarkError) -> Result {
        let lab = "bcluster-\(getpid())"
        let topology: Topology
        do { topology = try BuiltinTopology.cluster.topology() } catch { throw .failed(error.description) }
        do { _ = try manager.up(topology, name: lab, source: BuiltinTopology.cluster.fileName, text: BuiltinTopology.cluster.yaml) } catch {
            throw .lab(error)
        }
        defer { _ = try? manager.down(name: lab) }
        let without = BuiltinTopology.clusterPolicy
        let with = without.replacing("192.168.100.0/24]", with: "192.168.100.0/24, 192.168.101.0/24]")
        let volume = try ConfigMapVolume(directory: FileManager.default.temporaryDirectory.appendingPathComponent("rp-bench-cluster-\(getpid())").path,
                                         text: without)
        defer { volume.remove() }
        let dir = volume.directory
        func namespace(_ host: String) throws(BenchmarkError) -> NetworkNamespace {
            do { return try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: host)) } catch { throw .namespace(error) }
        }
        var agents: [ClusterAgent] = []
        defer { for agent in agents { agent.stop() } }
        for host in Self.nodes {
            agents.append(try ClusterAgent(host: host, namespace: try namespace(host), arguments: [
                "agent", "-f", volume.policyPath, "--metrics-address", "127.0.0.1:9712", "--log-format", "json"], logDirectory: dir))
        }
        for agent in agents where !agent.waitReady(seconds: 20) { throw .failed("the agent of \(agent.host) did not become ready: \(agent.log())") }
        var result = Result(failover: [], recovery: [], swap: [])

        // A ToR stops: its rack-side interface down inside its namespace (the nodes' links stay up).
        let rack1: [NetlinkSocket]
        let tor: NetlinkSocket
        do {
            rack1 = [try NetlinkSocket(namespace: try namespace("rack1-node1")), try NetlinkSocket(namespace: try namespace("rack1-node2"))]
            tor = try NetlinkSocket(namespace: try namespace("tor12"))
        } catch let error as BenchmarkError { throw error } catch { throw .wrapping(error) }
        func timed(_ change: () throws(NetlinkError) -> Void, until done: () -> Bool) throws(BenchmarkError) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            do { try change() } catch { throw .netlink(error) }
            let deadline = start + 5_000_000_000
            while !done() {
                guard DispatchTime.now().uptimeNanoseconds < deadline else { throw .failed("no change within 5 s") }
                usleep(1000)
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        for _ in 0..<trials {
            usleep(UInt32.random(in: 100_000...200_000))   // another phase of the probes' 100 ms each time
            result.failover.append(try timed({ () throws(NetlinkError) in try tor.setLink("eth0", up: false) },
                                             until: { rack1.allSatisfy { firstTableGateways($0) == ["10.1.1.2"] } }))
            usleep(UInt32.random(in: 100_000...200_000))
            result.recovery.append(try timed({ () throws(NetlinkError) in try tor.setLink("eth0", up: true) },
                                             until: { rack1.allSatisfy { firstTableGateways($0) == ["10.1.1.2", "10.1.1.3"] } }))
        }

        // ConfigMap swaps, with and without 192.168.101.0/24: in force when every node's nft table lists its
        // 192.168.101.N (or no longer does).
        let handles: [(String, NamespaceHandle)]
        do { handles = try Self.nodes.map { ($0, try NamespaceHandle(try namespace($0))) } } catch let error as BenchmarkError {
            throw error
        } catch { throw .wrapping(error) }
        func inForce(_ added: Bool) -> Bool {
            handles.allSatisfy { host, handle in
                let suffix = host.hasPrefix("rack1") ? (host.hasSuffix("1") ? "11" : "12") : (host.hasSuffix("1") ? "21" : "22")
                guard let text = try? handle.nftables().run("list table inet returnpath", operation: "list table") else { return false }
                return text.contains("192.168.101.\(suffix)") == added
            }
        }
        for i in 0..<trials {
            let added = i % 2 == 0
            let start = DispatchTime.now().uptimeNanoseconds
            try volume.publish(version: "..v\(i + 1)", added ? with : without)
            let deadline = start + 5_000_000_000
            while !inForce(added) {
                guard DispatchTime.now().uptimeNanoseconds < deadline else { throw .failed("ConfigMap swap \(i + 1) not in force within 5 s") }
                usleep(1000)
            }
            result.swap.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            usleep(50_000)
        }
        for agent in agents where agent.stop() != 0 { throw .failed("the agent of \(agent.host) did not exit 0") }
        agents = []
        return result
    }
}
