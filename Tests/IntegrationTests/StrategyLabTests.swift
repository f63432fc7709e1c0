import Foundation
import Namespace
import Testing

/// The strategies in a cluster's real data path: one service behind two routers (anycast, issue 15) and
/// LoadBalancer traffic DNATed to pods (kube-proxy, issue 16).
@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct StrategyLabTests {
    static let anycast = repositoryRoot.appendingPathComponent("docs/anycast.yaml").path
    static let k8s = repositoryRoot.appendingPathComponent("docs/seed-k8s.yaml").path

    @Test func anycastNeedsIngressAndIngressFixesBothClients() throws {
        try withLab(file: Self.anycast) { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let (_, unfixed, _) = try probe(lab)
            #expect(unfixed.count == 2 && unfixed.values.allSatisfy { $0["verdict"] as? String == "asymmetric" })

            // Source and mark route by the reply's source address, the same on both paths: refused, nothing changed.
            for strategy in ["source", "mark"] {
                let refused = try returnpath("apply", "--lab", lab, "--strategy", strategy)
                #expect(refused.status == 2, "\(strategy): \(refused.errors)")
                #expect(refused.errors.contains("172.16.9.9/32 is on both eth1 and eth2") || refused.errors.contains("172.16.9.9 is on both eth1 and eth2"),
                        "\(refused.errors)")
                #expect(refused.errors.contains("use --strategy ingress"), "\(refused.errors)")
                #expect(try state(node) == before)
            }

            // No strategy given: ingress, said so.
            let chosen = try applyJSON(["--lab", lab])
            #expect(chosen.status == 0, "\(chosen.raw.errors)")
            #expect(chosen.object["strategy"] as? String == "ingress")
            #expect(chosen.raw.errors.contains("strategy ingress: 172.16.9.9"), "\(chosen.raw.errors)")
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")
            for (key, syn) in [("client1>172.16.9.9:3000", "eth1"), ("client2>172.16.9.9:3000", "eth2")] {
                #expect(flows[key]?["verdict"] as? String == "symmetric", "\(key): \(raw.output)")
                #expect(flows[key]?["connected"] as? Bool == true && flows[key]?["egress"] as? String == syn, "\(key)")
            }
            let applied = try dumps(node)
            let second = try applyJSON(["--lab", lab, "--strategy", "ingress"])
            #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0)
            #expect(try dumps(node) == applied)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try state(node) == before)
        }
    }

    /// Behind DNAT: the pods' replies are forwarded; ingress gives them their mark back, static routes them by
    /// destination. Both fix every flow, including the one masqueraded to a backend on another node.
    @Test(arguments: ["ingress", "static"])
    func dnatedFlowsAreFixedByIngressAndStatic(strategy: String) throws {
        try withLab(file: Self.k8s) { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let (_, unfixed, _) = try probe(lab)
            #expect(unfixed.values.allSatisfy { $0["verdict"] as? String == "asymmetric" && $0["connected"] as? Bool == false })

            let applied = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0, "\(strategy): \(raw.output)")
            let replies = Set(flows.values.compactMap { $0["reply"] as? String })
            #expect(replies.isSuperset(of: ["pod1", "pod2", "node2"]), "\(replies)")
            for flow in flows.values {
                #expect(flow["verdict"] as? String == "symmetric" && flow["connected"] as? Bool == true, "\(strategy): \(flow)")
                #expect(flow["egress"] as? String == flow["ingress"] as? String)
            }
            let dumped = try dumps(node)
            let second = try applyJSON(["--lab", lab, "--strategy", strategy])
            #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0)
            #expect(try dumps(node) == dumped)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try state(node) == before)
        }
    }

    /// mark behind DNAT: the local service is fixed; DNATed replies are not (their source is the pod's until
    /// post-routing) — but the requests still reach the pods (the marked request keeps main for its own lookup).
    @Test func markLeavesDnatedRequestsOnTheirWay() throws {
        try withLab(file: Self.k8s) { lab in
            #expect(try applyJSON(["--lab", lab, "--strategy", "mark"]).status == 0)
            let (_, flows, raw) = try probe(lab)
            #expect(flows["client1>192.168.1.1:8080"]?["verdict"] as? String == "symmetric", "\(raw.output)")
            let dnated = try #require(flows["client1>192.168.1.1:3000"])
            #expect(dnated["verdict"] as? String == "asymmetric", "\(raw.output)")
            let lines = (dnated["packets"] as? [[String: Any]] ?? []).compactMap { $0["line"] as? String }
            #expect(lines.contains { $0.contains("veth-pod1 Out") }, "the DNATed SYN should reach the pod: \(lines)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct IngressTrackingTests {
    /// `spec.ingress.tracking: socket`: the accepted socket takes the request's mark (tcp_fwmark_accept), so the
    /// replies carry it and nothing is tracked; the sysctls are recorded and restored. conntrack, for contrast,
    /// tracks every connection.
    @Test func socketTrackingFixesTheSeedWithoutConnectionTracking() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let policy = { (tracking: String) in """
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                spec:
                  strategy: ingress
                  ingress: {tracking: \(tracking)}
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1]}
                    - {name: eth2, gateway: 10.111.222.21, services: [192.168.2.1]}
                """ }
            let path = try writeTemporary(policy("socket"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let applied = try applyJSON(["--lab", lab, "-f", path])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            #expect(try node.readSysctl("net.ipv4.tcp_fwmark_accept") == "1")
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0 && flows.values.allSatisfy { $0["verdict"] as? String == "symmetric" }, "\(raw.output)")
            let count = { (try? node.readSysctl("net.netfilter.nf_conntrack_count")) ?? "0" }
            #expect(count() == "0", "socket tracking should track no connection")
            #expect(!(try run(["ip", "netns", "exec", node.name!, "nft", "list", "table", "inet", "returnpath"]).contains("ct ")))

            // Switch to conntrack and back: both fix the seed; remove restores the sysctls.
            try policy("conntrack").write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try applyJSON(["--lab", lab, "-f", path]).status == 0)
            #expect(try node.readSysctl("net.ipv4.tcp_fwmark_accept") == "0")
            let (tracked, _, trackedRaw) = try probe(lab)
            #expect(tracked == 0, "\(trackedRaw.output)")
            #expect(count() != "0", "conntrack tracking should track the probe's connections")
            try policy("socket").write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try applyJSON(["--lab", lab, "-f", path]).status == 0)
            let again = try applyJSON(["--lab", lab, "-f", path])
            #expect(again.object["added"] as? Int == 0 && again.object["removed"] as? Int == 0)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try state(node) == before)
        }
    }
}
