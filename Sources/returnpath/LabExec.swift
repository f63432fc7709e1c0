import ArgumentParser
import Lab
import Namespace

struct LabExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command inside a lab host's namespace.",
        discussion: "Example: returnpath lab exec client1 -- nc 192.168.1.1 3000")

    @Option(name: .long, help: "Lab name.")
    var name = "seed"

    @Argument(help: "Host of the lab.")
    var host: String

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func run() throws {
        guard !command.isEmpty else { throw fail("no command given (returnpath lab exec HOST -- CMD…)", code: 2) }
        let (_, topology) = try LabSupport.topology(of: name)
        guard topology.host(host) != nil else {
            throw fail("lab \(name) has no host \"\(host)\" (hosts: \(topology.hosts.map(\.name).joined(separator: ", ")))", code: 2)
        }
        let status: Int32
        do {
            let ns = try NetworkNamespace(named: Topology.namespaceName(lab: name, host: host))
            guard ns.exists else { throw fail("namespace \(ns) of host \(host) is gone; run lab up again", code: 1) }
            let pid = try ns.spawn(command, descriptors: [ChildDescriptor(0, as: 0), ChildDescriptor(1, as: 1),
                                                          ChildDescriptor(2, as: 2)])
            status = waitForExit(pid)
        } catch let error as NamespaceError {
            throw fail(error.description, code: error.isNotFound ? 127 : 1)
        }
        throw ExitCode(status)
    }
}

extension NamespaceError {
    var isNotFound: Bool {
        if case .system(_, let errno) = self, errno == .noSuchFileOrDirectory { return true }
        return false
    }
}
