import ArgumentParser
import Lab
import Namespace
import ReturnRouting

struct LabDown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Remove the lab's namespaces, links and services (only what the lab created).")

    @Option(name: .long, help: "Lab name.")
    var name = "seed"

    func run() throws {
        try LabSupport.checkName(name)
        let report: LabManager.DownReport
        do {
            // What apply recorded about the lab's hosts goes with them.
            report = try LabSupport.manager().down(name: name, beforeDeleting: ReturnRouter.discardRecord(of:))
        } catch { throw fail(error.description, code: 1) }
        for foreign in report.leftAlone {
            print("left alone: namespace \(foreign) is not part of lab \(name)")
        }
        guard report.existed else {
            print("lab \(name) does not exist")
            return
        }
        print("lab \(name) is down: removed \(report.removedNamespaces.count) namespaces"
              + (report.stoppedServices ? " and its services" : ""))
    }
}
