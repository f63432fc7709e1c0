import Foundation
import Namespace
import Testing

/// Red Hat-family nodes ship rp_filter=1 (strict). Every strategy must work there, and in loose mode, with the
/// setting on `all`, on the interfaces, or both (the kernel uses the maximum of the two).
@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct RPFilterTests {
    static let cases: [(mode: String, keys: [String])] = [
        ("1", ["all", "default", "eth1", "eth2"]), ("1", ["all"]), ("1", ["eth1", "eth2"]), ("2", ["all", "eth1", "eth2"]),
    ]

    @Test(arguments: ["static", "source", "mark", "ingress"])
    func everyStrategyWorksUnderStrictAndLooseReversePathFiltering(strategy: String) throws {
        for (mode, keys) in Self.cases {
            try withLab { lab in
                let node = try ns(lab, "node")
                for key in keys { try node.writeSysctl("net.ipv4.conf.\(key).rp_filter", mode) }
                let before = try state(node)
                let dry = try returnpath("apply", "--lab", lab, "--strategy", strategy, "--dry-run")
                #expect(dry.output.contains("# rp_filter on eth1 is \(mode == "1" ? "strict (1)" : "loose (2)")"), "\(dry.output)")
                let first = try applyJSON(["--lab", lab, "--strategy", strategy])
                #expect(first.status == 0, "\(first.raw.errors)")
                let (status, flows, raw) = try probe(lab)
                #expect(status == 0, "\(strategy) rp_filter=\(mode) on \(keys): \(raw.output)")
                for (key, syn) in [("client1>192.168.1.1:3000", "eth1"), ("client2>192.168.2.1:3000", "eth2")] {
                    #expect(flows[key]?["connected"] as? Bool == true, "\(strategy) rp_filter=\(mode) on \(keys) \(key): \(raw.output)")
                    #expect(flows[key]?["ingress"] as? String == syn && flows[key]?["egress"] as? String == syn,
                            "\(strategy) rp_filter=\(mode) on \(keys) \(key): \(flows[key] ?? [:])")
                }
                let applied = try dumps(node)
                let second = try applyJSON(["--lab", lab, "--strategy", strategy])
                #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0)
                #expect(try dumps(node) == applied)
                #expect(try returnpath("remove", "--lab", lab).status == 0)
                #expect(try state(node) == before, "remove did not restore every sysctl and object")
            }
        }
    }
}
