import Agent
import ArgumentParser
import FoundationEssentials
import Logging
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

@main
struct ReturnPath: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "returnpath",
        abstract: "Find and fix asymmetric return traffic on multi-homed Linux nodes.",
        discussion: """
            returnpath builds labs of network namespaces, probes which interface a service's replies leave by, \
            and fixes return traffic with policy routing it owns.
            """,
        version: "0.1.0",
        subcommands: [DemoCommand.self, LabCommand.self, ProbeCommand.self, ApplyCommand.self, RemoveCommand.self,
                      AgentCommand.self, DoctorCommand.self, PolicyCommand.self, Bench.self])

    /// ArgumentParser exits 64 (EX_USAGE) on bad usage; returnpath's contract is 2, like ip and nft.
    static func main() {
        LoggingSystem.bootstrap { label in
            let level = ProcessInfo.processInfo.environment["RETURNPATH_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .notice
            if LogSettings.json.load(ordering: .relaxed) { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            var command = try parseAsRoot()
            // For the docs test: check that a command line parses, run nothing.
            if ProcessInfo.processInfo.environment["RETURNPATH_PARSE_ONLY"] == "1" { return }
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                printError(fullMessage(for: error) + "\n")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// A failure the user must see: printed as "returnpath: MESSAGE", exits with `code`.
struct Failure: Error, CustomStringConvertible {
    var description: String
    var code: Int32 = 1
}

/// Prints an error the way ip does ("returnpath: …") and exits with its code: 2 for bad input, 1 otherwise.
func fail(_ message: String, code: Int32) -> ExitCode {
    printError("returnpath: \(message)\n")
    return ExitCode(code)
}
