import ArgumentParser
import Benchmarks

/// `returnpath bench netlink`: programs N rules and N routes with our rtnetlink layer and with `ip -batch`, each in
/// a fresh throwaway namespace, dumps them, and prints times and the ratio ours / ip -batch (Benchmarks'
/// NetlinkBenchmark).
struct BenchNetlink: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netlink",
        abstract: "Program N rules and N routes via rtnetlink and via ip -batch; dump them; compare.")

    @Option(name: .long, help: "Number of rules and of routes.")
    var count = 10_000

    @Option(name: .long, help: "Objects for the one-ip-process-per-object reference (0 to skip).")
    var perProcessCount = 200

    @Option(name: .long, help: "Rounds; each figure is the best of them (the kernel's background work adds noise).")
    var rounds = 3

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be between 1 and 1000000") }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 20") }
        guard (0...10_000).contains(perProcessCount) else {
            throw ValidationError("--per-process-count must be between 0 and 10000")
        }
    }

    func run() throws {
        do {
            let best = try NetlinkBenchmark(count: count, perProcessCount: perProcessCount, rounds: rounds).run()
            print(json ? best.json : best.table)
        } catch .netlink(let error) {
            throw fail(error.description, code: 1)
        } catch .namespace(let error) {
            throw fail(error.description, code: 1)
        }
    }
}
