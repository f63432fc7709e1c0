import ArgumentParser
import Dispatch

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure returnpath against the obvious alternative, in throwaway namespaces.",
        subcommands: [BenchNetlink.self, BenchLab.self, BenchDatapath.self, BenchAgent.self, BenchConnect.self])
}

/// Seconds `body` took (monotonic clock).
func time(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}
