import Netlink
import ReturnRouting
import Testing
import YAMLFile

/// Resolution on recorded node states: the resolver is pure, the node's facts are given.
struct PolicyResolverTests {
    static let header = "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n"

    func document(_ spec: String) throws -> PolicyDocument {
        try PolicyFile.parseDocument(Self.header + spec, file: "p.yaml")
    }

    func prefix(_ text: String) throws -> IPPrefix { try IPPrefix(parsing: text) }
    func address(_ text: String) throws -> IPAddress { try #require(IPAddress(text)) }

    /// A rack-2 node: eth0 on the management network, ens5 on the rack's, DHCP's routes in main.
    func rack2Node(name: String = "rack2-node1") throws -> NodeFacts {
        NodeFacts(name: name, nameSource: "NODE_NAME", links: ["lo", "eth0", "ens5"],
                  addresses: [("eth0", try prefix("10.20.0.21/24")), ("ens5", try prefix("10.1.2.11/24")), ("lo", try prefix("192.168.1.1/32"))],
                  routes: [
                    Route(destination: try prefix("10.9.0.0/16"), proto: .static, gateway: try address("10.1.2.3"), device: "ens5"),
                    Route(destination: try prefix("0.0.0.0/0"), proto: .static, gateway: try address("10.20.0.1"), device: "eth0"),
                    Route(destination: try prefix("0.0.0.0/0"), proto: RouteProtocol(rawValue: 16), gateway: try address("10.1.2.4"), device: "ens5", metric: 200),
                    Route(destination: try prefix("0.0.0.0/0"), proto: RouteProtocol(rawValue: 16), gateway: try address("10.1.2.1"), device: "ens5", metric: 101),
                    Route(destination: try prefix("0.0.0.0/0"), table: 300, proto: .static, gateway: try address("10.1.2.9"), device: "ens5"),
                  ])
    }

    @Test func anInterfaceByItsNetworkAndItsGatewayFromDHCP() throws {
        let doc = try document("  interfaces:\n    - {network: 10.1.2.0/24, gateway: auto, services: [192.168.1.1]}\n")
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(r.isResolved, "\(r.problems)")
        let entry = try #require(r.policy.interfaces.first)
        #expect(entry.name == "ens5")
        // main first, a default route before others, the lowest metric first.
        #expect(entry.gateway == (try address("10.1.2.1")))
        #expect(r.entries[0].values.contains(.init(what: "gateway 10.1.2.1", from: "main table, default via 10.1.2.1 dev ens5 proto dhcp metric 101")),
                "\(r.entries[0].values)")
        #expect(r.entries[0].values.contains(.init(what: "interface ens5", from: "network 10.1.2.0/24: 10.1.2.11/24 on ens5")))
    }

    @Test func anotherTableIsAskedOnlyWhenMainHasNothing() throws {
        var facts = try rack2Node()
        facts.routes.removeAll { $0.table == RouteTable.main && $0.device == "ens5" }
        let doc = try document("  interfaces:\n    - {name: ens5, gateway: auto}\n")
        let r = PolicyResolver.resolve(doc, facts: facts)
        #expect(r.policy.interfaces.first?.gateway == (try address("10.1.2.9")))
        #expect(r.entries[0].values.last?.from == "300 table, default via 10.1.2.9 dev ens5 proto static")
    }

    @Test func anIPv6GatewayFromARouterAdvertisement() throws {
        var facts = try rack2Node()
        facts.addresses.append(("ens5", try prefix("2001:db8:2::11/64")))
        facts.routes.append(Route(destination: try prefix("::/0"), proto: RouteProtocol(rawValue: 9), gateway: try address("fe80::1"),
                                  device: "ens5", metric: 1024))
        let doc = try document("  interfaces:\n    - {network: 10.1.2.0/24, gateway: auto, gateway6: auto, services: [192.168.1.1, 2001:db8:9::1]}\n")
        let r = PolicyResolver.resolve(doc, facts: facts)
        #expect(r.isResolved, "\(r.problems)")
        #expect(r.policy.interfaces.first?.gateway6 == (try address("fe80::1")))
        #expect(r.entries[0].values.contains { $0.from.contains("proto ra metric 1024") })
    }

    @Test func whatDoesNotResolveSaysWhereWhatAndWhichNode() throws {
        let doc = try document("""
              interfaces:
                - {network: 10.1.3.0/24, gateway: auto}
                - {network: 10.0.0.0/8, gateway: 10.1.2.1}
                - {name: ens5, network: 10.20.0.0/24, gateway: 10.20.0.1}
                - {name: eth9, gateway: 10.1.2.1}
                - {name: eth0, gateway: auto6}

            """.replacingOccurrences(of: "auto6", with: "10.20.0.1"))
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(!r.isResolved)
        #expect(r.problems == [
            "p.yaml:5: network 10.1.3.0/24 on node rack2-node1: no interface has an address in 10.1.3.0/24",
            "p.yaml:6: network 10.0.0.0/8 on node rack2-node1: 10.0.0.0/8 has addresses on several interfaces: ens5, eth0",
            "p.yaml:7: ens5 on node rack2-node1: the address in 10.20.0.0/24 is on eth0, not on ens5",
            "p.yaml:8: eth9 on node rack2-node1: unknown interface eth9 on this node",
        ], "\(r.problems)")
        // What resolves stays: the agent applies it.
        #expect(r.policy.interfaces.map(\.name) == ["eth0"])
    }

    @Test func autoWithNoRouteThroughTheInterface() throws {
        let doc = try document("  interfaces:\n    - {name: eth0, gateway: 10.20.0.1, gateway6: auto}\n")
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(r.problems.first?.hasPrefix("p.yaml:5: eth0 on node rack2-node1: gateway6: auto found no IPv6 route with a gateway through eth0") == true,
                "\(r.problems)")
    }

    @Test func twoEntriesOnOneInterfaceAreRefused() throws {
        let doc = try document("  interfaces:\n    - {name: ens5, gateway: 10.1.2.1}\n    - {network: 10.1.2.0/24, gateway: 10.1.2.1}\n")
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(r.problems == ["p.yaml:6: network 10.1.2.0/24 on node rack2-node1: resolves to ens5, as the entry at p.yaml:5 does"])
    }

    @Test func theFirstMatchingNodesItemReplacesInterfacesAndExempt() throws {
        let doc = try document("""
              exempt: [10.96.0.0/12]
              interfaces:
                - {name: eth1, gateway: 10.1.1.1}
              nodes:
                - names: [rack1-*]
                  interfaces: [{name: eth1, gateway: 10.1.1.1}]
                - names: ["rack2-node[0-9]", other]
                  interfaces: [{name: ens5, gateways: [10.1.2.2, 10.1.2.3], onlink: true}]
                  exempt: [10.244.0.0/16]
                - names: ["rack2-*"]
                  interfaces: [{name: eth0, gateway: 10.20.0.1}]

            """)
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(r.group?.index == 2)
        let entry = try #require(r.policy.interfaces.first)
        #expect(entry.name == "ens5" && entry.onlink)
        #expect(entry.routers(for: .inet) == [try address("10.1.2.2"), try address("10.1.2.3")])
        #expect(r.policy.exempt == [try prefix("10.244.0.0/16")])
        #expect(r.exemptFrom == "spec.nodes item 2")
        // No item matches: spec.interfaces and spec.exempt.
        let other = PolicyResolver.resolve(doc, facts: try rack2Node(name: "edge-1"))
        #expect(other.group == nil && other.problems == ["p.yaml:6: eth1 on node edge-1: unknown interface eth1 on this node"])
        #expect(other.policy.exempt == [try prefix("10.96.0.0/12")])
    }

    @Test func aNodeThatMatchesNothingWithoutDefaultInterfaces() throws {
        let doc = try document("  nodes:\n    - names: [rack1-*]\n      interfaces: [{name: eth1, gateway: 10.1.1.1}]\n")
        let r = PolicyResolver.resolve(doc, facts: try rack2Node())
        #expect(r.problems == ["node rack2-node1 matches no spec.nodes item (rack1-*) and spec.interfaces is empty"])
    }

    @Test func theNodeNameComesFromTheFlagThenTheEnvironmentThenTheLabThenTheHostname() {
        #expect(NodeFacts.nodeName(given: "a", environment: ["NODE_NAME": "b"], fallback: "c", hostname: { "d" }) == ("a", "--node"))
        #expect(NodeFacts.nodeName(given: nil, environment: ["NODE_NAME": "b"], fallback: "c", hostname: { "d" }) == ("b", "NODE_NAME"))
        #expect(NodeFacts.nodeName(given: nil, environment: [:], fallback: "c", hostname: { "d" }) == ("c", "lab host"))
        #expect(NodeFacts.nodeName(given: nil, environment: ["NODE_NAME": ""], fallback: nil, hostname: { "d" }) == ("d", "hostname"))
    }

    /// Every bad key or value: FILE:LINE and what is wrong.
    @Test(arguments: [
        ("    - {name: eth1, gateway: 10.1.1.1, gateways: [10.1.1.2]}\n", "p.yaml:5: eth1: give gateway/gateway6 or gateways, not both"),
        ("    - {name: eth1, gateways: []}\n", "p.yaml:5: gateways of eth1 lists no routers"),
        ("    - {name: eth1, gateways: [10.1.1.2, 10.1.1.2]}\n", "p.yaml:5: gateway 10.1.1.2 of eth1 is listed twice"),
        ("    - {name: eth1, gateways: [10.1.1.2, nope]}\n", "p.yaml:5: gateways of eth1 \"nope\" is not an IP address"),
        ("    - {name: eth1, gateway: 10.1.1.1, onlink: yes}\n", "p.yaml:5: onlink of eth1 is true or false"),
        ("    - {network: 10.1.1.1/24, gateway: auto}\n", "p.yaml:5: network 10.1.1.1/24 has host bits set (did you mean 10.1.1.0/24?)"),
        ("    - {gateway: auto}\n", "p.yaml:5: an interface needs name or network"),
        ("    - {name: eth1}\n", "p.yaml:5: an interface needs gateway (or gateways)"),
        ("    - {name: eth1, gateway: auto, services: [2001:db8::1]}\n", "p.yaml:5: 2001:db8::1/128 is IPv6 but eth1 has no IPv6 gateway (gateway6: …)"),
        ("    - {network: 10.1.1.0/24, gateway: auto}\n    - {network: 10.1.1.0/24, gateway: auto}\n", "p.yaml:6: network 10.1.1.0/24 is listed twice"),
    ])
    func badEntries(_ entries: String, _ message: String) {
        do { _ = try document("  interfaces:\n" + entries); Issue.record("accepted: \(entries)") } catch {
            #expect((error as? FileError)?.description == message)
        }
    }

    @Test(arguments: [
        ("  nodes:\n    - names: [a]\n", "p.yaml:5: spec.nodes item 1 needs names and interfaces"),
        ("  nodes:\n    - {names: [], interfaces: []}\n", "p.yaml:5: spec.nodes item 1 lists no names"),
        ("  nodes:\n    - {names: [a], interfaces: [], rack: 2}\n", "p.yaml:5: unknown key \"rack\" in spec.nodes item 1 (allowed: names, interfaces, exempt)"),
        ("  nodes:\n    - {names: [\"\"], interfaces: []}\n", "p.yaml:5: spec.nodes item 1: a name glob is 1 to 253 characters"),
    ])
    func badNodes(_ spec: String, _ message: String) {
        do { _ = try document(spec); Issue.record("accepted: \(spec)") } catch { #expect((error as? FileError)?.description == message) }
    }

    /// The old entry point keeps working for policies that need no node, and says so for the others.
    @Test func aFixedPolicyNeedsNoNode() throws {
        let fixed = try PolicyFile.parse(Self.header + "  interfaces:\n    - {name: eth1, gateways: [10.1.1.2, 10.1.1.3], onlink: true}\n", file: "p.yaml")
        #expect(fixed.interfaces.first?.routers == [try address("10.1.1.2"), try address("10.1.1.3")])
        #expect(throws: FileError.self) { _ = try PolicyFile.parse(Self.header + "  interfaces:\n    - {name: eth1, gateway: auto}\n", file: "p.yaml") }
    }
}
