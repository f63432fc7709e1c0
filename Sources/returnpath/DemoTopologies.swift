import Lab
import LabPolicy
import Namespace
import Netlink
import Probe
import ReturnRouting

/// `returnpath demo --topology anycast|k8s`: the strategies where a cluster's data path differs from the seed.
extension DemoCommand {
    /// One service behind two routers: source and mark cannot tell the paths apart, ingress can.
    func anycastStory(_ manager: LabManager) throws {
        let (topology, policy, node, flows, prober) = try bringUp(manager, .anycast,
            "1. One LoadBalancer IP (172.16.9.9) announced through two routers: requests arrive on eth1 and on eth2")
        let router = try ReturnRouter(namespace: node)
        let lock = try router.lock(role: "demo", wait: 10)
        defer { withExtendedLifetime(lock) {} }
        _ = topology

        heading("2. Both clients connect: nothing comes back")
        var results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy { $0.verdict == .asymmetric && !$0.connected }, "before a fix both flows should fail")

        heading("3. The seed's fixes by source address cannot work: the source is 172.16.9.9 on both paths")
        for chosen in [Strategy.source, .mark] {
            do {
                _ = try router.apply(policy, strategy: chosen, dryRun: false)
                throw StepFailed(description: "\(chosen) should refuse a service on two interfaces")
            } catch let error as ApplyError {
                try check(error.isInvalid, "\(chosen) should refuse as invalid, got \(error)")
                say("--strategy \(chosen.rawValue): refused — \(error)")
            }
        }

        heading("4. --strategy ingress (what apply picks here when no strategy is given): replies leave by the request's interface")
        let chosen = policy.defaultStrategy
        try check(chosen.strategy == .ingress, "the default strategy for an anycast service should be ingress")
        say("no --strategy: \(chosen.strategy.rawValue) — \(chosen.reason ?? "")")
        _ = try router.apply(policy, strategy: chosen.strategy, dryRun: false)
        results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy(\.ok) && results.count == 2, "after ingress both flows should be symmetric and connected")
        try check(Set(results.compactMap(\.egress)) == ["eth1", "eth2"], "each reply should leave by its own router's interface")
        _ = try router.remove(dryRun: false)
        say("\nstatic would also work in this lab, because the lab knows the client networks; real anycast clients are anywhere.")
        try takeDown(manager, step: 5)
    }

    /// kube-proxy DNATs the LoadBalancer IPs to pods: the replies are forwarded, not sent by a local socket.
    func k8sStory(_ manager: LabManager) throws {
        let (_, policy, node, flows, prober) = try bringUp(manager, .k8s,
            "1. The seed behind kube-proxy: svc1/svc2 :3000 DNATed to pod1/pod2, svc1 :3001 to node2 (masqueraded)")
        let router = try ReturnRouter(namespace: node)
        let lock = try router.lock(role: "demo", wait: 10)
        defer { withExtendedLifetime(lock) {} }

        heading("2. The clients connect: the pods answer, the node forwards the replies out eth0")
        var results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy { $0.verdict == .asymmetric && !$0.connected }, "before a fix every flow should fail")

        heading("3. --strategy ingress: forwarded replies get their connection's mark back in prerouting")
        _ = try router.apply(policy, strategy: .ingress, dryRun: false)
        results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy(\.ok), "after ingress every flow should be symmetric and connected")
        try check(Set(results.compactMap(\.reply)).isSuperset(of: ["pod1", "pod2", "node2"]), "the pods and node2 should answer")

        heading("4. --strategy mark: the node's own :8080 is fixed, the DNATed flows are not")
        _ = try router.apply(policy, strategy: .mark, dryRun: false)
        results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        let local = results.filter { $0.port == 8080 }, dnated = results.filter { $0.port != 8080 }
        try check(local.allSatisfy(\.ok) && dnated.allSatisfy { !$0.ok }, "mark should fix only the local services")
        say("\nmark (and source) match the reply's source address; a forwarded reply carries the pod's (10.244.0.10)")
        say("until post-routing puts the service address back — after routing. Behind DNAT use ingress (or static).")
        _ = try router.remove(dryRun: false)
        try takeDown(manager, step: 5)
    }

    /// The seed's story over IPv6, or both families: every strategy fixes each family, idempotently.
    func dualStackStory(_ manager: LabManager) throws {
        let families: Set<AddressFamily> = family == .ipv6 ? [.inet6] : family == .ipv4 ? [.inet] : [.inet, .inet6]
        let (_, policy, node, allFlows, prober) = try bringUp(manager, .dualstack,
            "1. The dual-stack seed: an IPv6 network (ULA) beside each IPv4 one, both services on IPv4 and IPv6 addresses")
        let flows = allFlows.filter { families.contains($0.address.family) }
        let router = try ReturnRouter(namespace: node)
        let lock = try router.lock(role: "demo", wait: 10)
        defer { withExtendedLifetime(lock) {} }

        heading("2. The clients connect over \(family == .dual ? "both families" : family.rawValue): nothing comes back")
        var results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy { $0.verdict == .asymmetric && !$0.connected && $0.egress == "eth0" },
                  "before a fix every flow should leave by eth0 and fail")
        say("\nIPv6 replies follow the main table's default route too: out eth0.")
        let strategies: [Strategy] = strategy == .all ? Strategy.allCases : [Strategy(rawValue: strategy.rawValue) ?? .source]
        for (i, chosen) in strategies.enumerated() {
            heading("3.\(i + 1) --strategy \(chosen.rawValue), per family (ip -6 rules and routes in the same band and tables)")
            let report = try router.apply(policy, strategy: chosen, dryRun: false)
            say("\(report.added) added")
            results = try prober.run(flows)
            say(ProbeCommand.table(results, trace: false))
            try check(results.allSatisfy(\.ok), "after \(chosen.rawValue) every flow should be symmetric and connected")
            let again = try router.apply(policy, strategy: chosen, dryRun: false)
            try check(again.added == 0 && again.removed == 0, "a second apply of \(chosen.rawValue) should change nothing")
            _ = try router.remove(dryRun: false)
        }
        try takeDown(manager, step: 4)
    }

    private func bringUp(_ manager: LabManager, _ builtin: BuiltinTopology, _ title: String) throws
        -> (Topology, Policy, NetworkNamespace, [Flow], Prober) {
        let topology = try builtin.topology()
        heading(title)
        let up = try manager.up(topology, name: name, source: builtin.fileName, text: builtin.yaml)
        say("lab \(name) is up: \(topology.hosts.count) hosts in namespaces rp-\(name)-…, \(up.services) services answering")
        guard let policy = Policy.derived(from: topology, host: "node") else { throw StepFailed(description: "derive the policy") }
        let node = try NetworkNamespace(named: Topology.namespaceName(lab: name, host: "node"))
        let flows = try ProbeFlows.resolve(lab: name, topology: topology, topology.defaultFlows)
        return (topology, policy, node, flows, Prober(timeout: 1.5))
    }

    private func takeDown(_ manager: LabManager, step: Int) throws {
        guard !keep else { return }
        heading("\(step). returnpath lab down --name \(name)")
        let down = try manager.down(name: name)
        say("removed \(down.removedNamespaces.count) namespaces")
    }
}
