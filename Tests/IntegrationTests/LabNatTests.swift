import Foundation
import Lab
import Namespace
import Netlink
import Testing

/// `nft ARGS…` inside a namespace (nft is the oracle for the lab's DNAT tables).
func nft(_ namespace: NetworkNamespace, _ arguments: String...) throws -> String {
    try run(["ip", "netns", "exec", namespace.name ?? "", "nft"] + arguments)
}

/// DNAT in topologies (docs/seed-k8s.yaml) and the anycast topology (docs/anycast.yaml).
@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct LabNatTests {
    static let seedK8s = repositoryRoot.appendingPathComponent("docs/seed-k8s.yaml").path
    static let anycast = repositoryRoot.appendingPathComponent("docs/anycast.yaml").path

    func address(_ text: String) throws -> IPAddress { try #require(IPAddress(text)) }

    @Test func seedK8sSendsTheServicesToThePodsAndOnlyTheRouterGetsAnAnswer() throws {
        try withLab(file: Self.seedK8s) { lab in
            let node = try ns(lab, "node"), router = try ns(lab, "router")
            let client1 = try ns(lab, "client1"), client2 = try ns(lab, "client2")
            let ruleset = try nft(node, "list", "ruleset")
            #expect(ruleset.contains("table inet returnpath-lab {"))
            #expect(ruleset.contains("comment \"returnpath lab=\(lab)\""))
            #expect(ruleset.contains("type nat hook prerouting priority dstnat; policy accept;"))
            #expect(ruleset.contains("ip daddr 192.168.1.1 tcp dport 3000 dnat ip to 10.244.0.10:3000"))
            #expect(ruleset.contains("ip daddr 192.168.2.1 tcp dport 3000 dnat ip to 10.244.1.10:3000"))
            #expect(ruleset.contains("ct original ip daddr 192.168.1.1 ct original proto-dst 3001 masquerade"))
            #expect(try node.readSysctl("net.ipv4.ip_forward") == "1")   // implied by the DNAT entries
            // Only the node has a nat table.
            for host in ["router", "client1", "pod1", "node2"] {
                #expect(try nft(try ns(lab, host), "list", "ruleset").isEmpty, "\(host) has nftables rules")
            }

            let svc1 = try address("192.168.1.1"), svc2 = try address("192.168.2.1")
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 2000) == .replied("pod1"))
            #expect(fetchLine(in: router, to: svc2, port: 3000, timeoutMilliseconds: 2000) == .replied("pod2"))
            #expect(fetchLine(in: router, to: svc1, port: 3001, timeoutMilliseconds: 2000) == .replied("node2"))
            #expect(fetchLine(in: router, to: svc1, port: 8080, timeoutMilliseconds: 2000) == .replied("svc1"))
            // The node itself goes through the output chain.
            #expect(fetchLine(in: node, to: svc2, port: 3000, timeoutMilliseconds: 2000) == .replied("pod2"))
            // The asymmetric return path: the pods' replies are forwarded out eth0.
            #expect(fetchLine(in: client1, to: svc1, port: 3000, timeoutMilliseconds: 1500) == .timedOut)
            #expect(fetchLine(in: client2, to: svc2, port: 3000, timeoutMilliseconds: 1500) == .timedOut)

            // As a user would.
            let fromRouter = try returnpath("lab", "exec", "--name", lab, "router", "--", "nc", "-w", "2", "192.168.1.1", "3000")
            #expect(fromRouter.status == 0)
            #expect(fromRouter.output == "pod1\n")
            let fromClient = try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "1", "192.168.1.1", "3000")
            #expect(fromClient.status != 0)
            #expect(fromClient.output.isEmpty)

            let status = try returnpath("lab", "status", "--name", lab, "--json")
            let object = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any]
            let dnat = (object?["labs"] as? [[String: Any]])?.first?["dnat"] as? [[String: Any]] ?? []
            #expect(dnat.map { $0["service"] as? String } == ["192.168.1.1:3000", "192.168.2.1:3000", "192.168.1.1:3001"])
            #expect(dnat.map { $0["answer"] as? String } == ["pod1", "pod2", "node2"])
            #expect(dnat.allSatisfy { $0["installed"] as? Bool == true && $0["answers"] as? Bool == true })
        }
    }

    @Test func probeSeesTheSynOnEth1AndTheForwardedSynAckOnEth0() throws {
        try withLab(file: Self.seedK8s) { lab in
            let (status, flows, raw) = try probe(lab)
            #expect(status == 1)
            // Default flows: each client to the node's own services (8080) and to the DNATed ones.
            #expect(Set(flows.keys) == ["client1>192.168.1.1:8080", "client1>192.168.1.1:3000", "client1>192.168.1.1:3001",
                                        "client2>192.168.2.1:8080", "client2>192.168.2.1:3000"], "\(raw.output)")
            for (key, ingress, backend, backendHost, backendSide) in [
                ("client1>192.168.1.1:3000", "eth1", "10.244.0.10:3000", "pod1", "veth-pod1"),
                ("client2>192.168.2.1:3000", "eth2", "10.244.1.10:3000", "pod2", "veth-pod2"),
                ("client1>192.168.1.1:3001", "eth1", "10.111.220.12:3000", "node2", "eth0"),
            ] {
                let flow = try #require(flows[key], "\(key) missing")
                #expect(flow["verdict"] as? String == "asymmetric", "\(key)")
                #expect(flow["ingress"] as? String == ingress, "\(key)")
                #expect(flow["egress"] as? String == "eth0", "\(key)")
                #expect(flow["connected"] as? Bool == false, "\(key)")
                #expect(flow["backend"] as? String == backend, "\(key)")
                #expect(flow["backend_host"] as? String == backendHost, "\(key)")
                let service = String(key.split(separator: ">")[1].split(separator: ":")[0])
                let packets = flow["packets"] as? [[String: Any]] ?? []
                // The SYN-ACK leaves eth0 already de-NATed: the service's address, not the backend's.
                #expect(packets.contains { $0["flags"] as? String == "S." && $0["interface"] as? String == "eth0"
                                           && $0["direction"] as? String == "Out" && $0["source"] as? String == service }, "\(key)")
                // The backend's side is evidence: its SYN-ACK came in with its own address.
                #expect(packets.contains { $0["flags"] as? String == "S." && $0["interface"] as? String == backendSide
                                           && $0["direction"] as? String == "In"
                                           && $0["source"] as? String == String(backend.split(separator: ":")[0]) }, "\(key)")
                #expect((flow["explanation"] as? String)?.contains("DNATs") == true, "\(key)")
            }
            #expect(flows["client1>192.168.1.1:8080"]?["verdict"] as? String == "asymmetric")
            #expect(flows["client1>192.168.1.1:8080"]?["backend"] is NSNull)

            // From the router the pods' replies come back the way the request went: symmetric, and the text is the pod's.
            let routed = try probe(lab, ["--from", "router", "--to", "192.168.1.1:3000", "--from", "router", "--to",
                                         "192.168.2.1:3000", "--only"])
            #expect(routed.status == 0, "\(routed.raw.output)")
            #expect(routed.flows["router>192.168.1.1:3000"]?["reply"] as? String == "pod1")
            #expect(routed.flows["router>192.168.2.1:3000"]?["reply"] as? String == "pod2")
            #expect(routed.flows["router>192.168.2.1:3000"]?["egress"] as? String == "eth2")

            // The table form names interfaces in full, as tcpdump does.
            let text = try returnpath("probe", "--lab", lab, "--timeout", "1", "--from", "client1", "--to", "192.168.1.1:3000", "--only")
            #expect(text.output.contains("veth-pod1 In  IP 10.244.0.10.3000 > 10.111.223.23."), "\(text.output)")
        }
    }

    @Test func secondUpChangesNothingAndDriftIsRepaired() throws {
        try withLab(file: Self.seedK8s) { lab in
            let node = try ns(lab, "node"), router = try ns(lab, "router")
            let svc1 = try address("192.168.1.1")
            let before = try nft(node, "-j", "list", "ruleset")
            let text = try nft(node, "list", "ruleset")
            let up = try returnpath("lab", "up", "-f", Self.seedK8s, "--name", lab)
            #expect(up.status == 0, "\(up.errors)")
            #expect(up.output.contains("dnat: 3 (unchanged)"))
            #expect(try nft(node, "-j", "list", "ruleset") == before)   // handles included: nothing was rewritten

            // Drift: the table flushed by hand. The service port is then closed on the node.
            _ = try nft(node, "flush", "table", "inet", LabNat.table)
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 1500) == .refused)
            let drifted = try returnpath("lab", "status", "--name", lab, "--json")
            let object = try JSONSerialization.jsonObject(with: Data(drifted.output.utf8)) as? [String: Any]
            let entries = (object?["labs"] as? [[String: Any]])?.first?["dnat"] as? [[String: Any]] ?? []
            #expect(entries.count == 3)
            #expect(entries.allSatisfy { $0["installed"] as? Bool == false && $0["answers"] as? Bool == false })
            let repair = try returnpath("lab", "up", "-f", Self.seedK8s, "--name", lab)
            #expect(repair.status == 0, "\(repair.errors)")
            #expect(repair.output.contains("dnat: 3 (replaced on node)"))
            #expect(try nft(node, "list", "ruleset") == text)
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 2000) == .replied("pod1"))

            // Drift: a rule changed by hand (same number of rules), and then the table deleted.
            _ = try nft(node, "flush", "chain", "inet", LabNat.table, "prerouting")
            _ = try nft(node, "add", "rule", "inet", LabNat.table, "prerouting", "ip", "daddr", "192.168.1.1", "tcp", "dport",
                        "3000", "dnat", "ip", "to", "10.244.1.10:3000")
            _ = try nft(node, "add", "rule", "inet", LabNat.table, "prerouting", "ip", "daddr", "192.168.2.1", "tcp", "dport",
                        "3000", "dnat", "ip", "to", "10.244.1.10:3000")
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 2000) == .replied("pod2"))
            #expect(try returnpath("lab", "up", "-q", "-f", Self.seedK8s, "--name", lab).status == 0)
            #expect(try nft(node, "list", "ruleset") == text)
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 2000) == .replied("pod1"))
            _ = try nft(node, "delete", "table", "inet", LabNat.table)
            let recreate = try returnpath("lab", "up", "-f", Self.seedK8s, "--name", lab)
            #expect(recreate.output.contains("dnat: 3 (created on node)"))
            #expect(try nft(node, "list", "ruleset") == text)

            // A topology without the entries takes the table away; the rest of the ruleset is not the lab's to touch.
            _ = try nft(node, "add", "table", "inet", "someone-else")
            let without = try String(contentsOfFile: Self.seedK8s, encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.contains("service: 192.168.") && !$0.hasPrefix("    dnat:") }
                .joined(separator: "\n")
            let path = try writeTemporary(without)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let removed = try returnpath("lab", "up", "-f", path, "--name", lab)
            #expect(removed.status == 0, "\(removed.errors)")
            #expect(removed.output.contains("dnat: 0 (removed on node)"))
            #expect(try nft(node, "list", "tables") == "table inet someone-else\n")
        }
    }

    /// Every problem is FILE:LINE with exit 2, and nothing is created.
    @Test(arguments: [
        ("{service: 10.0.0.9:80, backend: 10.0.0.2:80}", 10, "DNAT service address 10.0.0.9 is not an address of host node"),
        ("{service: 10.0.0.1, backend: 10.0.0.2:80}", 10, "DNAT service \"10.0.0.1\" is not ADDRESS:PORT"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.77:80}", 10, "DNAT backend 10.0.0.77 of host node is not an address of any host"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.2:0}", 10, "DNAT backend \"10.0.0.2:0\" is not ADDRESS:PORT"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.2:80, proto: sctp}", 10, "DNAT proto \"sctp\" is not tcp or udp"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.2:80, masquerade: yes}", 10, "DNAT masquerade is true or false"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.2:80, to: x}", 10, "unknown key \"to\" in a DNAT entry of host node"),
        ("{backend: 10.0.0.2:80}", 10, "needs service (ADDRESS:PORT) and backend (ADDRESS:PORT)"),
        ("{service: 10.0.0.1:80, backend: 10.0.0.1:80}", 10, "is the service itself"),
        ("{service: 10.0.0.1:80, backend: '[fd00::1]:80'}", 10, "not of the service's address family"),
        ("{service: 10.0.0.1:22, backend: 10.0.0.2:80}", 10, "would take the connections of the service of host node"),
    ])
    func invalidEntriesAreRefusedWithTheirLineAndNothingIsCreated(entry: String, line: Int, message: String) throws {
        let path = try writeTemporary("""
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              node:
                interfaces:
                  eth0: {network: a, address: 10.0.0.1}
                services:
                  - {address: 10.0.0.1, port: 22}
                dnat:
                  - \(entry)
              pod:
                interfaces:
                  eth0: {network: a, address: 10.0.0.2}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lab = uniqueLabName()
        let up = try returnpath("lab", "up", "-f", path, "--name", lab)
        #expect(up.status == 2)
        #expect(up.errors.contains("\(path):\(line): "), "\(up.errors)")
        #expect(up.errors.contains(message), "\(up.errors)")
        #expect(namespaces(of: lab).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(LabStore.defaultDirectory)/\(lab).json"))
    }

    @Test func anycastLabIsAsymmetricForBothClients() throws {
        try withLab(file: Self.anycast) { lab in
            let service = try address("172.16.9.9")
            // Both routers reach the one service IP through their own network.
            #expect(fetchLine(in: try ns(lab, "router1"), to: service, port: 3000, timeoutMilliseconds: 2000) == .replied("anycast"))
            #expect(fetchLine(in: try ns(lab, "router2"), to: service, port: 3000, timeoutMilliseconds: 2000) == .replied("anycast"))
            let (status, flows, raw) = try probe(lab)
            #expect(status == 1)
            #expect(Set(flows.keys) == ["client1>172.16.9.9:3000", "client2>172.16.9.9:3000"], "\(raw.output)")
            for (key, ingress) in [("client1>172.16.9.9:3000", "eth1"), ("client2>172.16.9.9:3000", "eth2")] {
                let flow = try #require(flows[key])
                #expect(flow["verdict"] as? String == "asymmetric", "\(key)")
                #expect(flow["ingress"] as? String == ingress, "\(key)")
                #expect(flow["egress"] as? String == "eth0", "\(key)")
                #expect(flow["connected"] as? Bool == false, "\(key)")
            }
        }
    }
}
