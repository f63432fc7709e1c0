import Foundation
import Netlink
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

@Suite(.enabled(if: isRoot, "needs root"))
struct ApplyRecordTests {
    /// apply records (sysctl originals) live as long as their namespace: lab down drops them.
    @Test func labDownDropsWhatApplyRecorded() throws {
        let lab = uniqueLabName()
        defer { _ = try? returnpath("lab", "down", "--name", lab) }
        #expect(try returnpath("lab", "up", "-q", "--name", lab).status == 0)
        let cookie = try #require(try NetlinkSocket(namespace: try ns(lab, "node")).namespaceCookie())
        let record = "/run/returnpath/applied/netns-cookie-\(cookie).json"
        #expect(try returnpath("apply", "--lab", lab, "--strategy", "ingress").status == 0)
        #expect(FileManager.default.fileExists(atPath: record))
        #expect(try returnpath("lab", "down", "--name", lab).status == 0)
        #expect(!FileManager.default.fileExists(atPath: record))
    }
}
