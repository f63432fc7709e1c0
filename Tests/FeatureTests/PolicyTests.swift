import Foundation
import Lab
import LabPolicy
import Netlink
@testable import ReturnRouting
import Testing

struct PolicyTests {
    @Test func seedDerivesThePOCsFixWithoutItsTypos() throws {
        let policy = try #require(Policy.derived(from: try Seed.topology(), host: "node"))
        #expect(policy.interfaces.map(\.name) == ["eth1", "eth2"])
        #expect(policy.interfaces.map(\.gateway) == [IPAddress("10.111.221.21"), IPAddress("10.111.222.21")])
        #expect(policy.interfaces.map { $0.services.map(\.cidr) } == [["192.168.1.1/32"], ["192.168.2.1/32"]])
        #expect(policy.interfaces.map { $0.clients.map(\.cidr) } == [["10.111.223.0/24"], ["10.111.224.0/24"]])
        #expect(Policy.derived(from: try Seed.topology(), host: "gateway") == nil)
    }

    @Test func plansPerStrategy() throws {
        let policy = try #require(Policy.derived(from: try Seed.topology(), host: "node"))
        let source = Planner.plan(policy, strategy: .source)
        #expect(source.rules.map(\.description) == ["pref 20100 from 192.168.1.1 lookup 52001 proto 212",
                                                    "pref 20101 from 192.168.2.1 lookup 52002 proto 212"])
        #expect(source.routes.map(\.description) == ["default via 10.111.221.21 dev eth1 table 52001 proto 212",
                                                     "default via 10.111.222.21 dev eth2 table 52002 proto 212"])
        #expect(source.nftables == nil)
        #expect(source.sysctls.isEmpty)

        let fixed = Planner.plan(policy, strategy: .static)
        #expect(fixed.routes.map(\.description) == ["10.111.223.0/24 via 10.111.221.21 dev eth1 table 52000 proto 212",
                                                    "10.111.224.0/24 via 10.111.222.21 dev eth2 table 52000 proto 212"])
        #expect(fixed.rules.map(\.description) == ["pref 20100 from all lookup 52000 proto 212"])

        let mark = Planner.plan(policy, strategy: .mark)
        #expect(mark.rules.map(\.description) == ["pref 20098 from all fwmark 0x4000000/0xe000000 iif eth2 lookup main proto 212",
                                                  "pref 20099 from all fwmark 0x2000000/0xe000000 iif eth1 lookup main proto 212",
                                                  "pref 20100 from all fwmark 0x2000000/0xe000000 lookup 52001 proto 212",
                                                  "pref 20101 from all fwmark 0x4000000/0xe000000 lookup 52002 proto 212"])
        let table = try #require(mark.nftables)
        #expect(table.sets.map(\.name) == ["svc_1", "svc_2"])
        #expect(table.structure.contains("type route hook output priority mangle"))
        #expect(table.structure.contains("ip saddr @svc_1 meta mark set meta mark & 0xf1ffffff | 0x2000000"))
        #expect(mark.sysctls.map(\.key) == ["net.ipv4.conf.eth1.src_valid_mark", "net.ipv4.conf.eth2.src_valid_mark"])

        let ingress = try #require(Planner.plan(policy, strategy: .ingress).nftables)
        // Sets of the listed services: a fallback by source address for connections ingress did not see come in.
        #expect(ingress.sets.map(\.name) == ["svc_1", "svc_2"])
        #expect(ingress.structure.contains("chain output { type route hook output priority mangle; policy accept; }\n\tip saddr @svc_1 meta mark set"))
        #expect(ingress.structure.contains("iifname \"eth2\" ct direction original ct mark & 0xe000000 == 0 ct mark set ct mark & 0xf1ffffff | 0x4000000"))
        #expect(ingress.structure.contains("ct mark & 0xe000000 == 0x4000000 meta mark set meta mark & 0xf1ffffff | 0x4000000"))
        // Elements do not change the structure: a service change is a set update, not a reload.
        var more = policy
        more.interfaces[0].services.append(IPPrefix(host: .v4(0xc0a8_0107)))
        #expect(Planner.plan(more, strategy: .mark).nftables?.structureHash == table.structureHash)
    }

    @Test func exemptPrefixesComeFirstAndUseMain() throws {
        var policy = try #require(Policy.derived(from: try Seed.topology(), host: "node"))
        policy.exempt = [try IPPrefix(parsing: "10.96.0.0/12")]
        let plan = Planner.plan(policy, strategy: .mark)
        #expect(plan.rules.first?.description == "pref 20000 from all to 10.96.0.0/12 lookup main proto 212")
    }

    @Test func policyFilesParseAndRefuseWithLines() throws {
        let text = """
            apiVersion: returnpath.dev/v1alpha1
            kind: ReturnTrafficPolicy
            metadata: {name: node-a}
            spec:
              strategy: ingress
              exempt: [10.96.0.0/12, 10.244.0.0/16]
              interfaces:
                - name: eth1
                  gateway: 10.111.221.21
                  services: [192.168.1.0/24]
              ownership: {priorityBase: 30000, tableBase: 0x1000, markMask: 0x70, protocol: 99}
            """
        let policy = try PolicyFile.parse(text, file: "p.yaml")
        #expect(policy.name == "node-a")
        #expect(policy.strategy == .ingress)
        #expect(policy.exempt.map(\.cidr) == ["10.96.0.0/12", "10.244.0.0/16"])
        #expect(policy.ownership.priorityBase == 30000)
        #expect(policy.ownership.tableBase == 4096)
        #expect(policy.ownership.mark(1) == 0x10)
        #expect(policy.ownership.markValues == 7)
        #expect(policy.interfaces.first?.origin == "p.yaml:8")

        let broken: [(String, Int, String)] = [
            (text.replacingOccurrences(of: "strategy: ingress", with: "strategy: fancy"), 5, "is not one of static"),
            (text.replacingOccurrences(of: "ReturnTrafficPolicy", with: "Policy"), 2, "kind must be"),
            (text.replacingOccurrences(of: "services:", with: "service:"), 10, "unknown key \"service\""),
            (text.replacingOccurrences(of: "192.168.1.0/24", with: "192.168.1.1/24"), 10, "host bits"),
            (text.replacingOccurrences(of: "protocol: 99", with: "protocol: 2"), 11, "protocol"),
        ]
        for (bad, line, message) in broken {
            do {
                _ = try PolicyFile.parse(bad, file: "p.yaml")
                Issue.record("accepted: \(message)")
            } catch {
                #expect(error.line == line, "\(message): \(error)")
                #expect(error.message.contains(message), "\(error)")
            }
        }
    }
}

struct PolicyDocsTests {
    @Test func docsPolicyIsTheSeedsDerivedPolicy() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/policy-seed.yaml").path
        let documented = try PolicyFile.load(path: path)
        let derived = try #require(Policy.derived(from: try Seed.topology(), host: "node"))
        #expect(documented.interfaces.map { [$0.name, $0.gateway.description] + $0.services.map(\.cidr) + $0.clients.map(\.cidr) }
                == derived.interfaces.map { [$0.name, $0.gateway.description] + $0.services.map(\.cidr) + $0.clients.map(\.cidr) })
        #expect(documented.ownership == Ownership())
        #expect(documented.strategy == .mark)
    }
}
