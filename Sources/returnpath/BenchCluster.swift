import ArgumentParser
import Benchmarks

/// `returnpath bench cluster`: router failover and ConfigMap swaps on the cluster lab, one agent per node.
struct BenchCluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "On the cluster lab with an agent per node: a ToR that stops (failover, recovery) and ConfigMap swaps, p50/p99.")

    @Option(name: .long, help: "Trials of each (at least 20 for a p99 worth the name).")
    var trials = 20

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (1...1000).contains(trials) else { throw ValidationError("--trials takes 1 to 1000") }
    }

    func run() throws {
        let result: ClusterBenchmark.Result
        do { result = try ClusterBenchmark(trials: trials, manager: LabSupport.manager(quiet: true)).run() } catch {
            throw fail(error.description, code: 1)
        }
        print(json ? result.json : result.table)
    }
}
