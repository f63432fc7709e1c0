import Foundation
@testable import Lab
import Netlink
import Testing

struct TopologyFileTests {
    @Test func seedParsesToTheDocumentedTopology() throws {
        let seed = try Seed.topology()
        #expect(seed.name == "seed")
        #expect(seed.hosts.map(\.name) == ["node", "gateway", "router", "client1", "client2"])
        #expect(seed.networks.map(\.subnet.cidr) == ["10.111.220.0/24", "10.111.221.0/24", "10.111.222.0/24",
                                                    "10.111.223.0/24", "10.111.224.0/24"])
        let node = try #require(seed.host("node"))
        #expect(node.interface("eth1")?.addresses.map(\.cidr) == ["10.111.221.11/24"])
        #expect(node.interface("lo")?.addresses.map(\.cidr) == ["192.168.1.1/32", "192.168.2.1/32"])
        #expect(node.services.map(\.reply) == ["svc1", "svc2"])
        #expect(seed.host("router")?.sysctls == [.init(key: "net.ipv4.ip_forward", value: "1")])
        // Default flows: each client to each service it has a route to.
        #expect(seed.defaultFlows.map { "\($0.source)>\($0.address):\($0.port)" }
                == ["client1>192.168.1.1:3000", "client2>192.168.2.1:3000"])
    }

    @Test func docsSeedIsTheBuiltInSeed() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/seed.yaml")
        #expect(try String(contentsOf: docs, encoding: .utf8) == Seed.yaml)
    }

    /// Each broken file must be refused with the right line and a message naming the problem.
    @Test(arguments: [
        ("unknown key", "  node:\n    interfaces:\n      eth0: {network: a, adress: 10.0.0.1}\n", 9, "unknown key \"adress\""),
        ("malformed address", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.300}\n", 9, "not an IP address"),
        ("address outside network", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.9.0.1}\n", 9, "is not in network a"),
        ("no network", "  node:\n    interfaces:\n      eth0: {address: 10.0.0.1}\n", 9, "is on no network"),
        ("unknown network", "  node:\n    interfaces:\n      eth0: {network: zz, address: 10.0.0.1}\n", 9, "unknown network \"zz\""),
        ("name too long", "  node:\n    interfaces:\n      averyveryverylongname: {network: a, address: 10.0.0.1}\n", 9, "longer than 15 bytes"),
        ("gateway not connected", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: 10.5.0.1}\n", 11, "not on a network"),
        ("gateway is itself", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: 10.0.0.1}\n", 11, "address of host node itself"),
        ("duplicate address", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.2}\n", 9, "already used by interface eth0 of host peer"),
        ("duplicate host", "  peer:\n    interfaces:\n      eth1: {network: a, address: 10.0.0.1}\n", 7, "duplicate key \"peer\""),
        ("bad host name", "  Node_1:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n", 7, "lower-case letters"),
        ("service not local", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    services:\n      - {address: 10.0.0.9, port: 80}\n", 11, "not an address of host node"),
        ("port out of range", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    services:\n      - {address: 10.0.0.1, port: 70000}\n", 11, "not a number in 1-65535"),
        ("malformed yaml", "  node:\n    interfaces: [\n", 9, "malformed YAML"),
        ("route host bits", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: 10.7.0.1/16, via: 10.0.0.2}\n", 11, "host bits"),
        ("multipath gateway not connected", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: [10.0.0.2, 10.5.0.1]}\n", 11, "gateway 10.5.0.1 of host node is not on a network"),
        ("multipath gateway twice", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: [10.0.0.2, 10.0.0.2]}\n", 11, "gateway 10.0.0.2 is listed twice"),
        ("empty via", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: []}\n", 11, "lists no gateways"),
        ("bad proto", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: 10.0.0.2, proto: dhpc}\n", 11, "route proto \"dhpc\" is not one of"),
        ("onlink without dev", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n      - {to: default, via: 10.9.0.1, onlink: true}\n", 11, "an onlink route of host node needs dev"),
        ("the same address on lo of one host twice", "  node:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n      lo: {addresses: [192.168.9.9/32, 192.168.9.9/32]}\n", 10, "already used by interface lo of host node"),
    ])
    func brokenFilesAreRefusedWithTheirLine(name: String, hosts: String, line: Int, message: String) throws {
        let text = """
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              peer:
                interfaces:
                  eth0: {network: a, address: 10.0.0.2}

            """ + hosts
        do {
            _ = try TopologyFile.parse(text, file: "t.yaml")
            Issue.record("\(name): accepted")
        } catch {
            #expect(error.file == "t.yaml", "\(name)")
            #expect(error.line == line, "\(name): \(error)")
            #expect(error.message.contains(message), "\(name): \(error)")
        }
    }

    /// The problem named, at its line: not merely some TopologyError.
    @Test(arguments: [
        ("one member", "networks:\n  a: {subnet: 10.0.0.0/24}\nhosts:\n  h:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n",
         2, "network a has 1 member(s); it needs at least 2"),
        ("overlapping subnets", "networks:\n  a: {subnet: 10.0.0.0/24}\n  b: {subnet: 10.0.0.0/16}\nhosts: {}\n",
         3, "subnet 10.0.0.0/16 of network b overlaps network a (10.0.0.0/24)"),
    ])
    func networksNeedTwoMembersAndDistinctSubnets(name: String, text: String, line: Int, message: String) {
        do {
            _ = try TopologyFile.parse(text, file: "x")
            Issue.record("\(name): accepted")
        } catch {
            #expect(error.file == "x", "\(name)")
            #expect(error.line == line, "\(name): \(error)")
            #expect(error.message == message, "\(name): \(error)")
        }
    }

    @Test func graphsNameEveryHostAndNetwork() throws {
        let seed = try Seed.topology()
        for format in TopologyGraph.Format.allCases {
            let picture = TopologyGraph.render(seed, format: format)
            for host in seed.hosts { #expect(picture.contains(host.name), "\(format) lacks \(host.name)") }
            for network in seed.networks { #expect(picture.contains(network.name), "\(format) lacks \(network.name)") }
        }
        let ascii = TopologyGraph.render(seed, format: .ascii)
        #expect(ascii.contains("node:eth1 ⟷ router:eth1"))
        #expect(ascii.contains("service 192.168.1.1:3000 → \"svc1\""))
        #expect(TopologyGraph.render(seed, format: .dot).hasPrefix("graph \"seed\" {"))
    }

    /// Multipath routes (`via: [A, B]`), a route's protocol (as DHCP would install it), onlink, and one address
    /// on the loopback of several hosts (anycast).
    @Test func multipathProtoOnlinkAndAnycast() throws {
        let text = """
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              r1:
                interfaces:
                  eth0: {network: a, address: 10.0.0.2}
                  lo: {addresses: [192.168.9.9/32]}
              r2:
                interfaces:
                  eth0: {network: a, address: 10.0.0.3}
                  lo: {addresses: [192.168.9.9/32]}
              node:
                interfaces:
                  eth0: {network: a, address: 10.0.0.1}
                routes:
                  - {to: 192.168.9.9, via: [10.0.0.2, 10.0.0.3]}
                  - {to: default, via: 10.0.0.2, metric: 101, proto: dhcp}
                  - {to: 10.9.0.0/16, via: 10.9.0.1, dev: eth0, onlink: true}

            """
        let topology = try TopologyFile.parse(text, file: "t.yaml")
        let routes = try #require(topology.host("node")?.routes)
        #expect(routes[0].gateway == nil && routes[0].gateways.map(\.description) == ["10.0.0.2", "10.0.0.3"])
        #expect(routes[1].proto == 16 && routes[1].metric == 101)
        #expect(routes[2].onlink && routes[2].gateway?.description == "10.9.0.1")
    }

    @Test func theClusterLabIsTheDocumentedOne() throws {
        let cluster = try BuiltinTopology.cluster.topology()
        #expect(cluster.hosts.filter { $0.name.contains("-node") }.map(\.name) == ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"])
        #expect(cluster.host("rack2-node1")?.interface("ens5") != nil && cluster.host("rack1-node1")?.interface("eth1") != nil)
        #expect(cluster.host("spine")?.routes.first { $0.destination.cidr == "192.168.100.1/32" }?.gateways.count == 4)
    }
}
