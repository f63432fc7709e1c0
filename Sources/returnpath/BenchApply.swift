import ArgumentParser
import Benchmarks
import ReturnRouting

/// `returnpath bench apply`: apply as users run it, a process with a policy file, next to `ip -batch` + `nft -f`
/// from files (Benchmarks' ApplyBenchmark).
struct BenchApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "apply -f FILE as a process vs ip -batch + nft -f from files, at N services.")

    @Option(name: .long, parsing: .upToNextOption, help: "Service counts.")
    var services: [Int] = [1_000, 10_000, 100_000]

    @Option(name: .long, help: "static, source, mark or ingress (mark: the services are in the policy).")
    var strategy: Strategy = .mark

    @Flag(name: .long, help: "Services as /30 prefixes (mark: interval sets) instead of addresses.")
    var prefixes = false

    @Option(name: .long, help: "Runs per measurement; the median is printed.")
    var rounds = 5

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard services.allSatisfy({ (1...200_000).contains($0) }) else { throw ValidationError("--services takes 1 to 200000") }
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds takes 1 to 50") }
    }

    func run() throws {
        let result = try ApplyBenchmark(services: services, strategy: strategy, prefixes: prefixes, rounds: rounds, manager: LabSupport.manager(),
                                        executable: LabSupport.executablePath()).run()
        print(json ? result.json : result.table)
    }
}
