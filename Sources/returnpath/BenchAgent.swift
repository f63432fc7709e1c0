import ArgumentParser
import Benchmarks

/// `returnpath bench agent`: on the seed lab with mark, how fast a running agent puts back what a link flap, a
/// deleted rule or route, or a flushed nft table took away (timed from the kernel's own notifications, no polling),
/// how a burst of 10,000 address events settles, and what the agent costs idle (CPU) and at 10,000 services (RSS)
/// (Benchmarks' AgentBenchmark).
struct BenchAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Repair times of a running agent (link flaps, deleted rule/route, flushed nft table), an address flood, idle CPU and RSS.")

    @Option(name: .long, parsing: .upToNextOption, help: "Service counts to measure at (mark: one nft set element each).")
    var services: [Int] = [10, 10_000]

    @Option(name: .long, help: "Link flaps (eth1 down, up) per service count.")
    var flaps = 200

    @Option(name: .long, help: "Repetitions of each deletion (rule, route, nft flush) per service count.")
    var repeats = 50

    @Option(name: .long, help: "Addresses added to lo in one batch (servicesFrom).")
    var flood = 10_000

    @Option(name: .long, help: "Seconds the agent is left idle to measure its CPU use (at the largest service count).")
    var idleSeconds: Double = 60

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard services.allSatisfy({ (2...50_000).contains($0) }) else { throw ValidationError("--services takes 2 to 50000") }
        guard flaps >= 1, repeats >= 1, (1...60_000).contains(flood) else { throw ValidationError("--flaps, --repeats ≥ 1; --flood 1 to 60000") }
        guard idleSeconds >= 0 && idleSeconds <= 600 else { throw ValidationError("--idle-seconds takes 0 to 600") }
    }

    func run() throws {
        try AgentBenchmark(services: services, flaps: flaps, repeats: repeats, flood: flood, idleSeconds: idleSeconds,
                           json: json, manager: LabSupport.manager(), executable: LabSupport.executablePath())
            .run { print($0) }
    }
}
