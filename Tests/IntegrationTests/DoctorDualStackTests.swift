import Doctor
import Foundation
import Namespace
import Testing

/// doctor on the dual-stack seed: IPv6 rows beside IPv4's, the IPv6 rule list and tables, `ip6` matches, the kernel
/// asked over IPv6 too.
@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DoctorDualStackTests {
    static let file = repositoryRoot.appendingPathComponent("docs/seed-dualstack.yaml").path
    static let flows = [("10.111.223.23", "192.168.1.1", "eth1"), ("10.111.224.23", "192.168.2.1", "eth2"),
                        ("fd00:223::23", "fd00:1::1", "eth1"), ("fd00:224::23", "fd00:2::1", "eth2")]

    @Test(arguments: ["mark", "ingress"])
    func bothFamiliesAsymmetricUntilApplied(strategy: String) throws {
        try withLab(file: Self.file) { lab in
            let (status, object, raw) = try doctor(lab)
            #expect(status == 1, "\(raw.output)")
            let rows = checks(object)
            #expect(rows.count == 4, "\(rows.keys.sorted())")
            for (key, gateway) in [("192.168.1.1@eth1", "10.111.220.1"), ("192.168.2.1@eth2", "10.111.220.1"),
                                   ("fd00:1::1@eth1", "fd00:220::1"), ("fd00:2::1@eth2", "fd00:220::1")] {
                #expect(rows[key]?["verdict"] as? String == "asymmetric", "\(key): \(rows[key] ?? [:])")
                #expect(rows[key]?["egress"] as? String == "eth0")
                #expect(rows[key]?["gateway"] as? String == gateway)
                #expect(rows[key]?["rule"] as? Int == 32766)
                #expect(rows[key]?["table"] as? String == "main")
                let kernel = rows[key]?["kernel"] as? [String: Any]
                #expect(kernel?["agrees"] as? Bool == true, "\(key): \(kernel ?? [:])")
            }
            // The client of an IPv6 row is an IPv6 address behind the interface, asked with ip -6.
            let v6 = try #require(rows["fd00:1::1@eth1"])
            #expect((v6["client"] as? String)?.hasPrefix("fd00:223::") == true, "\(v6)")
            #expect(((v6["kernel"] as? [String: Any])?["command"] as? String)?.hasPrefix("ip -6 route get") == true)
            #expect(findings(object, FindingID.replyAsymmetric).count == 4)
            // No fib rule here: the note says IPv6 requests are not reverse-path checked.
            let notes = object["notes"] as? [String] ?? []
            #expect(notes.contains { $0.hasPrefix("IPv6 has no rp_filter") }, "\(notes)")

            #expect(try returnpath("apply", "--lab", lab, "--strategy", strategy).status == 0)
            try expectClean(lab)
            let after = checks(try doctor(lab).object)
            #expect(after["fd00:1::1@eth1"]?["egress"] as? String == "eth1")
            #expect(after["fd00:1::1@eth1"]?["gateway"] as? String == "fd00:221::21")
            #expect(after["fd00:2::1@eth2"]?["egress"] as? String == "eth2")
            // The record alone (no lab policy given): mark's IPv6 services come from its svc6 sets, each interface's
            // gateway6 from its table's IPv6 default route. (ingress from the record alone reports drift for both
            // families: its implied policy does not plan the same chains — not IPv6's doing.)
            if strategy == "mark" {
                let recorded = try returnpath(["doctor", "--netns", try ns(lab, "node").name!, "--json"])
                let object = (try? JSONSerialization.jsonObject(with: Data(recorded.output.utf8)) as? [String: Any]) ?? [:]
                #expect(recorded.status == 0, "\(recorded.output)\(recorded.errors)")
                #expect(object["source"] as? String == "record")
                let rows = checks(object)
                #expect(rows["fd00:1::1@eth1"]?["verdict"] as? String == "ok", "\(rows.keys.sorted())")
                #expect(rows["fd00:2::1@eth2"]?["gateway"] as? String == "fd00:222::21")
            }
        }
    }

    /// explain agrees with `ip -6 route get … from … mark …` on every flow, request and reply, before a fix and
    /// under each strategy.
    @Test func explainAgreesWithTheKernelOverIPv6() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            for strategy in ["none", "static", "source", "mark", "ingress"] {
                if strategy != "none" {
                    let applied = try returnpath("apply", "--lab", lab, "--strategy", strategy)
                    #expect(applied.status == 0, "\(applied.errors)")
                }
                for (index, (client, service, interface)) in Self.flows.enumerated() {
                    let port = UInt16(42000 + index)
                    try expectExplainAgrees(lab, node, from: client, to: service, iif: interface, sport: port, dport: 3000)
                    try expectExplainAgrees(lab, node, from: service, to: client, requestIif: interface, sport: 3000, dport: port)
                    try expectExplainAgrees(lab, node, from: service, to: client, sport: 3000, dport: port)
                }
                if strategy != "none" { try expectClean(lab) }
            }
            // A family mix is refused as bad input.
            let mixed = try explain(lab, ["--from", "fd00:1::1", "--to", "10.111.223.23"])
            #expect(mixed.status == 2, "\(mixed.raw.output)\(mixed.raw.errors)")
        }
    }

    /// A link flap empties returnpath's tables of both families: the IPv6 rules' table has no IPv6 default route.
    @Test func aLinkFlapLeavesTheIPv6TableWithoutDefault() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "source").status == 0)
            try expectClean(lab)
            // Keep eth1's IPv6 addresses over the flap (IPv6 flushes them otherwise): only the routes go, as for IPv4.
            try node.writeSysctl("net.ipv6.conf.eth1.keep_addr_on_down", "1")
            try ip(node, "link", "set", "eth1", "down")
            try ip(node, "link", "set", "eth1", "up")
            let (status, object, raw) = try doctor(lab)
            #expect(status == 1, "\(raw.output)")
            let tables = findings(object, FindingID.tableWithoutDefault)
            #expect(tables.contains { ($0["message"] as? String)?.hasPrefix("IPv6 rule") == true }, "\(raw.output)")
            #expect(tables.contains { ($0["message"] as? String)?.hasPrefix("rule") == true }, "\(raw.output)")
            #expect(checks(object)["fd00:1::1@eth1"]?["verdict"] as? String == "asymmetric")
            #expect(errorIDs(object).contains(FindingID.drift))
            let finding = try #require(tables.first { ($0["message"] as? String)?.hasPrefix("IPv6") == true })
            try runFix(finding)
            try expectClean(lab)
        }
    }

    /// Without keep_addr_on_down a link flap also takes eth1's global IPv6 address: the policy's gateway6 is off-link.
    @Test func aLinkFlapTakesTheIPv6Address() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "mark").status == 0)
            try ip(node, "link", "set", "eth1", "down")
            try ip(node, "link", "set", "eth1", "up")
            let (status, object, raw) = try doctor(lab)
            #expect(status == 1)
            let offLink = findings(object, FindingID.gatewayOffLink)
            #expect(offLink.count == 1, "\(raw.output)")
            #expect((offLink.first?["message"] as? String)?.contains("the policy's IPv6 gateway fd00:221::21 of eth1") == true, "\(raw.output)")
            #expect(findings(object, FindingID.tableWithoutDefault).count == 2)
            // The address back, then apply: both families clean.
            try ip(node, "-6", "address", "add", "fd00:221::11/64", "dev", "eth1", "nodad")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "mark").status == 0)
            try expectClean(lab)
        }
    }

    /// Routers announce themselves by link-local addresses: a gateway6 of fe80::21, scoped to each interface.
    @Test func aLinkLocalGateway() throws {
        try withLab(file: Self.file) { lab in
            let router = try ns(lab, "router")
            try ip(router, "address", "add", "fe80::21/64", "dev", "eth1")
            try ip(router, "address", "add", "fe80::21/64", "dev", "eth2")
            let path = try writeTemporary("""
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                spec:
                  strategy: mark
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, gateway6: "fe80::21", services: [192.168.1.1, "fd00:1::1"], clients: [10.111.223.0/24, "fd00:223::/64"]}
                    - {name: eth2, gateway: 10.111.222.21, gateway6: "fe80::21", services: [192.168.2.1, "fd00:2::1"], clients: [10.111.224.0/24, "fd00:224::/64"]}
                """)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let before = try doctor(lab, ["-f", path])
            #expect(before.status == 1)
            #expect(checks(before.object)["fd00:2::1@eth2"]?["verdict"] as? String == "asymmetric", "\(before.raw.output)")
            #expect(try returnpath("apply", "--lab", lab, "-f", path).status == 0)
            try expectClean(lab, extra: ["-f", path])
            let rows = checks(try doctor(lab, ["-f", path]).object)
            for (key, egress) in [("fd00:1::1@eth1", "eth1"), ("fd00:2::1@eth2", "eth2")] {
                #expect(rows[key]?["egress"] as? String == egress, "\(key): \(rows[key] ?? [:])")
                #expect(rows[key]?["gateway"] as? String == "fe80::21")
                #expect((rows[key]?["kernel"] as? [String: Any])?["agrees"] as? Bool == true)
            }
        }
    }

    /// A duplicated IPv6 rule is found in `ip -6 rule`, and its fix deletes it with `ip -6`.
    @Test func aDuplicateIPv6Rule() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            try ip(node, "-6", "rule", "add", "pref", "1000", "from", "fd00:1::1", "lookup", "200")
            try ip(node, "-6", "rule", "add", "pref", "1001", "from", "fd00:1::1", "lookup", "200")
            try ip(node, "-6", "route", "add", "default", "via", "fd00:221::21", "dev", "eth1", "table", "200")
            let finding = try expectFindingAndFix(lab, FindingID.duplicateRule)
            #expect((finding["fix"] as? String)?.hasPrefix("ip -n \(node.name!) -6 rule del pref 1001") == true, "\(finding)")
            let after = try doctor(lab)
            #expect(findings(after.object, FindingID.duplicateRule).isEmpty)
            #expect(checks(after.object)["fd00:1::1@eth1"]?["verdict"] as? String == "ok", "\(after.raw.output)")
        }
    }

    /// An nftables fib rule, IPv6's rp_filter, is reported.
    @Test func theIPv6ReversePathRuleIsReported() throws {
        try withLab(file: Self.file) { lab in
            let node = try ns(lab, "node")
            try run(["ip", "netns", "exec", node.name!, "nft", "add", "table", "ip6", "rpf"])
            try run(["ip", "netns", "exec", node.name!, "nft", "add", "chain", "ip6", "rpf", "pre",
                     "{ type filter hook prerouting priority raw; }"])
            try run(["ip", "netns", "exec", node.name!, "nft", "add", "rule", "ip6", "rpf", "pre",
                     "fib", "saddr", ".", "iif", "oif", "missing", "drop"])
            let (_, object, raw) = try doctor(lab)
            let notes = object["notes"] as? [String] ?? []
            #expect(notes.contains { $0.hasPrefix("IPv6 reverse-path check: nft ip6 rpf pre") }, "\(raw.output)")
        }
    }
}
