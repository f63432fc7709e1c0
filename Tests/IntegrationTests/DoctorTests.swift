import Doctor
import Foundation
import Namespace
import Netlink
import ReturnRouting
import Testing

/// `returnpath doctor --json` on a lab's node.
func doctor(_ lab: String, _ extra: [String] = []) throws -> (status: Int32, object: [String: Any], raw: CLIResult) {
    let result = try returnpath(["doctor", "--lab", lab, "--json"] + extra)
    let object = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
    return (result.status, object, result)
}

func findings(_ object: [String: Any], _ id: String? = nil) -> [[String: Any]] {
    let all = object["findings"] as? [[String: Any]] ?? []
    return id.map { id in all.filter { $0["id"] as? String == id } } ?? all
}

func errorIDs(_ object: [String: Any]) -> Set<String> {
    Set(findings(object).filter { $0["severity"] as? String == "error" }.compactMap { $0["id"] as? String })
}

func checks(_ object: [String: Any]) -> [String: [String: Any]] {
    var rows: [String: [String: Any]] = [:]
    for row in object["checks"] as? [[String: Any]] ?? [] {
        let port = (row["port"] as? Int).map { ":\($0)" } ?? ""
        rows["\(row["service"] ?? "")\(port)@\(row["interface"] ?? "")"] = row
    }
    return rows
}

/// Runs a finding's fix: commands joined by " && ", each an argument vector (ip, sysctl, returnpath) — no shell.
func runFix(_ finding: [String: Any]) throws {
    let fix = try #require(finding["fix"] as? String, "finding \(finding["id"] ?? "") has no fix")
    for command in fix.components(separatedBy: " && ") {
        let words = command.split(separator: " ").map(String.init)
        if words.first == "returnpath" {
            let result = try returnpath(Array(words.dropFirst()))
            try #require(result.status == 0, "\(command): \(result.errors)")
        } else {
            try run(words)
        }
    }
}

/// Asserts doctor finds `id` (as an error, exit 1), runs that finding's fix, and returns what doctor says after.
@discardableResult
func expectFindingAndFix(_ lab: String, _ id: String, extra: [String] = [], fix: Bool = true,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let before = try doctor(lab, extra)
    #expect(before.status == 1, "\(id): \(before.raw.output)\(before.raw.errors)", sourceLocation: sourceLocation)
    #expect(errorIDs(before.object).contains(id), "expected \(id) in \(errorIDs(before.object)): \(before.raw.output)", sourceLocation: sourceLocation)
    let finding = try #require(findings(before.object, id).first, sourceLocation: sourceLocation)
    #expect(!(finding["objects"] as? [String] ?? []).isEmpty || id == FindingID.drift, sourceLocation: sourceLocation)
    if fix { try runFix(finding) }
    return finding
}

/// The node is clean: exit 0, no error, every check ok.
func expectClean(_ lab: String, extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
    let after = try doctor(lab, extra)
    #expect(after.status == 0, "\(after.raw.output)\(after.raw.errors)", sourceLocation: sourceLocation)
    #expect(errorIDs(after.object).isEmpty, sourceLocation: sourceLocation)
    for (key, row) in checks(after.object) {
        #expect(row["verdict"] as? String == "ok", "\(key): \(row)", sourceLocation: sourceLocation)
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DoctorTests {
    @Test(arguments: ["static", "source", "mark", "ingress"])
    func theSeedIsAsymmetricUntilApplied(strategy: String) throws {
        try withLab { lab in
            let (status, object, raw) = try doctor(lab)
            #expect(status == 1, "\(raw.output)")
            #expect(object["source"] as? String == "lab")
            let rows = checks(object)
            for (key, egress) in [("192.168.1.1@eth1", "eth0"), ("192.168.2.1@eth2", "eth0")] {
                #expect(rows[key]?["verdict"] as? String == "asymmetric", "\(key): \(rows)")
                #expect(rows[key]?["egress"] as? String == egress)
                #expect(rows[key]?["gateway"] as? String == "10.111.220.1")
                #expect(rows[key]?["rule"] as? Int == 32766)
                #expect(rows[key]?["table"] as? String == "main")
                #expect((rows[key]?["kernel"] as? [String: Any])?["agrees"] as? Bool == true)
            }
            let asymmetric = findings(object, FindingID.replyAsymmetric)
            #expect(asymmetric.count == 2)
            #expect(asymmetric.allSatisfy { ($0["fix"] as? String)?.hasPrefix("returnpath apply --lab \(lab)") == true })
            // The table form: the row, the finding, the fix.
            let text = try returnpath("doctor", "--lab", lab)
            #expect(text.status == 1)
            #expect(text.output.contains("192.168.1.1  eth1       eth0          10.111.220.1  rule 32766 → table main  asymmetric"), "\(text.output)")
            #expect(text.output.contains("error reply-asymmetric:"))
            #expect(text.output.contains("fix: returnpath apply --lab \(lab)"))

            #expect(try returnpath("apply", "--lab", lab, "--strategy", strategy).status == 0)
            try expectClean(lab)
            let after = try doctor(lab)
            #expect(after.object["strategy"] as? String == strategy)
        }
    }

    /// The POC's first typo: a route via the node's own address.
    @Test func gatewayIsTheNodesOwnAddress() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, "route", "add", "default", "via", "10.111.221.11", "dev", "eth1", "table", "200")
            try ip(node, "rule", "add", "pref", "1000", "from", "192.168.1.1", "lookup", "200")
            let finding = try expectFindingAndFix(lab, FindingID.gatewayIsLocal)
            #expect(finding["fix"] as? String == "ip -n \(node.name!) route replace default via 10.111.221.21 dev eth1 table 200")
            let after = try doctor(lab)
            #expect(checks(after.object)["192.168.1.1@eth1"]?["verdict"] as? String == "ok")
            #expect(try returnpath("apply", "--lab", lab).status == 0)
            try expectClean(lab)
        }
    }

    /// The POC's second typo: svc2 sent to eth1's table.
    @Test func sourceRuleToAnotherInterfacesTable() throws {
        try withLab { lab in
            try sourceRouting(lab, typo: true)
            let finding = try expectFindingAndFix(lab, FindingID.ruleWrongInterface)
            #expect((finding["message"] as? String)?.contains("strict rp_filter") == true)
            #expect((finding["objects"] as? [String])?.contains("rule pref 1001 from 192.168.2.1 lookup 200") == true)
            try expectClean(lab)
        }
    }

    /// A hand-made source fix, then a link flap: eth1's routes are gone from table 200, the rule stays.
    @Test func linkFlapEmptiesTheHandMadeTable() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try sourceRouting(lab)
            try expectClean(lab)
            try ip(node, "link", "set", "eth1", "down")
            try ip(node, "link", "set", "eth1", "up")
            let finding = try expectFindingAndFix(lab, FindingID.tableWithoutDefault)
            #expect((finding["message"] as? String)?.contains("table 200, which is empty") == true)
            #expect(finding["fix"] as? String == "ip -n \(node.name!) route replace default via 10.111.221.21 dev eth1 table 200")
            try expectClean(lab)
        }
    }

    /// After apply, a link flap empties returnpath's own table: drift, and apply restores it.
    @Test func linkFlapAfterApplyIsDriftThatApplyRepairs() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "mark").status == 0)
            try ip(node, "link", "set", "eth1", "down")
            try ip(node, "link", "set", "eth1", "up")
            let (status, object, raw) = try doctor(lab)
            #expect(status == 1)
            #expect(errorIDs(object).isSuperset(of: [FindingID.drift, FindingID.tableWithoutDefault, FindingID.replyAsymmetric]), "\(raw.output)")
            let drift = try #require(findings(object, FindingID.drift).first)
            #expect((drift["objects"] as? [String])?.contains("missing route default via 10.111.221.21 dev eth1 table 52001 proto 212") == true, "\(drift)")
            #expect(drift["fix"] as? String == "returnpath apply --lab \(lab) --strategy mark")
            try runFix(drift)
            try expectClean(lab)
        }
    }

    /// The POC's scripts append on every run.
    @Test func duplicateRules() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, "route", "add", "default", "via", "10.111.221.21", "dev", "eth1", "table", "200")
            for _ in 0..<3 { try ip(node, "rule", "add", "from", "192.168.1.1", "lookup", "200") }
            let finding = try expectFindingAndFix(lab, FindingID.duplicateRule)
            #expect((finding["objects"] as? [String])?.count == 3)
            #expect(try run(["ip", "-n", node.name!, "rule"]).components(separatedBy: "from 192.168.1.1 lookup 200").count == 2)
            #expect(try returnpath("apply", "--lab", lab).status == 0)
            try expectClean(lab)
        }
    }

    /// A foreign rule ahead of returnpath's band catches svc1's replies.
    @Test func foreignRuleFirst() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "source").status == 0)
            try ip(node, "route", "add", "default", "via", "10.111.220.1", "dev", "eth0", "table", "100")
            try ip(node, "rule", "add", "pref", "1500", "from", "192.168.1.0/24", "lookup", "100")
            let finding = try expectFindingAndFix(lab, FindingID.foreignRuleFirst)
            #expect(finding["fix"] as? String == "ip -n \(node.name!) rule del pref 1500 from 192.168.1.0/24 lookup 100")
            try expectClean(lab)
        }
    }

    /// mark's fwmark rules with src_valid_mark=0 under a strict rp_filter: the requests are dropped.
    @Test func fwmarkRulesWithoutSrcValidMark() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "mark").status == 0)
            try node.writeSysctl("net.ipv4.conf.eth1.rp_filter", "1")
            try node.writeSysctl("net.ipv4.conf.eth1.src_valid_mark", "0")
            let (_, object, _) = try doctor(lab)
            #expect(checks(object)["192.168.1.1@eth1"]?["verdict"] as? String == "unreachable")
            #expect(errorIDs(object).contains(FindingID.drift))
            let finding = try expectFindingAndFix(lab, FindingID.fwmarkWithoutSrcValidMark)
            #expect(finding["fix"] as? String == "ip netns exec \(node.name!) sysctl -w net.ipv4.conf.eth1.src_valid_mark=1")
            try expectClean(lab)
            // The probe agrees: with src_valid_mark back, client1 connects through the strict filter.
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")
            #expect(flows["client1>192.168.1.1:3000"]?["connected"] as? Bool == true)
        }
    }

    /// A strict rp_filter and no fix: the requests never get in.
    @Test func strictReversePathFilterDropsTheRequests() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try node.writeSysctl("net.ipv4.conf.all.rp_filter", "1")
            let finding = try expectFindingAndFix(lab, FindingID.requestDropped, fix: false)
            #expect((finding["message"] as? String)?.contains("rp_filter is strict on eth1") == true)
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "ingress").status == 0)
            try expectClean(lab)
        }
    }

    /// Other rules and chains using returnpath's mark bits: an nftables rule, an iptables-nft MARK target, a rule.
    @Test func markBitsOverlap() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let policy = try writeTemporary(try String(contentsOf: repositoryRoot.appendingPathComponent("docs/policy-seed.yaml"), encoding: .utf8))
            defer { try? FileManager.default.removeItem(atPath: policy) }
            #expect(try returnpath("apply", "--lab", lab, "-f", policy).status == 0)
            try expectClean(lab, extra: ["-f", policy])
            try run(["ip", "netns", "exec", node.name!, "nft",
                     "add table ip mangle; add chain ip mangle OUTPUT { type route hook output priority mangle; }; add rule ip mangle OUTPUT ip daddr 10.99.0.0/16 meta mark set meta mark | 0x4000000"])
            try run(["ip", "netns", "exec", node.name!, "iptables", "-t", "mangle", "-A", "PREROUTING", "-i", "eth0", "-j", "MARK", "--or-mark", "0x8000000"])
            try ip(node, "rule", "add", "pref", "1600", "fwmark", "0x2000000/0x2000000", "lookup", "main")
            let finding = try expectFindingAndFix(lab, FindingID.markBitsOverlap, extra: ["-f", policy], fix: false)
            let objects = finding["objects"] as? [String] ?? []
            #expect(objects.contains { $0.contains("meta mark set meta mark | 0x4000000") }, "\(objects)")
            #expect(objects.contains { $0.contains("-j MARK --set-xmark 0x8000000/0x8000000") }, "\(objects)")
            #expect(objects.contains { $0.contains("rule pref 1600 from all fwmark 0x2000000/0x2000000 lookup main") }, "\(objects)")
            // The hint names a free mask: apply it, and the overlap is gone with the foreign rules still there.
            let hint = try #require(finding["hint"] as? String)
            let mask = try #require(hint.split(separator: " ").first { $0.hasPrefix("0x") }.map(String.init))
            let moved = try String(contentsOfFile: policy, encoding: .utf8).replacingOccurrences(of: "markMask: 0x0e000000", with: "markMask: \(mask)")
            try moved.write(toFile: policy, atomically: true, encoding: .utf8)
            // The foreign fwmark rule at 1600 would also catch marked replies first: it goes.
            try ip(node, "rule", "del", "pref", "1600")
            #expect(try returnpath("apply", "--lab", lab, "-f", policy).status == 0)
            try expectClean(lab, extra: ["-f", policy])
        }
    }

    /// returnpath's chain flushed by hand, its sysctl changed: drift; apply repairs both.
    @Test func driftFromTheRecordOfTheLastApply() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "ingress").status == 0)
            try run(["ip", "netns", "exec", node.name!, "nft", "flush chain inet returnpath output"])
            try node.writeSysctl("net.ipv4.conf.eth2.src_valid_mark", "0")
            let finding = try expectFindingAndFix(lab, FindingID.drift)
            let objects = finding["objects"] as? [String] ?? []
            #expect(objects.contains { $0.hasPrefix("nft chain inet returnpath output has 0 rules") }, "\(objects)")
            #expect(objects.contains("sysctl net.ipv4.conf.eth2.src_valid_mark is 0; apply set 1"), "\(objects)")
            try expectClean(lab)
            // Without a policy, doctor reads the record (and what returnpath's objects name) and finds the same.
            try run(["ip", "netns", "exec", node.name!, "nft", "flush chain inet returnpath output"])
            let record = try returnpath("doctor", "--netns", node.name!, "--json")
            #expect(record.status == 1)
            let object = try JSONSerialization.jsonObject(with: Data(record.output.utf8)) as? [String: Any] ?? [:]
            #expect(object["source"] as? String == "record")
            #expect(errorIDs(object).contains(FindingID.drift))
            // After apply, the record alone finds nothing (ingress's fallback sets are read back like mark's).
            #expect(try returnpath("apply", "--lab", lab, "--strategy", "ingress").status == 0)
            let clean = try returnpath("doctor", "--netns", node.name!)
            #expect(clean.status == 0, "\(clean.output)\(clean.errors)")
        }
    }

    /// Something foreign inside returnpath's band: apply would refuse.
    @Test func foreignRuleInsideTheBand() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, "rule", "add", "pref", "20500", "from", "10.1.2.3", "lookup", "main")
            try expectFindingAndFix(lab, FindingID.foreignInBand)
            #expect(try returnpath("apply", "--lab", lab).status == 0)
            try expectClean(lab)
        }
    }

    /// systemd-networkd is only the host's; its check reads a filesystem root (here a directory of the test's own).
    @Test func networkdThatDeletesForeignRules() throws {
        try withLab { lab in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("rp-networkd-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: root) }
            try FileManager.default.createDirectory(atPath: root + "/run/systemd/netif", withIntermediateDirectories: true)
            try "OPER_STATE=routable\n".write(toFile: root + "/run/systemd/netif/state", atomically: true, encoding: .utf8)
            let node = try ns(lab, "node")
            #expect(try returnpath("apply", "--lab", lab).status == 0)
            func run(_ root: String) throws -> [Finding] {
                let connection = try NodeConnection(node)
                let request = DoctorRequest(policy: nil, source: .record, ip: ["ip"], sysctl: ["sysctl", "-w"], returnpathTarget: [],
                                            isHostNamespace: true, systemRoot: root)
                return try Doctor(state: try connection.read(), request: request).run(kernel: connection.kernel).findings
            }
            let found = try run(root).filter { $0.id == FindingID.networkdForeignRules }
            #expect(found.count == 1)
            #expect(found.first?.severity == .error)
            #expect(found.first?.fix?.contains("ManageForeignRoutingPolicyRules=no") == true)
            try FileManager.default.createDirectory(atPath: root + "/etc/systemd/networkd.conf.d", withIntermediateDirectories: true)
            try "[Network]\nManageForeignRoutingPolicyRules=no\n".write(toFile: root + "/etc/systemd/networkd.conf.d/90-returnpath.conf",
                                                                       atomically: true, encoding: .utf8)
            #expect(try run(root).allSatisfy { $0.id != FindingID.networkdForeignRules })
        }
    }

    /// seed-k8s: the node DNATs 192.168.1.1:3000 to pod1 (and :3001 to node2, masqueraded). Those replies are the
    /// backends', forwarded: mark (by source address) misses them, ingress (by connection) does not — doctor's rows
    /// say what the probe sees, and explain agrees with the kernel on the translated request and the forwarded reply.
    @Test func dnatedServicesAreCheckedThroughTheirBackends() throws {
        try withLab(file: repositoryRoot.appendingPathComponent("docs/seed-k8s.yaml").path) { lab in
            let node = try ns(lab, "node")
            let source = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/policy-seed.yaml"), encoding: .utf8)
            for strategy in ["mark", "ingress"] {
                let policy = try writeTemporary(source.replacingOccurrences(of: "strategy: mark ", with: "strategy: \(strategy) "))
                defer { try? FileManager.default.removeItem(atPath: policy) }
                #expect(try returnpath("apply", "--lab", lab, "-f", policy).status == 0)
                let (_, object, raw) = try doctor(lab, ["-f", policy])
                let rows = checks(object)
                let dnat = try #require(rows["192.168.1.1:3000@eth1"], "\(raw.output)")
                #expect(rows["192.168.1.1@eth1"]?["verdict"] as? String == "ok")
                #expect(dnat["backend"] as? String == "10.244.0.10:3000")
                let (_, flows, _) = try probe(lab)
                let flow = try #require(flows["client1>192.168.1.1:3000"])
                let probeOK = flow["verdict"] as? String == "symmetric" && flow["connected"] as? Bool == true
                #expect((dnat["verdict"] as? String == "ok") == probeOK, "\(strategy): doctor \(dnat), probe \(flow)")
                #expect(probeOK == (strategy == "ingress"))
                try expectExplainAgrees(lab, node, from: "10.244.0.10", to: "10.111.223.23", iif: "veth-pod1", requestIif: "eth1",
                                        sport: 3000, dport: 40000)
                // The request is looked up for its translated destination: ask iproute2 about the backend.
                let request = try explain(lab, ["--from", "10.111.223.23", "--to", "192.168.1.1", "--iif", "eth1", "--proto", "tcp",
                                                "--sport", "40000", "--dport", "3000"])
                #expect(request.object["agrees"] as? Bool == true, "\(request.raw.output)")
                let oracle = try ipRouteGet(node, ["10.244.0.10", "from", "10.111.223.23", "iif", "eth1", "mark",
                                                   request.object["mark"] as? String ?? "0", "ipproto", "tcp", "sport", "40000", "dport", "3000"])
                #expect(doctorAnswer(request.object) == oracle)
                #expect(oracle.device == "veth-pod1")
            }
        }
    }

    /// A recorded node answers as the kernel does: doctor's report on the state read from a lab is the same with the
    /// node's own kernel (RTM_GETROUTE) and with `RecordedRouteLookup`, kernel answers included, before a fix and
    /// under each strategy, on the seed and the dual-stack seed. What the unit tests on recorded states rest on.
    @Test(arguments: ["docs/seed.yaml", "docs/seed-dualstack.yaml"])
    func aRecordedNodeAnswersAsTheKernelDoes(topology: String) throws {
        try withLab(file: repositoryRoot.appendingPathComponent(topology).path) { lab in
            let node = try ns(lab, "node")
            let policyFile = repositoryRoot.appendingPathComponent("docs/policy-seed.yaml").path
            let policy = try PolicyFile.load(path: policyFile)
            for strategy in [nil, "mark", "ingress", "source", "static"] {
                if let strategy { #expect(try returnpath("apply", "--lab", lab, "--strategy", strategy).status == 0) }
                let connection = try NodeConnection(node)
                let state = try connection.read()
                let request = DoctorRequest(policy: policy, source: .file(policyFile), ip: ["ip", "-n", node.name ?? ""],
                                            sysctl: ["sysctl", "-w"], returnpathTarget: ["--lab", lab], isHostNamespace: false)
                let live = try Doctor(state: state, request: request).run(kernel: connection.kernel)
                let recorded = try Doctor(state: state, request: request).run(kernel: RecordedRouteLookup(state))
                #expect(!live.checks.isEmpty)
                #expect(DoctorText.render(recorded) == DoctorText.render(live), "\(strategy ?? "before a fix")")
                for (mine, kernel) in zip(recorded.checks, live.checks) {
                    for (a, b) in [(mine.replyKernel, kernel.replyKernel)] + zip([mine.requestKernel], [kernel.requestKernel]).compactMap({ x, y in x.flatMap { a in y.map { (a, $0) } } }) {
                        #expect(a.answer == b.answer, "\(strategy ?? "before a fix"): \(a.command)")
                    }
                }
                #expect(try DoctorOutput(recorded).json() == DoctorOutput(live).json(), "\(strategy ?? "before a fix")")
                #expect(live.findings.allSatisfy { $0.id != FindingID.kernelDisagrees })
            }
        }
    }

    @Test func badInputExitsTwo() throws {
        #expect(try returnpath("doctor", "--lab", "nosuchlab").status == 2)
        #expect(try returnpath("doctor", "--netns", "rp-nosuch-namespace").status == 2)
        #expect(try returnpath("doctor", "explain", "--from", "1.2.3", "--to", "1.2.3.4").status == 2)
        #expect(try returnpath("doctor", "explain", "--from", "1.2.3.4", "--to", "1.2.3.4", "--sport", "1").status == 2)
        try withLab { (lab: String) throws in
            #expect(try returnpath("doctor", "--lab", lab, "-f", "/nonexistent/policy.yaml").status == 2)
            #expect(try returnpath("doctor", "explain", "--lab", lab, "--from", "10.111.223.23", "--to", "192.168.1.1", "--iif", "eth9").status == 2)
        }
    }
}
