@testable import Doctor
import Foundation
@testable import Netlink
import ReturnRouting
import Testing

/// doctor's findings on recorded node states (SeedNode): each test breaks the node, expects the finding with its
/// objects and fix, then mends it and expects the finding gone. No kernel: the route lookups are answered by
/// `RecordedRouteLookup`; Tests/IntegrationTests/DoctorTests.swift makes the same breaks in real labs.
@Suite struct DoctorFindingTests {
    @Test func repliesLeavingByTheDefaultRouteAreAsymmetricUntilSourceRulesSendThemBack() throws {
        var node = try SeedNode()
        let before = try node.report()
        #expect(before.exitCode == 1)
        for (service, interface) in [("192.168.1.1", "eth1"), ("192.168.2.1", "eth2")] {
            let row = try #require(before.row(service, interface))
            #expect(row.verdict == .asymmetric)
            #expect(row.replyResult.device == "eth0")
            #expect(row.rule?.rule.priority == 32766)
            #expect(row.replyKernel.agrees == true)
            // As the kernel says it: with no rule of the node's own, IPv4's local table is merged into main.
            #expect(row.requestKernel?.answer == "local \(service) dev lo table main iif \(interface)")
        }
        let asymmetric = before.findings(FindingID.replyAsymmetric)
        #expect(asymmetric.count == 2)
        #expect(asymmetric.allSatisfy { $0.fix == "returnpath apply --lab seed" })
        #expect(asymmetric.first?.message.hasPrefix("replies from 192.168.1.1 to clients behind eth1 (10.111.223.0/24) leave by eth0 via 10.111.220.1 — decided by rule 32766 (from all lookup main) → table main: default via 10.111.220.1 dev eth0") == true)
        #expect(asymmetric.first?.objects == ["service 192.168.1.1", "interface eth1", "rule pref 32766 from all lookup main",
                                              "route default via 10.111.220.1 dev eth0 proto static"])

        // The POC's fix, with its second typo: svc2's rule points at eth1's table.
        try node.addDefault(via: "10.111.221.21", device: "eth1", table: 200)
        try node.addDefault(via: "10.111.222.21", device: "eth2", table: 201)
        try node.addRule(1000, from: "192.168.1.1", table: 200)
        try node.addRule(1001, from: "192.168.2.1", table: 200)
        let typo = try node.report()
        #expect(typo.row("192.168.1.1", "eth1")?.verdict == .ok)
        #expect(typo.row("192.168.2.1", "eth2")?.verdict == .asymmetric)
        // A foreign rule decides: the fix deletes it first.
        #expect(typo.findings(FindingID.replyAsymmetric).map(\.fix)
                == ["ip -n rp-seed-node rule del pref 1001 from 192.168.2.1 lookup 200 && returnpath apply --lab seed"])
        #expect(typo.findings(FindingID.ruleWrongInterface).map(\.fix)
                == ["ip -n rp-seed-node rule del pref 1001 from 192.168.2.1 lookup 200 && ip -n rp-seed-node rule add pref 1001 from 192.168.2.1 lookup 201"])

        node.rules.removeAll { $0.rule.priority == 1001 }
        try node.addRule(1001, from: "192.168.2.1", table: 201)
        let fixed = try node.report()
        #expect(fixed.checks.allSatisfy { $0.verdict == .ok })
        #expect(fixed.findings.filter { $0.severity == .error }.isEmpty, "\(fixed.findings)")
        #expect(fixed.exitCode == 0)
    }

    @Test func aTableALinkFlapEmptiedIsFoundAndItsDefaultRouteIsTheFix() throws {
        var node = try SeedNode()
        try node.addRule(1000, from: "192.168.1.1", table: 200)
        let empty = try node.report()
        let finding = try #require(empty.findings(FindingID.tableWithoutDefault).first)
        #expect(finding.severity == .error)
        #expect(finding.message.hasPrefix("rule 1000 looks up table 200, which is empty: its lookups fall through to the next rules (main)"))
        #expect(finding.objects == ["rule pref 1000 from 192.168.1.1 lookup 200", "table 200: no routes"])
        // The gateway comes from the policy entry of the service the rule names.
        #expect(finding.fix == "ip -n rp-seed-node route replace default via 10.111.221.21 dev eth1 table 200")
        #expect(empty.row("192.168.1.1", "eth1")?.verdict == .asymmetric)

        // Some routes but no default: a foreign table with other routes is a warning.
        node.routes.append(Route(destination: try prefix("10.0.0.0/8"), table: 200, gateway: try address("10.111.221.21"), device: "eth1"))
        let partial = try #require(try node.report().findings(FindingID.tableWithoutDefault).first)
        #expect(partial.severity == .warning)
        #expect(partial.message.contains("which has no default route (only 10.0.0.0/8)"))

        try node.addDefault(via: "10.111.221.21", device: "eth1", table: 200)
        let fixed = try node.report()
        #expect(fixed.findings(FindingID.tableWithoutDefault).isEmpty)
        #expect(fixed.row("192.168.1.1", "eth1")?.verdict == .ok)
    }

    @Test func aRuleAddedOnEveryRunIsADuplicateAndOnlyTheCopiesAreDeleted() throws {
        var node = try SeedNode()
        try node.addDefault(via: "10.111.222.21", device: "eth2", table: 201)
        for priority: UInt32 in [1001, 1002] { try node.addRule(priority, from: "192.168.2.1", table: 201) }
        // The same text in the IPv6 list is another rule (`ip -6 rule` is a list of its own).
        try node.addRule(1004, table: 300, family: .inet6)
        try node.addRule(1005, table: 300)
        let twice = try node.report().findings(FindingID.duplicateRule)
        #expect(twice.count == 1)
        let finding = try #require(twice.first)
        #expect(finding.message.hasPrefix("2 identical rules (from 192.168.2.1 lookup 201) at priorities 1001, 1002"))
        #expect(finding.objects == ["rule pref 1001 from 192.168.2.1 lookup 201", "rule pref 1002 from 192.168.2.1 lookup 201"])
        #expect(finding.fix == "ip -n rp-seed-node rule del pref 1002 from 192.168.2.1 lookup 201")
        // Every copy but the first is deleted.
        try node.addRule(1003, from: "192.168.2.1", table: 201)
        #expect(try node.report().findings(FindingID.duplicateRule).map(\.fix)
                == ["ip -n rp-seed-node rule del pref 1002 from 192.168.2.1 lookup 201 && ip -n rp-seed-node rule del pref 1003 from 192.168.2.1 lookup 201"])

        node.rules.removeAll { $0.rule.priority == 1002 || $0.rule.priority == 1003 }
        #expect(try node.report().findings(FindingID.duplicateRule).isEmpty)
    }

    @Test func aForeignMarkOnReturnpathsBitsOverlapsAndTheHintNamesAFreeMask() throws {
        var node = try SeedNode()
        node.policy.strategy = .mark
        func foreignMark(_ value: UInt32) throws {
            try node.setNftables([NftJSON.table("ip", "mangle2"),
                                  NftJSON.chain("ip", "mangle2", "out", type: "filter", hook: "output"),
                                  NftJSON.rule("ip", "mangle2", "out", handle: 2, [NftJSON.sourceIs("10.9.9.9"), NftJSON.setMark(value, or: true)])])
        }
        try foreignMark(0x0200_0000)
        let overlap = try node.report().findings(FindingID.markBitsOverlap)
        let finding = try #require(overlap.first)
        #expect(overlap.count == 1)
        #expect(finding.severity == .error)
        #expect(finding.message.hasPrefix("returnpath's mark bits 0xe000000 (strategy mark) overlap bits other rules use (0x2000000)"))
        #expect(finding.objects == ["nft ip mangle2 out handle 2: ip saddr 10.9.9.9 meta mark set meta mark | 0x2000000 uses 0x2000000"])
        #expect(finding.hint == "set spec.ownership.markMask: 0xe0000000 in the policy (free of every mark seen here) and apply it with -f")

        // A whole-mark fwmark rule (no mask) is a warning of its own.
        try node.addRule(900, fwmark: 0x10, table: 200)
        #expect(try node.report().findings(FindingID.markBitsOverlap).map(\.severity) == [.error, .warning])
        node.rules.removeAll { $0.rule.priority == 900 }

        try foreignMark(0x10)
        #expect(try node.report().findings(FindingID.markBitsOverlap).isEmpty)
        // Only the strategies that mark care.
        try foreignMark(0x0200_0000)
        node.policy.strategy = .source
        #expect(try node.report().findings(FindingID.markBitsOverlap).isEmpty)
    }

    @Test func markArithmetic() {
        // The highest block as wide as ours, clear of every masked use and of kube-proxy's 0xc000.
        #expect(MarkArithmetic.freeMask(like: 0x0e00_0000, excluding: []) == 0xe000_0000)
        let high = MarkArithmetic.Use(what: "a", bits: 0xf000_0000, whole: false)
        #expect(MarkArithmetic.freeMask(like: 0x0e00_0000, excluding: [high]) == 0x0e00_0000)
        // Whole-mark uses cannot be avoided by moving: they do not count.
        #expect(MarkArithmetic.freeMask(like: 0x0e00_0000, excluding: [MarkArithmetic.Use(what: "b", bits: 0, whole: true)]) == 0xe000_0000)
        // 16 bits wanted, but only 0xff000000 and 0xff are left: none.
        #expect(MarkArithmetic.freeMask(like: 0xffff, excluding: [MarkArithmetic.Use(what: "c", bits: 0x00ff_ff00, whole: false)]) == nil)
        #expect(MarkArithmetic.freeMask(like: 0, excluding: []) == nil)
        #expect(MarkArithmetic.freeMask(like: 0xffff_ffff, excluding: []) == nil)
        // What a `mark set` may change: (mark & A) | B changes ~A | B.
        let mark = NftExpr.meta("mark")
        #expect(MarkArithmetic.affectedBits(.binary("|", .binary("&", mark, .number(0xf1ff_ffff)), .number(0x0200_0000)), key: mark) == (0x0e00_0000, false))
        #expect(MarkArithmetic.affectedBits(.binary("|", mark, .number(0x4000)), key: mark) == (0x4000, false))
        #expect(MarkArithmetic.affectedBits(.binary("^", mark, .number(0x1)), key: mark) == (0x1, false))
        #expect(MarkArithmetic.affectedBits(.number(0x100), key: mark).1)
        #expect(MarkArithmetic.affectedBits(.ct(key: "mark", direction: nil), key: mark).1)
        #expect(MarkArithmetic.affectedBits(.binary("<<", mark, .number(1)), key: mark).1)
    }

    @Test func aPolicyGatewayOnNoConnectedSubnetIsOffLink() throws {
        var node = try SeedNode()
        node.policy.interfaces[0].gateway = try address("10.111.99.1")
        let finding = try #require(try node.report().findings(FindingID.gatewayOffLink).first)
        #expect(finding.message.hasPrefix("the policy's gateway 10.111.99.1 of eth1 is on no subnet connected to eth1 (its IPv4 addresses: 10.111.221.11/24)"))
        #expect(finding.objects == ["policy interface eth1 gateway 10.111.99.1", "address 10.111.221.11/24 dev eth1"])
        #expect(finding.fix == nil)
        node.policy.interfaces[0].gateway = try address("10.111.221.21")
        #expect(try node.report().findings(FindingID.gatewayOffLink).isEmpty)

        // A link-local gateway is on the interface's link by definition (the kernel scopes it), even with no address
        // of that family to compare with.
        node.policy.interfaces[0].gateway6 = try address("fe80::21")
        #expect(try node.report().findings(FindingID.gatewayOffLink).isEmpty)
        // IPv6 after a link flap: only the link-local address is left, the global gateway6 is off-link.
        node.addresses.append(InterfaceAddress(interface: "eth1", prefix: try prefix("fe80::1/64"), scope: .link))
        node.policy.interfaces[0].gateway6 = try address("fd00:221::21")
        let v6 = try #require(try node.report().findings(FindingID.gatewayOffLink).first)
        #expect(v6.message.contains("the policy's IPv6 gateway fd00:221::21 of eth1 is on no subnet connected to eth1 (its IPv6 addresses: fe80::1/64)"))
        #expect(v6.message.contains("keep_addr_on_down=1"))
        #expect(v6.objects == ["policy interface eth1 gateway6 fd00:221::21", "address fe80::1/64 dev eth1"])
        // Once the address is back, it is connected again.
        node.addresses.append(InterfaceAddress(interface: "eth1", prefix: try prefix("fd00:221::11/64")))
        #expect(try node.report().findings(FindingID.gatewayOffLink).isEmpty)
    }

    @Test func aMarkSetInAFilterOutputChainIsNotRoutedAgain() throws {
        var node = try SeedNode()
        try node.addDefault(via: "10.111.221.21", device: "eth1", table: 200)
        try node.addRule(1000, fwmark: 0x0200_0000, fwmask: 0x0e00_0000, table: 200)
        func marking(in type: String) throws {
            try node.setNftables([NftJSON.table("ip", "mangle"),
                                  NftJSON.chain("ip", "mangle", "out", type: type, hook: "output", priority: -150),
                                  NftJSON.rule("ip", "mangle", "out", handle: 2, [NftJSON.sourceIs("192.168.1.1"), NftJSON.setMark(0x0200_0000)])])
        }
        try marking(in: "filter")
        let filter = try node.report()
        let finding = try #require(filter.findings(FindingID.markInFilterChain).first)
        #expect(finding.severity == .warning)
        #expect(finding.message.hasPrefix("a filter-type output chain changes the mark of replies from 192.168.1.1:"))
        // The mark is set, but the route was chosen before it: the reply still leaves by eth0.
        #expect(filter.row("192.168.1.1", "eth1")?.replyMark == 0)
        #expect(filter.row("192.168.1.1", "eth1")?.verdict == .asymmetric)

        try marking(in: "route")
        let route = try node.report()
        #expect(route.findings(FindingID.markInFilterChain).isEmpty)
        #expect(route.row("192.168.1.1", "eth1")?.replyMark == 0x0200_0000)
        #expect(route.row("192.168.1.1", "eth1")?.verdict == .ok)
        #expect(route.row("192.168.1.1", "eth1")?.replyTrace.rerouteMark == 0x0200_0000)
    }

    @Test func aRuleDoctorCannotEvaluateOnTheRepliesPathIsReported() throws {
        var node = try SeedNode()
        let osf = "{\"match\": {\"op\": \"==\", \"left\": {\"osf\": {\"key\": \"name\"}}, \"right\": \"Linux\"}}"
        try node.setNftables([NftJSON.table("ip", "mangle"),
                              NftJSON.chain("ip", "mangle", "out", type: "route", hook: "output"),
                              NftJSON.rule("ip", "mangle", "out", handle: 3, [osf, NftJSON.setMark(1)])])
        let finding = try #require(try node.report().findings(FindingID.nftRuleNotEvaluated).first)
        #expect(finding.objects.count == 1)
        #expect(finding.objects.first?.hasPrefix("ip mangle out handle 3: ") == true)
        // The same chain without the unknown match: nothing to report.
        try node.setNftables([NftJSON.table("ip", "mangle"),
                              NftJSON.chain("ip", "mangle", "out", type: "route", hook: "output"),
                              NftJSON.rule("ip", "mangle", "out", handle: 3, [NftJSON.sourceIs("10.9.9.9"), NftJSON.setMark(1)])])
        #expect(try node.report().findings(FindingID.nftRuleNotEvaluated).isEmpty)
    }

    @Test func theKernelsAnswerIsWhatTheLookupIsGivenAndADisagreementIsAFinding() throws {
        let node = try SeedNode()
        // The reply query of svc1's row, as doctor asks it.
        let query = RouteQuery(destination: try address("10.111.223.1"), source: try address("192.168.1.1"), mark: 0,
                               ipProtocol: 6, destinationPort: 40000)
        let agreeing = try node.report()
        #expect(agreeing.findings(FindingID.kernelDisagrees).isEmpty)
        #expect(agreeing.row("192.168.1.1", "eth1")?.replyKernel.command == "ip route get \(query)")
        #expect(agreeing.row("192.168.1.1", "eth1")?.replyKernel.answer == "10.111.223.1 via 10.111.220.1 dev eth0 table main")
        let other = KernelRoute(table: 52001, gateway: try address("10.111.221.21"), device: "eth1",
                                text: "10.111.223.1 via 10.111.221.21 dev eth1 table 52001")
        let disagreeing = try node.report(answers: [query: .success(other)])
        let finding = try #require(disagreeing.findings(FindingID.kernelDisagrees).first)
        #expect(finding.message.contains("device: kernel eth1, doctor eth0"))
        #expect(finding.objects == ["ip route get \(query)", "kernel: 10.111.223.1 via 10.111.221.21 dev eth1 table 52001"])
        let refusing = try node.report(answers: [query: .failure(.kernel(operation: "get route", errno: .networkUnreachable, message: nil))])
        #expect(refusing.findings(FindingID.kernelDisagrees).first?.message.contains("the kernel refuses it") == true)
    }
}

/// The nftables evaluator: where a named set is looked up.
@Suite struct NftSetScopeTests {
    /// Two tables with a set of the same name: a rule's `@svc` is its own table's, whatever order the ruleset lists
    /// them in (names are per table; the kernel resolves a rule's set in its table).
    @Test(arguments: [false, true])
    func aRulesNamedSetIsItsOwnTables(reversed: Bool) throws {
        var tables = [
            [NftJSON.table("ip", "a"), NftJSON.set("ip", "a", "svc", elements: ["192.168.1.1"]),
             NftJSON.chain("ip", "a", "out", type: "route", hook: "output", priority: 0),
             NftJSON.rule("ip", "a", "out", handle: 2, [NftJSON.sourceIs("@svc"), NftJSON.setMark(0x1, or: true)])],
            [NftJSON.table("ip", "b"), NftJSON.set("ip", "b", "svc", elements: ["192.168.2.1"]),
             NftJSON.chain("ip", "b", "out", type: "route", hook: "output", priority: 10),
             NftJSON.rule("ip", "b", "out", handle: 2, [NftJSON.sourceIs("@svc"), NftJSON.setMark(0x2, or: true)])],
        ]
        if reversed { tables.reverse() }
        var node = try SeedNode()
        try node.setNftables(tables.flatMap { $0 })
        let evaluator = NftEvaluator(node.nftables, localAddresses: [])
        for (source, mark, matched) in [("192.168.1.1", UInt32(0x1), "ip a out"), ("192.168.2.1", 0x2, "ip b out"), ("192.168.3.1", 0, "")] {
            var packet = NftPacket(source: try address(source), destination: try address("10.111.223.23"), ipProtocol: 6)
            let trace = evaluator.run(hook: "output", &packet)
            #expect(packet.mark == mark, "\(source)")
            #expect(trace.steps.filter { $0.outcome == .matched }.map(\.chain) == (matched.isEmpty ? [] : [matched]), "\(source)")
            // The other table's rule says why it did not match: its own set does not hold the address.
            #expect(trace.steps.filter { $0.outcome == .skipped }.allSatisfy { $0.reason == "ip saddr \(source) is not @svc" })
        }
    }

    @Test func aNamedSetMissingFromTheRulesTableCannotBeEvaluated() throws {
        var node = try SeedNode()
        try node.setNftables([NftJSON.table("ip", "a"), NftJSON.table("ip", "b"),
                              NftJSON.set("ip", "b", "svc", elements: ["192.168.1.1"]),
                              NftJSON.chain("ip", "a", "out", type: "route", hook: "output"),
                              NftJSON.rule("ip", "a", "out", handle: 2, [NftJSON.sourceIs("@svc"), NftJSON.setMark(0x1)])])
        var packet = NftPacket(source: try address("192.168.1.1"), destination: try address("10.111.223.23"))
        let trace = NftEvaluator(node.nftables, localAddresses: []).run(hook: "output", &packet)
        #expect(packet.mark == 0)
        #expect(trace.steps.map(\.outcome) == [.unevaluated])
    }
}
