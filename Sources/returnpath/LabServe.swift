import ArgumentParser
import Lab
import Namespace

struct LabServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve a lab's services (started by lab up).", shouldDisplay: false)

    @Option(name: .long) var name: String

    func run() throws {
        let loaded: LabState?
        do { loaded = try LabStore().load(name) } catch { throw fail(error.description, code: 1) }
        guard let state = loaded else { throw fail("lab \(name) has no state", code: 1) }
        ServiceServer.run(state.services, readyFD: 3)
    }
}
