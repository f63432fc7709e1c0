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

@Suite(.enabled(if: isRoot, "needs root"))
struct DocumentedPolicyTests {
    /// docs/policy-seed.yaml on the seed lab: its exempt prefixes become `to CIDR lookup main` rules ahead of the
    /// strategy's, and the fix works.
    @Test func theDocumentedPolicyFixesTheSeed() throws {
        let path = repositoryRoot.appendingPathComponent("docs/policy-seed.yaml").path
        try withLab { lab in
            let node = try ns(lab, "node")
            let applied = try returnpath("apply", "--lab", lab, "-f", path)
            #expect(applied.status == 0, "\(applied.errors)")
            let rules = try run(["ip", "-n", node.name!, "rule"])
            #expect(rules.contains("20000:\tfrom all to 10.96.0.0/16 lookup main proto 212"))
            #expect(rules.contains("20001:\tfrom all to 10.244.0.0/16 lookup main proto 212"))
            #expect(rules.contains("20100:\tfrom all fwmark 0x2000000/0xe000000 lookup 52001 proto 212"))
            let (status, flows, _) = try probe(lab)
            #expect(status == 0)
            #expect(flows.values.allSatisfy { $0["verdict"] as? String == "symmetric" })
            #expect(try returnpath("remove", "--lab", lab).status == 0)

            // Kubernetes' default service CIDR covers the seed's networks: refused, nothing changed.
            let before = try dumps(node)
            let wide = try writeTemporary(try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "exempt: [10.96.0.0/16", with: "exempt: [10.96.0.0/12"))
            defer { try? FileManager.default.removeItem(atPath: wide) }
            let refused = try returnpath("apply", "--lab", lab, "-f", wide)
            #expect(refused.status == 2)
            #expect(refused.errors.contains("exempt prefix 10.96.0.0/12 covers 10.111.221.21, the gateway of eth1"))
            #expect(try dumps(node) == before)
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"))
struct NetnsTargetTests {
    /// --netns targets any named namespace (here a lab's node, addressed as a plain namespace), as on a node's
    /// own namespace: the policy must come from a file.
    @Test func applyAndRemoveByNamespaceName() throws {
        let path = repositoryRoot.appendingPathComponent("docs/policy-seed.yaml").path
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try dumps(node)
            #expect(try returnpath("apply", "--netns", node.name!).status == 2)   // no policy file
            let applied = try returnpath("apply", "--netns", node.name!, "-f", path, "--strategy", "ingress", "--json")
            #expect(applied.status == 0, "\(applied.errors)")
            let object = try JSONSerialization.jsonObject(with: Data(applied.output.utf8)) as? [String: Any]
            #expect(object?["target"] as? String == node.name)
            #expect(object?["strategy"] as? String == "ingress")
            #expect(try probe(lab).status == 0)
            #expect(try returnpath("remove", "--netns", node.name!).status == 0)
            #expect(try dumps(node) == before)
        }
    }
}
