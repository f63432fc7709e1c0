import Foundation
import Lab
import Namespace
import Netlink
import Testing

/// The three dumps the issue names, in the node's namespace.
func dumps(_ node: NetworkNamespace) throws -> [String] {
    [try run(["ip", "-n", node.name!, "-j", "rule"]),
     try run(["ip", "-n", node.name!, "-j", "route", "show", "table", "all"]),
     try run(["ip", "netns", "exec", node.name!, "nft", "-j", "list", "ruleset"])]
}

func applyJSON(_ arguments: [String]) throws -> (status: Int32, object: [String: Any], raw: CLIResult) {
    let result = try returnpath(["apply", "--json"] + arguments)
    let object = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
    return (result.status, object, result)
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct ApplyTests {
    @Test(arguments: ["static", "source", "mark", "ingress"])
    func eachStrategyFixesTheSeedIdempotentlyAndRemovesCleanly(strategy: String) throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            // Foreign objects outside our band, tables and nft table: they must survive everything.
            try ip(node, "rule", "add", "pref", "500", "from", "10.99.0.0/16", "lookup", "100")
            try ip(node, "route", "add", "10.99.0.0/16", "via", "10.111.220.1", "table", "100")
            try run(["ip", "netns", "exec", node.name!, "nft", "add table inet foreign; add chain inet foreign c { type filter hook output priority 0; }"])
            let before = try dumps(node)

            let first = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(first.status == 0, "\(first.raw.errors)")
            #expect((first.object["added"] as? Int ?? 0) > 0)
            #expect(first.object["removed"] as? Int == 0)

            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(strategy): \(raw.output)")
            for key in ["client1>192.168.1.1:3000", "client2>192.168.2.1:3000"] {
                #expect(flows[key]?["verdict"] as? String == "symmetric", "\(strategy) \(key)")
                #expect(flows[key]?["connected"] as? Bool == true, "\(strategy) \(key)")
            }

            let applied = try dumps(node)
            let second = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(second.status == 0)
            #expect(second.object["added"] as? Int == 0)
            #expect(second.object["removed"] as? Int == 0)
            #expect((second.object["unchanged"] as? Int ?? 0) > 0)
            #expect(try dumps(node) == applied)

            // Foreign objects untouched while applied.
            #expect(try run(["ip", "-n", node.name!, "rule"]).contains("500:\tfrom 10.99.0.0/16 lookup 100"))
            #expect(try run(["ip", "netns", "exec", node.name!, "nft", "list", "tables"]).contains("inet foreign"))

            let removed = try returnpath("remove", "--lab", lab, "--json")
            #expect(removed.status == 0)
            #expect(try dumps(node) == before)
            if strategy == "mark" || strategy == "ingress" {
                #expect(try node.readSysctl("net.ipv4.conf.eth1.src_valid_mark") == "0")
            }
        }
    }

    @Test func switchingStrategyConvergesToExactlyTheNewOne() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try dumps(node)
            for strategy in ["mark", "static", "ingress", "source"] {
                #expect(try applyJSON(["--lab", lab, "--strategy", strategy]).status == 0)
            }
            let switched = try dumps(node)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try applyJSON(["--lab", lab, "--strategy", "source"]).status == 0)
            #expect(try dumps(node) == switched)   // source alone leaves exactly what the switches left
            #expect(try node.readSysctl("net.ipv4.conf.eth2.src_valid_mark") == "0")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try dumps(node) == before)
        }
    }

    @Test func changingOneServiceTouchesOnlyTheSet() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let policy = { (services: String) in """
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                metadata: {name: t}
                spec:
                  strategy: mark
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, services: [\(services)]}
                    - {name: eth2, gateway: 10.111.222.21, services: [192.168.2.1]}
                """ }
            let path = try writeTemporary(policy("192.168.1.1"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(try applyJSON(["--lab", lab, "-f", path]).status == 0)
            let handles = try run(["ip", "netns", "exec", node.name!, "nft", "-a", "list", "chain", "inet", "returnpath", "output"])
            try policy("192.168.1.1, 192.168.1.7").write(toFile: path, atomically: true, encoding: .utf8)
            let change = try applyJSON(["--lab", lab, "-f", path])
            #expect(change.status == 0)
            #expect(change.object["added"] as? Int == 1)
            #expect(change.object["removed"] as? Int == 0)
            let changes = change.object["changes"] as? [[String: Any]] ?? []
            #expect(changes.map { $0["object"] as? String } == ["element 192.168.1.7 of set svc_1"])
            // The chain was not reloaded: same rule handles.
            #expect(try run(["ip", "netns", "exec", node.name!, "nft", "-a", "list", "chain", "inet", "returnpath", "output"]) == handles)
            #expect(try run(["ip", "netns", "exec", node.name!, "nft", "list", "set", "inet", "returnpath", "svc_1"]).contains("192.168.1.7"))
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// Services as prefixes (mark's interval sets, over nfnetlink): the seed's services inside prefixes (adjacent
    /// ones, and one at the top of the address space, which has no end element), one prefix added, one replaced
    /// (its start key both deleted and added in one transaction), nested prefixes refused.
    @Test func prefixServicesUseIntervalSetsOverNfnetlink() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try dumps(node)
            let policy = { (services: String) in """
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                metadata: {name: t}
                spec:
                  strategy: mark
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, services: [\(services)]}
                    - {name: eth2, gateway: 10.111.222.21, services: [192.168.2.1, 10.9.0.0/16]}
                """ }
            let path = try writeTemporary(policy("192.168.1.0/30, 192.168.1.4/30, 255.255.255.0/24"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let first = try applyJSON(["--lab", lab, "-f", path])
            #expect(first.status == 0, "\(first.raw.errors)")
            func set(_ name: String) throws -> String {
                try run(["ip", "netns", "exec", node.name!, "nft", "list", "set", "inet", "returnpath", name])
            }
            let listed = try set("svcnet_1")
            for element in ["192.168.1.0/30", "192.168.1.4/30", "255.255.255.0/24"] { #expect(listed.contains(element), "\(listed)") }
            #expect(try set("svcnet_2").contains("10.9.0.0/16"))

            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")
            for key in ["client1>192.168.1.1:3000", "client2>192.168.2.1:3000"] {
                #expect(flows[key]?["verdict"] as? String == "symmetric", "\(key)")
            }

            let applied = try dumps(node)
            let second = try applyJSON(["--lab", lab, "-f", path])
            #expect(second.status == 0)
            #expect(second.object["added"] as? Int == 0)
            #expect(second.object["removed"] as? Int == 0)
            #expect(try dumps(node) == applied)

            let handles = try run(["ip", "netns", "exec", node.name!, "nft", "-a", "list", "chain", "inet", "returnpath", "output"])
            try policy("192.168.1.0/30, 192.168.1.4/30, 255.255.255.0/24, 192.168.1.8/30").write(toFile: path, atomically: true, encoding: .utf8)
            let added = try applyJSON(["--lab", lab, "-f", path])
            #expect(added.status == 0, "\(added.raw.errors)")
            #expect(added.object["added"] as? Int == 1)
            #expect(added.object["removed"] as? Int == 0)
            #expect((added.object["changes"] as? [[String: Any]] ?? []).map { $0["object"] as? String } == ["element 192.168.1.8/30 of set svcnet_1"])
            #expect(try run(["ip", "netns", "exec", node.name!, "nft", "-a", "list", "chain", "inet", "returnpath", "output"]) == handles)
            #expect(try set("svcnet_1").contains("192.168.1.8/30"))

            try policy("192.168.1.0/30, 192.168.1.4/31, 255.255.255.0/24, 192.168.1.8/30").write(toFile: path, atomically: true, encoding: .utf8)
            let replaced = try applyJSON(["--lab", lab, "-f", path])
            #expect(replaced.status == 0, "\(replaced.raw.errors)")
            #expect(replaced.object["added"] as? Int == 1)
            #expect(replaced.object["removed"] as? Int == 1)
            #expect(Set((replaced.object["changes"] as? [[String: Any]] ?? []).compactMap { $0["object"] as? String })
                    == ["element 192.168.1.4/31 of set svcnet_1", "element 192.168.1.4/30 of set svcnet_1"])
            #expect(!(try set("svcnet_1").contains("192.168.1.4/30")))
            #expect(try run(["ip", "netns", "exec", node.name!, "nft", "-a", "list", "chain", "inet", "returnpath", "output"]) == handles)
            #expect(try probe(lab).flows["client1>192.168.1.1:3000"]?["verdict"] as? String == "symmetric")

            let kept = try dumps(node)
            try policy("192.168.1.0/24, 192.168.1.4/30").write(toFile: path, atomically: true, encoding: .utf8)
            let nested = try returnpath(["apply", "--lab", lab, "-f", path])
            #expect(nested.status == 2)
            #expect(nested.errors.contains("service 192.168.1.4/30 of eth1 is inside its service 192.168.1.0/24"), "\(nested.errors)")
            #expect(try dumps(node) == kept)

            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try dumps(node) == before)
        }
    }

    @Test func invalidPoliciesAreRefusedAndNothingChanges() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try dumps(node)
            let header = "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n  interfaces:\n"
            let cases: [(String, [String], String)] = [
                ("    - {name: eth9, gateway: 10.111.221.21, services: [192.168.1.1]}\n", [], "unknown interface eth9"),
                ("    - {name: eth1, gateway: 10.111.222.21, services: [192.168.1.1]}\n", [], "not on a subnet connected to eth1"),
                ("    - {name: eth1, gateway: 10.111.221.11, services: [192.168.1.1]}\n", [], "is an address of this node itself"),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1]}\n    - {name: eth2, gateway: 10.111.222.21, services: [192.168.1.1]}\n",
                 ["--strategy", "source"], "is on both eth1 and eth2"),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1]}\n    - {name: eth2, gateway: 10.111.222.21, services: [192.168.1.1]}\n",
                 ["--strategy", "mark"], "use --strategy ingress"),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1]}\n", ["--strategy", "static"], "static needs client prefixes"),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1]}\n  ownership: {markMask: 0xc000}\n",
                 ["--strategy", "mark"], "overlaps kube-proxy"),
                ("    - {name: eth1, gateway: 10.111.221.21, servces: [192.168.1.1]}\n", [], ":5: unknown key \"servces\""),
                ("    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.300]}\n", [], ":5: "),
                ("    - {name: eth1, gateway: [\n", [], "malformed YAML"),
            ]
            for (body, extra, message) in cases {
                let path = try writeTemporary(header + body)
                defer { try? FileManager.default.removeItem(atPath: path) }
                let result = try returnpath(["apply", "--lab", lab, "-f", path] + extra)
                #expect(result.status == 2, "\(message): \(result.errors)")
                #expect(result.errors.contains(message), "want \(message), got \(result.errors)")
                #expect(try dumps(node) == before, "\(message) changed something")
            }
            #expect(try returnpath("apply", "--netns", "rp-no-such-namespace", "-f", "/dev/null").status == 2)
        }
    }

    @Test func aForeignObjectInOurBandOrTablesIsAConflict() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, "rule", "add", "pref", "20150", "from", "10.98.0.0/16", "lookup", "main")
            let before = try dumps(node)
            let result = try returnpath("apply", "--lab", lab, "--strategy", "source")
            #expect(result.status == 1)
            #expect(result.errors.contains("conflict: rule \"pref 20150 from 10.98.0.0/16 lookup main"))
            #expect(try dumps(node) == before)
            try ip(node, "rule", "del", "pref", "20150")
            try ip(node, "route", "add", "10.98.0.0/16", "via", "10.111.220.1", "table", "52005")
            let routeConflict = try returnpath("apply", "--lab", lab, "--strategy", "source")
            #expect(routeConflict.status == 1)
            #expect(routeConflict.errors.contains("conflict: route \"10.98.0.0/16 via 10.111.220.1 dev eth0 table 52005"))
        }
    }

    @Test func dryRunPrintsCommandsAndChangesNothing() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try dumps(node)
            let result = try returnpath("apply", "--lab", lab, "--strategy", "mark", "--dry-run")
            #expect(result.status == 0)
            #expect(result.output.contains("ip -n \(node.name!) rule add pref 20100 from all fwmark 0x2000000/0xe000000 lookup 52001 proto 212"))
            #expect(result.output.contains("ip -n \(node.name!) route replace default via 10.111.221.21 dev eth1 table 52001 proto 212"))
            #expect(result.output.contains("ip netns exec \(node.name!) nft -f - <<'EOF'"))
            #expect(result.output.contains("ip netns exec \(node.name!) sysctl -w net.ipv4.conf.eth1.src_valid_mark=1"))
            #expect(try dumps(node) == before)
        }
    }
}
