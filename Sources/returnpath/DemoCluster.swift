import Benchmarks
import Dispatch
import FoundationEssentials
import Handle
import Lab
import Namespace
import Netlink
import Probe
import ReturnRouting
import TextFormat
#if canImport(Glibc)
import Glibc
#endif

/// `returnpath demo --topology cluster`: one ConfigMap-shaped policy for four nodes that differ, one agent per node
/// started as the DaemonSet starts it, a ToR that stops, a ConfigMap update, and every node as before at the end.
extension DemoCommand {
    static let clusterNodes = ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"]
    /// deploy/kubernetes/daemonset.yaml's arguments (the policy at the ConfigMap volume's path, here a directory of
    /// the demo's laid out as kubelet lays it out).
    static func daemonSetArguments(policy: String) -> [String] {
        ["agent", "-f", policy, "--metrics-address", "127.0.0.1:9712", "--log-format", "json"]
    }

    func clusterStory(_ manager: LabManager) throws {
        let topology = try BuiltinTopology.cluster.topology()
        heading("1. A leaf-spine cluster: a spine, two racks with two ToRs each, four nodes (rack 2's NIC is ens5, not eth1)")
        let up = try manager.up(topology, name: name, source: BuiltinTopology.cluster.fileName, text: BuiltinTopology.cluster.yaml)
        say("lab \(name) is up: \(topology.hosts.count) hosts, \(up.services) services answering")
        let nodes = try Self.clusterNodes.map { try NetworkNamespace(named: Topology.namespaceName(lab: name, host: $0)) }
        let before = try nodes.map(Self.nodeState)

        // The ConfigMap volume: a version directory, ..data → it, policy.yaml → ..data/policy.yaml.
        let volume = try ConfigMapVolume(directory: FileManager.default.temporaryDirectory.appendingPathComponent("rp-demo-cluster-\(getpid())").path,
                                         text: BuiltinTopology.clusterPolicy)
        defer { volume.remove() }
        let dir = volume.directory, policyPath = volume.policyPath

        let hostPart: [UInt32] = [11, 12, 21, 22]
        let own = hostPart.map { IPAddress.v4(0xc0a8_0a00 | $0) }                                    // 192.168.10.N
        let shared = IPAddress.v4(0xc0a8_6401)                                                         // 192.168.100.1
        let flows = try ProbeFlows.resolve(lab: name, topology: topology,
                                           ["client1", "client2"].flatMap { c in (own + [shared]).map { (c, $0, UInt16(3000)) } })
        let prober = Prober(timeout: 1.5)
        heading("2. Every client to every node's LoadBalancer IP, and to the one all four announce: nothing comes back")
        var results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy { !$0.connected && $0.egress == "eth0" }, "before returnpath every reply should leave by eth0 and fail")

        heading("3. One policy (docs/policy-cluster.yaml), as each node resolves it (returnpath policy resolve)")
        let document = try PolicyFile.parseDocument(BuiltinTopology.clusterPolicy, file: policyPath)
        for (host, node) in zip(Self.clusterNodes, nodes) {
            let facts = try ReturnRouter(namespace: node).nodeFacts(for: document, name: (host, "NODE_NAME"))
            let resolution = PolicyResolver.resolve(document, facts: facts)
            say(ResolutionOutput.text(resolution))
            try check(resolution.isResolved, "\(host) should resolve the policy")
        }

        heading("4. One agent per node, started as the DaemonSet starts it (its arguments, NODE_NAME from spec.nodeName)")
        let agents = try zip(Self.clusterNodes, nodes).map { host, node in
            try ClusterAgent(host: host, namespace: node, arguments: Self.daemonSetArguments(policy: policyPath), logDirectory: dir)
        }
        defer { for agent in agents { agent.stop() } }
        for agent in agents {
            try check(agent.waitReady(seconds: 15), "the agent of \(agent.host) should become ready: \(agent.log())")
            say("\(agent.host): returnpath \(Self.daemonSetArguments(policy: policyPath).joined(separator: " ")) — /readyz 200")
        }
        results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy(\.ok), "with the agents every flow should be symmetric and connected")
        try check(results.filter { $0.address != shared }.allSatisfy { r in
            own.firstIndex(of: r.address).map { r.reply == Self.clusterNodes[$0] } == true
        }, "each node should answer its own LoadBalancer IP")
        say("\nEvery SYN-ACK left by the interface its SYN came in on (eth1 in rack 1, ens5 in rack 2).")

        heading("5. ToR tor12 stops (its rack-side interface down; the nodes' links stay up, as behind a switch)")
        let tor = try NetlinkSocket(namespace: try NetworkNamespace(named: Topology.namespaceName(lab: name, host: "tor12")))
        let rack1 = try nodes.prefix(2).map { try NetlinkSocket(namespace: $0) }
        let started = DispatchTime.now().uptimeNanoseconds
        try tor.setLink("eth0", up: false)
        let skipped = Self.waitUntil(seconds: 3) { rack1.allSatisfy { firstTableGateways($0) == ["10.1.1.2"] } }
        let failover = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        try check(skipped, "rack 1's nodes should stop sending replies to tor12")
        say(format("rack 1's nodes route replies via tor11 only, %.0f ms after tor12 stopped (ARP probes: 3 missed, 100 ms apart)", failover))
        // The lab's routers run no routing protocol: the spine stops sending requests to tor12 as BGP would
        // withdraw its routes.
        let spine = try NetlinkSocket(namespace: try NetworkNamespace(named: Topology.namespaceName(lab: name, host: "spine")))
        let spineRoutes = try spine.routes(family: .inet, table: RouteTable.main)
        let tor12 = IPAddress.v4(0x0a64_010c)   // 10.100.1.12
        for route in spineRoutes where route.gateways.contains(tor12) {
            var withdrawn = route
            withdrawn.nexthops.removeAll { $0.gateway == tor12 }
            if withdrawn.nexthops.count == 1, let hop = withdrawn.nexthops.first {
                withdrawn.gateway = hop.gateway
                withdrawn.device = hop.device
                withdrawn.nexthops = []
            }
            try spine.replaceRoute(withdrawn)
        }
        say("the spine withdraws tor12 (as BGP would): requests come in through tor11")
        results = try prober.run(flows)
        try check(results.allSatisfy(\.ok), "with tor12 stopped every flow should still be symmetric and connected")
        say("every flow still symmetric and connected")
        try tor.setLink("eth0", up: true)
        for route in spineRoutes where route.gateways.contains(tor12) { try spine.replaceRoute(route) }
        try check(Self.waitUntil(seconds: 3) { rack1.allSatisfy { firstTableGateways($0) == ["10.1.1.2", "10.1.1.3"] } },
                  "tor12 should be taken back once it answers")
        say("tor12 answers again: both ToRs carry replies")

        heading("6. A ConfigMap update: the policy adds 192.168.101.0/24 (a second LoadBalancer IP per node)")
        let second = hostPart.map { IPAddress.v4(0xc0a8_6500 | $0) }                                 // 192.168.101.N
        let newFlows = try ProbeFlows.resolve(lab: name, topology: topology, second.map { ("client1", $0, UInt16(3000)) })
        try check(try prober.run(newFlows).allSatisfy { !$0.connected }, "before the update 192.168.101.N should fail")
        let updated = BuiltinTopology.clusterPolicy.replacing("192.168.100.0/24]", with: "192.168.100.0/24, 192.168.101.0/24]")
        let swapStart = DispatchTime.now().uptimeNanoseconds
        try volume.publish(version: "..v1", updated)
        let inForce = Self.waitUntil(seconds: 5) { (try? prober.run(newFlows).allSatisfy(\.ok)) == true }
        let swap = Double(DispatchTime.now().uptimeNanoseconds - swapStart) / 1e6
        try check(inForce, "every node should have the new policy in force")
        say(format("every node's agent had it in force %.0f ms after the swap (probes included)", swap))

        heading("7. All agents stopped (SIGTERM: the fix stays, as in an upgrade), then returnpath remove: every node as before")
        for agent in agents { try check(agent.stop() == 0, "the agent of \(agent.host) should exit 0") }
        for node in nodes { _ = try ReturnRouter(namespace: node).remove(dryRun: false) }
        let after = try nodes.map(Self.nodeState)
        try check(after == before, "every node's rules, routes and nftables should be as before")
        say("rules, routes and nftables of all four nodes are as before")
        if !keep {
            heading("8. returnpath lab down --name \(name)")
            say("removed \(try manager.down(name: name).removedNamespaces.count) namespaces")
        }
    }

    /// Rules, routes and the nftables ruleset of a node, as text.
    static func nodeState(_ node: NetworkNamespace) throws -> [String] {
        let handle = try NamespaceHandle(node)
        let rules = try handle.route.rules().map(\.description)
        let routes = try handle.route.routes().filter { $0.table != RouteTable.local }.map(\.description)
        let nft = try handle.nftables().run("list ruleset", operation: "list ruleset")
        return rules + routes + [nft]
    }

    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool { waitFor(seconds: seconds, condition) }
}
