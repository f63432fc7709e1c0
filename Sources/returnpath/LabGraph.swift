import ArgumentParser
import Lab

extension TopologyGraph.Format: ExpressibleByArgument {}

struct LabGraph: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw a topology: ASCII for the terminal, Graphviz dot, or Mermaid.")

    @Option(name: .long, help: "A running lab's name.")
    var name: String?

    @Option(name: .shortAndLong, help: "A topology file. Default (without --name): the built-in seed.")
    var file: String?

    @Option(name: .long, help: "ascii, dot or mermaid.")
    var format: TopologyGraph.Format = .ascii

    func validate() throws {
        if name != nil && file != nil { throw ValidationError("give --name or -f, not both") }
    }

    func run() throws {
        let topology: Topology
        if let name {
            try LabSupport.checkName(name)
            topology = try LabSupport.topology(of: name).1
        } else {
            topology = try LabSupport.load(file: file).topology
        }
        print(TopologyGraph.render(topology, format: format))
    }
}
