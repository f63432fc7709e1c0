import ArgumentParser
import Benchmarks
import FoundationEssentials

/// `returnpath bench lab`: the seed lab up (services answering) and down with returnpath and with the committed
/// iproute2 shell script, in the same run; then generated labs of growing size (Benchmarks' LabBenchmark).
struct BenchLab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build and remove the seed lab with returnpath and with a plain iproute2 script; scale to N hosts.")

    @Option(name: .long, help: "Rounds; each figure is the best of them.")
    var rounds = 5

    @Option(name: .long, help: "Largest generated lab (hosts); also measured at a quarter and a half of it.")
    var hosts = 100

    @Option(name: .long, help: "The shell-script baseline.")
    var baseline = BenchLab.defaultBaseline

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    static var defaultBaseline: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/bench/seed-lab.sh").path
    }

    func validate() throws {
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 50") }
        guard (4...1000).contains(hosts) else { throw ValidationError("--hosts must be between 4 and 1000") }
        guard FileManager.default.isExecutableFile(atPath: baseline) else {
            throw ValidationError("baseline script \(baseline) not found (give --baseline PATH)")
        }
    }

    func run() throws {
        let result = try LabBenchmark(rounds: rounds, hosts: hosts, baseline: baseline, manager: LabSupport.manager()).run()
        print(json ? result.json : result.table)
    }
}
