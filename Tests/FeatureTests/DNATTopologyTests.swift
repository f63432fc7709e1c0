import Foundation
@testable import Lab
import Netlink
@testable import Probe
import ReturnRouting
import Testing

/// DNAT entries in topology files, the table they become, and the documented topologies of issues 15 and 16.
struct DNATTopologyTests {
    static func docs(_ file: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/\(file)").path
    }

    @Test func seedK8sHasThePodsBehindTheNode() throws {
        let topology = try TopologyFile.load(path: Self.docs("seed-k8s.yaml"))
        #expect(topology.name == "seed-k8s")
        let node = try #require(topology.host("node"))
        #expect(node.dnat.map(\.description) == ["192.168.1.1:3000 → 10.244.0.10:3000", "192.168.2.1:3000 → 10.244.1.10:3000",
                                                 "192.168.1.1:3001 → 10.111.220.12:3000 masquerade"])
        #expect(node.sysctls == [.init(key: "net.ipv4.ip_forward", value: "1")])   // implied: the node forwards
        #expect(topology.owner(of: try #require(IPAddress("10.244.0.10")))?.name == "pod1")
        #expect(topology.dnat(to: try #require(IPAddress("192.168.2.1")), port: 3000)?.dnat.backendEndpoint == "10.244.1.10:3000")
        #expect(topology.dnat(to: try #require(IPAddress("192.168.2.1")), port: 8080) == nil)
        #expect(topology.defaultFlows.map { "\($0.source)>\($0.address.endpoint(port: $0.port))" }
                == ["client1>192.168.1.1:8080", "client1>192.168.1.1:3000", "client1>192.168.1.1:3001",
                    "client2>192.168.2.1:8080", "client2>192.168.2.1:3000"])
        // The pods' replies go back through the node.
        #expect(topology.host("pod1")?.routes.first?.gateway == IPAddress("10.244.0.1"))
        let ascii = TopologyGraph.render(topology, format: .ascii)
        #expect(ascii.contains("dnat 192.168.1.1:3000 → 10.244.0.10:3000"))
    }

    @Test func anExplicitForwardingSysctlWins() throws {
        let topology = try TopologyFile.parse("""
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              node:
                sysctls: {net.ipv4.ip_forward: 0}
                interfaces:
                  eth0: {network: a, address: 10.0.0.1}
                dnat:
                  - {service: 10.0.0.1:80, backend: 10.0.0.2:8080, proto: udp}
              pod:
                interfaces:
                  eth0: {network: a, address: 10.0.0.2}
            """, file: "t.yaml")
        let node = try #require(topology.host("node"))
        #expect(node.sysctls == [.init(key: "net.ipv4.ip_forward", value: "0")])
        #expect(node.dnat.first?.proto == .udp)
        #expect(topology.defaultFlows.isEmpty)   // probe speaks TCP only
    }

    @Test func theTableIsWrittenInNftsOwnListingFormat() throws {
        let v4 = Topology.DNAT(address: try #require(IPAddress("192.168.1.1")), port: 3000,
                               backend: try #require(IPAddress("10.244.0.10")), backendPort: 80)
        var v6 = Topology.DNAT(address: try #require(IPAddress("fd00:5::1")), port: 53,
                               backend: try #require(IPAddress("fd00:b::10")), backendPort: 5353, proto: .udp)
        v6.masquerade = true
        #expect(LabNat.listing([v4, v6], lab: "x") == """
            table inet returnpath-lab {
            \tcomment "returnpath lab=x"
            \tchain prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:80
            \t\tip6 daddr fd00:5::1 udp dport 53 dnat ip6 to [fd00:b::10]:5353
            \t}

            \tchain output {
            \t\ttype nat hook output priority -100; policy accept;
            \t\tip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:80
            \t\tip6 daddr fd00:5::1 udp dport 53 dnat ip6 to [fd00:b::10]:5353
            \t}

            \tchain postrouting {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\tmeta l4proto udp ct status dnat ct original ip6 daddr fd00:5::1 ct original proto-dst 53 masquerade
            \t}
            }

            """)
        #expect(LabNat.normalized("a \n\tb\t\n\n") == ["a", "\tb"])
    }

    /// Issue 15: the derived policy of the anycast topology lists the one service on both interfaces, each with
    /// its own router and client network.
    @Test func anycastDerivesTheServiceOnBothInterfaces() throws {
        let topology = try TopologyFile.load(path: Self.docs("anycast.yaml"))
        let policy = try #require(Policy.derived(from: topology, host: "node"))
        #expect(policy.interfaces.map(\.name) == ["eth1", "eth2"])
        #expect(policy.interfaces.map(\.gateway.description) == ["10.111.221.21", "10.111.222.22"])
        #expect(policy.interfaces.map { $0.services.map(\.cidr) } == [["172.16.9.9/32"], ["172.16.9.9/32"]])
        #expect(policy.interfaces.map { $0.clients.map(\.cidr) } == [["10.111.223.0/24"], ["10.111.224.0/24"]])
        #expect(topology.defaultFlows.map { "\($0.source)>\($0.address.endpoint(port: $0.port))" }
                == ["client1>172.16.9.9:3000", "client2>172.16.9.9:3000"])
    }

    @Test func longInterfaceNamesAreNotCutInTcpdumpLines() throws {
        let packet = try #require(TCPPacket.decode(sll2: PacketTests.synFrame, time: 55883.870929, originalLength: 60,
                                                   names: [101: "veth-pod1"]))
        #expect(packet.tcpdumpLine.hasPrefix("15:31:23.870929 veth-pod1 In  IP 10.111.223.23.52820 > 192.168.1.1.3000"))
    }
}
