import ArgumentParser
import Foundation
import Lab

/// `returnpath bench lab`: the seed lab up (services answering) and down with returnpath and with the committed
/// iproute2 shell script, in the same run; then generated labs of growing size, to show the cost per host.
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
        for tool in ["ip", "socat", "nc", "bash"] { _ = try ProgramRun.locate(tool) }
        let scratch = ScratchNamespaces(tag: "b")
        defer { scratch.removeAll() }
        let manager = LabSupport.manager()
        let seed = try LabSupport.load(file: nil)

        var oursUp = Double.infinity, oursDown = Double.infinity, shellUp = Double.infinity, shellDown = Double.infinity
        for round in 0..<rounds {
            let lab = "b\(getpid())-\(round)"
            scratch.onCleanup { _ = try? manager.down(name: lab) }
            oursUp = min(oursUp, try time { _ = try manager.up(seed.topology, name: lab, source: seed.source, text: seed.text) })
            try check(lab)
            oursDown = min(oursDown, try time { _ = try manager.down(name: lab) })

            let shellLab = "bsh\(getpid())-\(round)"
            scratch.onCleanup { _ = try? ProgramRun.run([baseline, "down", shellLab]) }
            shellUp = min(shellUp, try time { try script("up", shellLab) })
            try check(shellLab)
            shellDown = min(shellDown, try time { try script("down", shellLab) })
        }

        var scale: [(hosts: Int, up: Double, down: Double)] = []
        for size in [max(4, hosts / 4), max(4, hosts / 2), hosts] {
            let lab = "bg\(getpid())-\(size)"
            let text = Self.generated(hosts: size)
            let topology = try TopologyFile.parse(text, file: "generated")
            scratch.onCleanup { _ = try? manager.down(name: lab) }
            let up = try time { _ = try manager.up(topology, name: lab, source: "generated", text: text) }
            let down = try time { _ = try manager.down(name: lab) }
            scale.append((size, up, down))
        }

        if json {
            var object: [String: Any] = [
                "seed_up_s": oursUp, "seed_down_s": oursDown, "seed_up_script_s": shellUp, "seed_down_script_s": shellDown,
                "seed_up_ratio": oursUp / shellUp, "rounds": rounds,
            ]
            object["generated"] = scale.map { ["hosts": $0.hosts, "up_s": $0.up, "down_s": $0.down] }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("returnpath bench lab: seed lab, best of \(rounds) rounds (up = every service answering)")
        print("")
        print("             returnpath   shell script   ours/script")
        print(String(format: "seed up      %8.3f s   %9.3f s      %5.2f×", oursUp, shellUp, oursUp / shellUp))
        print(String(format: "seed down    %8.3f s   %9.3f s      %5.2f×", oursDown, shellDown, oursDown / shellDown))
        print("")
        print("generated labs (a router and N-1 hosts, one veth each, a default route each):")
        for entry in scale {
            print(String(format: "  %4d hosts   up %6.3f s (%5.2f ms/host)   down %6.3f s", entry.hosts, entry.up,
                         entry.up * 1000 / Double(entry.hosts), entry.down))
        }
    }

    func script(_ verb: String, _ lab: String) throws {
        let run = try ProgramRun.run([baseline, verb, lab])
        guard run.status == 0 else { throw Failure(description: "\(baseline) \(verb) \(lab) failed: \(run.errors)") }
    }

    /// Both builds must give a working seed: the router gets svc1.
    func check(_ lab: String) throws {
        let run = try ProgramRun.run(["ip", "netns", "exec", Topology.namespaceName(lab: lab, host: "router"),
                                      "nc", "-w", "2", "192.168.1.1", "3000"])
        guard run.output == "svc1\n" else { throw Failure(description: "lab \(lab) does not answer: \(run.output)\(run.errors)") }
    }

    /// A star: host "core" with one veth to each of hosts h1…h(N-1), each on its own /30 with a default route
    /// via the core; the core serves one service on lo.
    static func generated(hosts: Int) -> String {
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
