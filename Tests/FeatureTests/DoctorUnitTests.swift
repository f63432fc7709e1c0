@testable import Doctor
import Foundation
@testable import Netlink
import Testing

/// The ingress strategy's table as `nft -j list ruleset` prints it (trimmed to eth1), an iptables-nft chain, and a
/// verdict map.
let ingressRuleset = """
{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "returnpath", "handle": 1}},
{"chain": {"family": "inet", "table": "returnpath", "name": "prerouting", "handle": 3, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
{"chain": {"family": "inet", "table": "returnpath", "name": "output", "handle": 6, "type": "route", "hook": "output", "prio": -150, "policy": "accept"}},
{"rule": {"family": "inet", "table": "returnpath", "chain": "prerouting", "handle": 4, "comment": "returnpath x", "expr": [
  {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth1"}},
  {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}},
  {"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 234881024]}, "right": 0}},
  {"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"&": [{"ct": {"key": "mark"}}, 4093640703]}, 33554432]}}}]}},
{"rule": {"family": "inet", "table": "returnpath", "chain": "prerouting", "handle": 5, "comment": "returnpath x", "expr": [
  {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth1"}},
  {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
  {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 4093640703]}, 33554432]}}}]}},
{"rule": {"family": "inet", "table": "returnpath", "chain": "output", "handle": 7, "comment": "returnpath x", "expr": [
  {"match": {"op": "==", "left": {"&": [{"ct": {"key": "mark"}}, 234881024]}, "right": 33554432}},
  {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 4093640703]}, 33554432]}}}]}},
{"table": {"family": "ip", "name": "filter", "handle": 2}},
{"chain": {"family": "ip", "table": "filter", "name": "OUTPUT", "handle": 1, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
{"chain": {"family": "ip", "table": "filter", "name": "mine", "handle": 2}},
{"rule": {"family": "ip", "table": "filter", "chain": "OUTPUT", "handle": 3, "expr": [
  {"vmap": {"key": {"meta": {"key": "oifname"}}, "data": {"set": [["eth0", {"jump": {"target": "mine"}}]]}}}]}},
{"rule": {"family": "ip", "table": "filter", "chain": "mine", "handle": 4, "expr": [
  {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [22, {"range": [1000, 2000]}]}}},
  {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}
]}
"""

@Suite struct DoctorUnitTests {
    @Test func readsTheJSONSchemaWithNumbersAsNumbers() throws {
        let ruleset = try NftRuleset.parse(json: ingressRuleset)
        #expect(ruleset.tables.count == 2)
        #expect(ruleset.baseChains(hook: "output").map(\.qualifiedName) == ["inet returnpath output", "ip filter OUTPUT"])
        let rule = try #require(ruleset.rules.first { $0.handle == 4 })
        // 0 is a number, not false (JSONSerialization's NSNumber would say otherwise).
        guard case .match(_, _, .number(0)) = rule.statements[2] else {
            Issue.record("ct mark & … == 0 parsed as \(rule.statements[2])")
            return
        }
        #expect(rule.text == "iifname eth1 ct direction original ct mark & 0xe000000 == 0x0 ct mark set ct mark & 0xf3ffffff | 0x2000000 comment \"returnpath x\"")
    }

    @Test func anUnreadableRulesetIsAnErrorNotAnEmptyOne() {
        #expect(throws: DoctorError.self) { try NftRuleset.parse(json: "Error: syntax error") }
        #expect(throws: DoctorError.self) { try NftRuleset.parse(json: "{\"something\": []}") }
    }

    @Test func ingressMarksTheConnectionAndItsReplies() throws {
        let ruleset = try NftRuleset.parse(json: ingressRuleset)
        let client = try #require(IPAddress("10.111.223.23")), service = try #require(IPAddress("192.168.1.1"))
        let evaluator = NftEvaluator(ruleset, localAddresses: [service])
        var request = NftPacket(source: client, destination: service, ipProtocol: 6, sourcePort: 40000, destinationPort: 3000,
                                inputInterface: "eth1")
        let trace = evaluator.run(hook: "prerouting", &request)
        #expect(request.ctMark == 0x0200_0000)
        #expect(request.mark == 0x0200_0000)
        #expect(trace.steps.allSatisfy { $0.outcome == .matched })
        var reply = NftPacket(source: service, destination: client, ipProtocol: 6, sourcePort: 3000, destinationPort: 40000,
                              outputInterface: "eth1", ctMark: request.ctMark, ctState: "established", ctDirection: "reply")
        let out = evaluator.run(hook: "output", &reply)
        #expect(reply.mark == 0x0200_0000)
        #expect(out.rerouteMark == 0x0200_0000)
        #expect(out.droppedBy == nil)
        // Through eth0, the vmap jumps to a chain that drops ssh and 1000-2000.
        var ssh = NftPacket(source: service, destination: client, ipProtocol: 6, sourcePort: 3000, destinationPort: 22,
                            outputInterface: "eth0")
        #expect(evaluator.run(hook: "output", &ssh).droppedBy == "ip filter mine handle 4")
        var other = NftPacket(source: service, destination: client, ipProtocol: 6, sourcePort: 3000, destinationPort: 2001,
                              outputInterface: "eth0")
        #expect(evaluator.run(hook: "output", &other).droppedBy == nil)
    }

    @Test func aDisagreementWithTheKernelIsLoud() throws {
        let route = Route(destination: .defaultRoute(.inet), table: 52001, gateway: IPAddress("10.111.221.21"), device: "eth1")
        let rule = DetailedRule(rule: Rule(priority: 20100, fwmark: 0x0200_0000, fwmask: 0x0e00_0000, table: 52001))
        let key = FlowKey(source: try #require(IPAddress("192.168.1.1")), destination: try #require(IPAddress("10.111.223.23")), mark: 0x0200_0000)
        let lookup = RouteLookup(key: key, steps: [], outcome: .route(route, rule: rule, table: 52001))
        let expected = PathResult.sent(lookup, device: "eth1", gateway: IPAddress("10.111.221.21"))
        let query = RouteQuery(destination: key.destination, source: key.source, mark: key.mark)
        let answer = KernelAnswer(asking: FixedAnswer(.success(KernelRoute(table: RouteTable.main, gateway: IPAddress("10.111.220.1"), device: "eth0",
                                                                        text: "10.111.223.23 via 10.111.220.1 dev eth0 table main"))),
                                  query, expecting: expected)
        #expect(answer.agrees == false)
        #expect(answer.differences.contains("device: kernel eth0, doctor eth1"))
        let explanation = Explanation(query: ExplainQuery(source: key.source, destination: key.destination), direction: "output",
                                      request: nil, initialMark: 0, initialRoute: nil,
                                      nftables: NftTrace(hook: "output", markBefore: 0, markAfter: 0, ctMarkAfter: 0),
                                      mark: key.mark, result: expected, reversePath: nil, kernel: answer, notes: [])
        let text = ExplainText.render(explanation)
        #expect(text.contains("!!! THE KERNEL DISAGREES: device: kernel eth0, doctor eth1"))
        #expect(!explanation.agrees)
        let same = KernelAnswer(asking: FixedAnswer(.success(KernelRoute(table: 52001, gateway: IPAddress("10.111.221.21"), device: "eth1",
                                                                      text: "10.111.223.23 via 10.111.221.21 dev eth1 table 52001"))),
                                query, expecting: expected)
        #expect(same.agrees == true)
        let refused = KernelAnswer(asking: FixedAnswer(.failure(.kernel(operation: "get route", errno: .networkUnreachable, message: nil))),
                                   query, expecting: .refused(.networkUnreachable, reason: "", lookup: nil))
        #expect(refused.agrees == true)
    }

    @Test func networkdDropInsAreReadInOrder() throws {
        #expect(NetworkdStatus.setting("[Network]\nManageForeignRoutingPolicyRules=no\n", section: "Network",
                                       key: "ManageForeignRoutingPolicyRules") == "no")
        #expect(NetworkdStatus.setting("[DHCP]\nManageForeignRoutingPolicyRules=no\n", section: "Network",
                                       key: "ManageForeignRoutingPolicyRules") == nil)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rp-networkd-unit-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/run/systemd/netif", withIntermediateDirectories: true)
        try "".write(toFile: root + "/run/systemd/netif/state", atomically: true, encoding: .utf8)
        #expect(try NetworkdStatus.read(root: root) == NetworkdStatus(running: true, managesForeignRules: true, setBy: nil))
        try FileManager.default.createDirectory(atPath: root + "/usr/lib/systemd/networkd.conf.d", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/etc/systemd/networkd.conf.d", withIntermediateDirectories: true)
        try "[Network]\nManageForeignRoutingPolicyRules=no\n".write(toFile: root + "/usr/lib/systemd/networkd.conf.d/10-a.conf", atomically: true, encoding: .utf8)
        #expect(try NetworkdStatus.read(root: root).managesForeignRules == false)
        try "[Network]\nManageForeignRoutingPolicyRules=yes\n".write(toFile: root + "/etc/systemd/networkd.conf.d/20-b.conf", atomically: true, encoding: .utf8)
        #expect(try NetworkdStatus.read(root: root).managesForeignRules == true)
        #expect(try NetworkdStatus.read(root: root).setBy == "/etc/systemd/networkd.conf.d/20-b.conf")
        // A drop-in that is there but cannot be read: its setting is unknown, which is an error, not the default.
        try FileManager.default.createDirectory(atPath: root + "/etc/systemd/networkd.conf.d/30-c.conf", withIntermediateDirectories: true)
        #expect { try NetworkdStatus.read(root: root) } throws: { error in
            guard case DoctorError.file(let path, _) = error else { return false }
            return path == root + "/etc/systemd/networkd.conf.d/30-c.conf"
        }
    }
}

/// A kernel that gives one answer to every question.
struct FixedAnswer: KernelRouteLookup {
    let answer: Result<KernelRoute, NetlinkError>
    init(_ answer: Result<KernelRoute, NetlinkError>) { self.answer = answer }
    func lookup(_ query: RouteQuery) throws(NetlinkError) -> KernelRoute { try answer.get() }
}
