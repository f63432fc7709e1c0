import Dispatch
import ArgumentParser
import Lab
import Namespace
import TextFormat

struct LabUp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Build the lab, or make a running one match its topology again.",
        discussion: "Hosts become namespaces rp-<NAME>-<host>, visible to ip netns. Returns when every service answers.")

    @Option(name: .shortAndLong, help: "Topology file (YAML). Default: the built-in seed topology.")
    var file: String?

    @Option(name: .long, help: "A built-in topology instead of a file: seed, anycast, k8s, dualstack or cluster.")
    var topology: BuiltinTopology?

    func validate() throws {
        if file != nil && topology != nil { throw ValidationError("give -f FILE or --topology NAME, not both") }
    }

    @Option(name: .long, help: "Lab name. Default: the topology's name (seed).")
    var name: String?

    @Flag(name: .shortAndLong, help: "No progress lines.")
    var quiet = false

    func run() throws {
        let (topology, text, source) = try LabSupport.load(file: file, builtin: self.topology)
        let lab = name ?? topology.name
        try LabSupport.checkName(lab)
        let start = DispatchTime.now().uptimeNanoseconds
        let report: LabManager.UpReport
        do {
            report = try LabSupport.manager(quiet: quiet).up(topology, name: lab, source: source, text: text)
        } catch {
            throw fail(error.description, code: 1)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let hosts = topology.hosts.map(\.name).joined(separator: ", ")
        print("lab \(lab) is up in \(format("%.3f", elapsed)) s: \(topology.hosts.count) hosts (\(hosts)), \(report.links) links, \(report.services) services answering")
        if !quiet && !report.reusedNamespaces.isEmpty {
            print("converged: \(report.reusedNamespaces.count) namespaces were already there")
        }
    }
}
