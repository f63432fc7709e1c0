import ArgumentParser
import FoundationEssentials
import Lab
import Namespace

struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build a topology (the seed's by default) in network namespaces, and take it down.",
        subcommands: [LabUp.self, LabDown.self, LabStatus.self, LabGraph.self, LabExec.self, LabServe.self])
}

/// Shared by the lab commands.
enum LabSupport {
    /// A named namespace that exists (exit 2 otherwise): the one check every command that takes --netns or --lab
    /// makes. `lab`: the lab it belongs to, for the hint.
    static func existingNamespace(_ name: String, lab: String?) throws -> NetworkNamespace {
        // The name itself is checked by NetworkNamespace(named:): an invalid one does not exist either.
        guard let ns = try? NetworkNamespace(named: name), ns.exists else {
            throw fail("network namespace \(name) does not exist" + (lab.map { ": is lab \($0) up?" } ?? ""), code: 2)
        }
        return ns
    }

    /// The lab manager, with this very binary as the service process.
    static func manager(quiet: Bool = true) -> LabManager {
        LabManager(serveCommand: [executablePath(), "lab", "serve", "--name"],
                   progress: { line in if !quiet { print(line) } })
    }

    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The topology of a running lab, from its state (no file needed).
    static func topology(of lab: String) throws -> (LabState, Topology) {
        let loaded: LabState?
        do { loaded = try LabStore().load(lab) } catch { throw fail(error.description, code: 1) }
        guard let state = loaded else {
            throw fail("lab \(lab) does not exist (see returnpath lab status)", code: 2)
        }
        do {
            return (state, try TopologyFile.parse(state.topology, file: state.source))
        } catch {
            throw fail("lab \(lab): its recorded topology no longer parses: \(error)", code: 1)
        }
    }

    /// Reads `-f FILE` or the built-in seed; exit 2 with file and line on any problem.
    static func load(file: String?, builtin: BuiltinTopology? = nil) throws -> (topology: Topology, text: String, source: String) {
        do {
            if let builtin, file == nil { return (try builtin.topology(), builtin.yaml, builtin.fileName) }
            if let file {
                let topology = try TopologyFile.load(path: file)
                let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                return (topology, text, URL(fileURLWithPath: file).standardizedFileURL.path)
            }
            return (try Seed.topology(), Seed.yaml, Seed.fileName)
        } catch {
            throw fail(error.description, code: 2)
        }
    }

    static func checkName(_ name: String) throws {
        if let problem = Topology.nameProblem(name, what: "lab name") { throw fail(problem, code: 2) }
    }
}
