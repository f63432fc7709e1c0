import ArgumentParser
import ReturnRouting

struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Delete everything apply owns (rules, tables, the inet returnpath table) and restore the sysctls it changed.")

    @OptionGroup var target: TargetOptions

    @OptionGroup var waiting: WaitOption

    @Flag(name: .long, help: "Change nothing; print what would be removed as commands.")
    var dryRun = false

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let (namespace, _) = try target.resolve()
        let report: Report
        do {
            let router = try ReturnRouter(namespace: namespace)
            let lock = dryRun ? nil : try router.lock(role: "remove", wait: waiting.wait)
            report = try withExtendedLifetime(lock) { () throws(ApplyError) in try router.remove(dryRun: dryRun) }
        } catch {
            throw fail(error.description, code: error.exitCode)
        }
        ReportPrinter.print(report, json: json, dryRun: dryRun, extra: ["target": "\(namespace)"])
    }
}
