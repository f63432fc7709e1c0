import Foundation
import Namespace
import Testing

/// The rule, route and nft dumps of both families, and the sysctls.
func dualState(_ node: NetworkNamespace) throws -> [String] {
    try state(node) + [try run(["ip", "-n", node.name!, "-j", "-6", "rule"]),
                       try run(["ip", "-n", node.name!, "-j", "-6", "route", "show", "table", "all"])]
}

/// Dual-stack: the seed with an IPv6 network beside each IPv4 one; every strategy fixes both families, owned,
/// idempotent and exactly removable per family.
@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DualStackTests {
    static let file = repositoryRoot.appendingPathComponent("docs/seed-dualstack.yaml").path

    @Test(arguments: ["static", "source", "mark", "ingress"])
    func everyStrategyFixesBothFamilies(strategy: String) throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            let before = try dualState(node)
            let (_, unfixed, _) = try probe(lab)
            #expect(unfixed.count == 4 && unfixed.values.allSatisfy { $0["verdict"] as? String == "asymmetric" })
            let dry = try returnpath("apply", "--lab", lab, "--strategy", strategy, "--dry-run")
            #expect(dry.output.contains("ip -n \(node.name!) -6 "), "\(dry.output)")
            let applied = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(strategy): \(raw.output)")
            for key in ["client1>192.168.1.1:3000", "client1>[fd00:1::1]:3000", "client2>192.168.2.1:3000", "client2>[fd00:2::1]:3000"] {
                #expect(flows[key]?["verdict"] as? String == "symmetric" && flows[key]?["connected"] as? Bool == true,
                        "\(strategy) \(key): \(raw.output)")
            }
            let dumped = try dualState(node)
            let second = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0, "\(second.raw.output)")
            #expect(try dualState(node) == dumped)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try dualState(node) == before)
        }
    }

    /// Routers on secondary networks usually announce themselves by their link-local address.
    @Test func aLinkLocalGatewayWorks() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node"), router = try ns(lab, "router")
            try ip(router, "address", "add", "fe80::21/64", "dev", "eth1")
            try ip(router, "address", "add", "fe80::21/64", "dev", "eth2")
            let path = try writeTemporary("""
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                spec:
                  strategy: mark
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, gateway6: "fe80::21", services: [192.168.1.1, "fd00:1::1"]}
                    - {name: eth2, gateway: 10.111.222.21, gateway6: "fe80::21", services: [192.168.2.1, "fd00:2::1"]}
                """)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let applied = try applyJSON(["--lab", lab, "-f", path])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            #expect(try run(["ip", "-n", node.name!, "-6", "route", "show", "table", "52001"]).contains("default via fe80::21 dev eth1"))
            let (status, _, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    @Test func invalidIPv6PoliciesAreRefusedAndNothingChanges() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            let before = try dualState(node)
            let header = "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n  interfaces:\n"
            let cases: [(String, String)] = [
                ("    - {name: eth1, gateway: 10.111.221.21, gateway6: \"fd00:221::11\", services: [\"fd00:1::1\"]}\n", "is an address of this node itself"),
                ("    - {name: eth1, gateway: 10.111.221.21, gateway6: \"fd00:222::21\", services: [\"fd00:1::1\"]}\n", "is not on a subnet connected to eth1"),
                ("    - {name: eth1, gateway: \"fd00:221::21\", services: [192.168.1.1]}\n", "192.168.1.1/32 is IPv4 but eth1 has no IPv4 gateway"),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [\"fd00:1::1\"]}\n", "is IPv6 but eth1 has no IPv6 gateway"),
                ("    - {name: eth1, gateway: 10.111.221.21, gateway6: 10.111.221.22}\n", "gateway6 of eth1 must be an IPv6 address"),
                ("    - {name: eth1, gateway: \"fd00:221::21\", gateway6: \"fd00:221::22\"}\n", "is already IPv6"),
            ]
            for (body, message) in cases {
                let path = try writeTemporary(header + body)
                defer { try? FileManager.default.removeItem(atPath: path) }
                let result = try returnpath(["apply", "--lab", lab, "-f", path, "--strategy", "mark"])
                #expect(result.status == 2, "\(message): \(result.errors)")
                #expect(result.errors.contains(message), "want \(message), got \(result.errors)")
                #expect(try dualState(node) == before, "\(message) changed something")
            }
        }
    }
}
