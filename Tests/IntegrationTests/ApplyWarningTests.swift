import Foundation
import Testing

@Suite(.enabled(if: isRoot, "needs root"))
struct ApplyWarningTests {
    @Test func sourceWarnsAboveAHundredServices() throws {
        try withLab { lab in
            let services = (1...101).map { "10.210.0.\($0)" }.joined(separator: ", ")
            let path = try writeTemporary("""
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                spec:
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, services: [\(services)]}
                """)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let source = try returnpath("apply", "--lab", lab, "-f", path, "--strategy", "source", "--dry-run")
            #expect(source.status == 0)
            #expect(source.errors.contains("warning: source installs one rule per service"))
            #expect(source.errors.contains("--strategy mark"))
            let mark = try returnpath("apply", "--lab", lab, "-f", path, "--strategy", "mark", "--dry-run")
            #expect(mark.status == 0)
            #expect(!mark.errors.contains("warning"))
        }
    }
}
