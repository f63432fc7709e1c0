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
        _ = try topology.topology()
    }
}
