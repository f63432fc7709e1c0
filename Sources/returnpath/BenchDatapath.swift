import ArgumentParser
import Benchmarks
import ReturnRouting

/// `returnpath bench datapath`: for N services and each strategy, the rate of new TCP connections from a client
/// through the router to the node's last service, beside the same lab with no policy and no asymmetry; plus cold
/// apply time next to `ip -batch` + `nft -f` of the same plan, no-op re-apply time, and one-service-change time
/// (Benchmarks' DatapathBenchmark).
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

    func run() throws {
        let benchmark = DatapathBenchmark(services: services, seconds: seconds, strategies: strategies, rounds: rounds,
                                          manager: LabSupport.manager(),
                                          connectCommand: [LabSupport.executablePath(), "bench", "connect"])
        let result = try benchmark.run()
        print(json ? result.json : result.table)
    }
}
