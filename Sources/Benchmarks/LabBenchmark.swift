import Lab
import Namespace
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// `bench lab`: the seed lab up (services answering) and down with returnpath and with an iproute2 + socat shell
/// script, in the same run; then generated labs of growing size, to show the cost per host.
public struct LabBenchmark: Sendable {
    public var rounds: Int
    /// The largest generated lab; also measured at a quarter and a half of it.
    public var hosts: Int
    /// The shell-script baseline (scripts/bench/seed-lab.sh: `SCRIPT up|down LAB`).
    public var baseline: String
    public let manager: LabManager

    public init(rounds: Int, hosts: Int, baseline: String, manager: LabManager) {
        self.rounds = rounds
        self.hosts = hosts
        self.baseline = baseline
        self.manager = manager
    }

    public struct Result: Sendable {
        public var rounds: Int
        public var oursUp, oursDown, shellUp, shellDown: Double
        public var scale: [(hosts: Int, up: Double, down: Double)]

        public var table: String {
            var lines = [
                "returnpath bench lab: seed lab, best of \(rounds) rounds (up = every service answering)",
                "",
                "             returnpath   shell script   ours/script",
                format("seed up      %8.3f s   %9.3f s      %5.2f×", oursUp, shellUp, oursUp / shellUp),
                format("seed down    %8.3f s   %9.3f s      %5.2f×", oursDown, shellDown, oursDown / shellDown),
                "",
                "generated labs (a router and N-1 hosts, one veth each, a default route each):",
            ]
            for entry in scale {
                lines.append(format("  %4d hosts   up %6.3f s (%5.2f ms/host)   down %6.3f s", entry.hosts, entry.up,
                                    entry.up * 1000 / Double(entry.hosts), entry.down))
            }
            return lines.joined(separator: "\n")
        }

        public var json: String {
            var object: [String: Any] = [
                "seed_up_s": oursUp, "seed_down_s": oursDown, "seed_up_script_s": shellUp, "seed_down_script_s": shellDown,
                "seed_up_ratio": oursUp / shellUp, "rounds": rounds,
            ]
            object["generated"] = scale.map { ["hosts": $0.hosts, "up_s": $0.up, "down_s": $0.down] }
            return JSONText.serialize(object)
        }
    }

    /// Measures; every lab and namespace made is gone afterwards (also on SIGINT/SIGTERM).
    public func run() throws(BenchmarkError) -> Result {
        for tool in ["ip", "socat", "nc", "bash"] {
            do { _ = try ProgramRun.locate(tool) } catch { throw .program(error) }
        }
        let scratch = ScratchNamespaces(tag: "b")
        defer { scratch.removeAll() }
        let manager = self.manager, baseline = self.baseline
        let seed = try benchmarkStep { try Seed.topology() }

        var oursUp = Double.infinity, oursDown = Double.infinity, shellUp = Double.infinity, shellDown = Double.infinity
        for round in 0..<rounds {
            let lab = "b\(getpid())-\(round)"
            scratch.onCleanup { _ = try? manager.down(name: lab) }
            oursUp = min(oursUp, try self.lab(up: seed, name: lab, text: Seed.yaml, source: Seed.fileName))
            try check(lab)
            oursDown = min(oursDown, try labDown(lab))

            let shellLab = "bsh\(getpid())-\(round)"
            scratch.onCleanup { _ = try? ProgramRun.run([baseline, "down", shellLab]) }
            shellUp = min(shellUp, try time { () throws(BenchmarkError) in try script("up", shellLab) })
            try check(shellLab)
            shellDown = min(shellDown, try time { () throws(BenchmarkError) in try script("down", shellLab) })
        }

        var scale: [(hosts: Int, up: Double, down: Double)] = []
        for size in [max(4, hosts / 4), max(4, hosts / 2), hosts] {
            let lab = "bg\(getpid())-\(size)"
            let text = Self.generated(hosts: size)
            let topology = try benchmarkStep { try TopologyFile.parse(text, file: "generated") }
            scratch.onCleanup { _ = try? manager.down(name: lab) }
            let up = try self.lab(up: topology, name: lab, text: text, source: "generated")
            let down = try labDown(lab)
            scale.append((size, up, down))
        }
        return Result(rounds: rounds, oursUp: oursUp, oursDown: oursDown, shellUp: shellUp, shellDown: shellDown, scale: scale)
    }

    /// Seconds `lab up` took.
    func lab(up topology: Topology, name: String, text: String, source: String) throws(BenchmarkError) -> Double {
        do {
            return try time { () throws(LabError) in _ = try manager.up(topology, name: name, source: source, text: text) }
        } catch { throw .lab(error) }
    }

    /// Seconds `lab down` took.
    func labDown(_ name: String) throws(BenchmarkError) -> Double {
        do {
            return try time { () throws(LabError) in _ = try manager.down(name: name) }
        } catch { throw .lab(error) }
    }

    func script(_ verb: String, _ lab: String) throws(BenchmarkError) {
        _ = try runChecked([baseline, verb, lab], "\(baseline) \(verb) \(lab) failed")
    }

    /// Both builds must give a working seed: the router gets svc1.
    func check(_ lab: String) throws(BenchmarkError) {
        let run: ProgramRun
        do {
            run = try ProgramRun.run(["ip", "netns", "exec", Topology.namespaceName(lab: lab, host: "router"),
                                      "nc", "-w", "2", "192.168.1.1", "3000"])
        } catch { throw .program(error) }
        guard run.output == "svc1\n" else { throw .failed("lab \(lab) does not answer: \(run.output)\(run.errors)") }
    }

    /// A star: host "core" with one veth to each of hosts h1…h(N-1), each on its own /30 with a default route
    /// via the core; the core serves one service on lo.
    public static func generated(hosts: Int) -> String {
        var text = "networks:\n"
        for i in 1..<hosts { text += "  n\(i): {subnet: 10.\(100 + i / 64).\((i % 64) * 4 / 256).\((i % 64) * 4 % 256)/30}\n" }
        text += "hosts:\n  core:\n    sysctls: {net.ipv4.ip_forward: 1}\n    interfaces:\n"
        text += "      lo: {addresses: [192.168.0.1/32]}\n"
        for i in 1..<hosts {
            text += "      e\(i): {network: n\(i), address: \(address(i, 1))}\n"
        }
        text += "    services:\n      - {address: 192.168.0.1, port: 80, reply: core}\n"
        for i in 1..<hosts {
            text += "  h\(i):\n    role: client\n    interfaces:\n      eth0: {network: n\(i), address: \(address(i, 2))}\n"
            text += "    routes:\n      - {to: default, via: \(address(i, 1))}\n"
        }
        return text
    }

    static func address(_ i: Int, _ host: Int) -> String {
        "10.\(100 + i / 64).\((i % 64) * 4 / 256).\((i % 64) * 4 % 256 + host)"
    }
}
