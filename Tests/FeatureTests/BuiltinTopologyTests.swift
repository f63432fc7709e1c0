import Foundation
import Lab
import Testing

struct BuiltinTopologyTests {
    /// The demo's built-in topologies are the documented files, byte for byte, and they parse.
    @Test(arguments: BuiltinTopology.allCases)
    func builtInTopologiesAreTheDocumentedOnes(topology: BuiltinTopology) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let docs = try String(contentsOf: root.appendingPathComponent(topology.docsFile), encoding: .utf8)
        #expect(topology.yaml == docs)
        // What is embedded is the docs file itself (a link), not a copy that could drift from it.
        let name = URL(fileURLWithPath: topology.docsFile).lastPathComponent
        let embedded = root.appendingPathComponent("Sources/Lab/Topologies/\(name)").path
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: embedded) == "../../../\(topology.docsFile)")
        _ = try topology.topology()
    }
}
