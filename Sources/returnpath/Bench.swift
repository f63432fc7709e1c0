import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",   // given, not derived: deriving it costs String(describing:) at every start (~1 ms)
        abstract: "Measure returnpath against the obvious alternative, in throwaway namespaces.",
        subcommands: [BenchNetlink.self, BenchLab.self, BenchDatapath.self, BenchApply.self, BenchAgent.self, BenchConnect.self, BenchCluster.self])
}
