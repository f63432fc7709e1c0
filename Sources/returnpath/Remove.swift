import ArgumentParser
import ReturnRouting

struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Delete everything apply owns (rules, tables, the inet returnpath table) and restore the sysctls it changed.")

    @OptionGroup var target: TargetOptions

    @Flag(name: .long, help: "Change nothing; print what would be removed as commands.")
    var dryRun = false

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let (namespace, _) = try target.resolve()
        let report: Report
        do { report = try ReturnRouter(namespace: namespace).remove(dryRun: dryRun) } catch {
            throw fail(error.description, code: error.isInvalid ? 2 : 1)
        }
        ReportPrinter.print(report, json: json, dryRun: dryRun, extra: ["target": "\(namespace)"])
    }
}
