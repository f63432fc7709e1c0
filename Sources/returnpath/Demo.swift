import ArgumentParser
import Lab
import LabPolicy
import Namespace
import Netlink
import Probe
import ReturnRouting

/// `returnpath demo`: the seed POC's story end to end, narrated, on a fresh lab of its own.
extension BuiltinTopology: ExpressibleByArgument {}

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the seed's story: the lab, the failing connections and why, each fix and its proof, the POC's typos.",
        discussion: "Exit 0 when every step behaved as the story says, 1 otherwise (naming the step).")

    enum Choice: String, ExpressibleByArgument, CaseIterable {
        case `static`, source, mark, ingress, all
    }

    @Option(name: .long, help: "The fix to show: static, source, mark, ingress or all.")
    var strategy: Choice = .all

    @Option(name: .long, help: "The story: seed (the POC), anycast (one service behind two routers), k8s (kube-proxy DNAT to pods), dualstack or cluster (one policy, four nodes that differ, an agent each).")
    var topology: BuiltinTopology = .seed

    enum Family: String, ExpressibleByArgument, CaseIterable { case ipv4, ipv6, dual }

    @Option(name: .long, help: "ipv4 (the seed), ipv6 or dual: the seed's story over the dual-stack seed, for those families.")
    var family: Family = .ipv4

    @Flag(name: .long, help: "Keep the lab afterwards (returnpath lab down --name demo removes it).")
    var keep = false

    @Option(name: .long, help: "Lab name.")
    var name = "demo"

    struct StepFailed: Error, CustomStringConvertible { var description: String }

    func run() throws {
        try LabSupport.checkName(name)
        let manager = LabSupport.manager()
        let scratch = ScratchNamespaces(tag: "demo")
        let lab = name
        if !keep { scratch.onCleanup { _ = try? manager.down(name: lab) } }
        defer { if !keep { scratch.removeAll() } }
        do {
            switch topology {
            case .seed where family != .ipv4, .dualstack: try dualStackStory(manager)
            case .seed: try story(manager)
            case .anycast: try anycastStory(manager)
            case .k8s: try k8sStory(manager)
            case .cluster: try clusterStory(manager)
            }
        } catch let error as StepFailed {
            throw fail("demo failed: \(error)", code: 1)
        }
        say("\nEvery step behaved as the story says." + (keep ? " The lab is still up: returnpath lab down --name \(name)" : ""))
    }

    func say(_ text: String) { print(text) }
    func heading(_ text: String) { print("\n== \(text)") }

    func check(_ condition: Bool, _ step: String) throws {
        if !condition { throw StepFailed(description: step) }
    }

    func story(_ manager: LabManager) throws {
        let seed = try LabSupport.load(file: nil)
        heading("1. The seed lab: a node with a default network (eth0) and two secondary ones behind a router")
        let up = try manager.up(seed.topology, name: name, source: seed.source, text: seed.text)
        say("lab \(name) is up: \(seed.topology.hosts.count) hosts in namespaces rp-\(name)-…, \(up.services) services answering")
        let topology = seed.topology
        let node = try NetworkNamespace(named: Topology.namespaceName(lab: name, host: "node"))
        let router = try NetworkNamespace(named: Topology.namespaceName(lab: name, host: "router"))
        let flows = try ProbeFlows.resolve(lab: name, topology: topology, topology.defaultFlows)
        let prober = Prober(timeout: 1.5)

        heading("2. The clients connect to the services: nothing comes back")
        var results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        try check(results.allSatisfy { $0.verdict == .asymmetric && !$0.connected && $0.egress == "eth0" },
                  "before any fix both flows should be asymmetric via eth0 and fail")
        say("\nThe SYN comes in on eth1/eth2; the node routes the SYN-ACK by destination only: out eth0, to the default gateway.")

        guard let policy = Policy.derived(from: topology, host: "node") else { throw StepFailed(description: "derive the policy") }
        guard let strategies = strategy == .all ? Strategy.allCases : Strategy(rawValue: strategy.rawValue).map({ [$0] }) else {
            throw StepFailed(description: "no strategy \(strategy.rawValue)")
        }
        let returnRouter = try ReturnRouter(namespace: node)
        let lock = try returnRouter.lock(role: "demo", wait: 10)
        defer { withExtendedLifetime(lock) {} }
        for (i, chosen) in strategies.enumerated() {
            heading("3.\(i + 1) Fix with --strategy \(chosen.rawValue): \(Self.summary(chosen))")
            let report = try returnRouter.apply(policy, strategy: chosen, dryRun: false)
            for change in report.changes { say("  + \(change.kind) \(change.object)") }
            results = try prober.run(flows)
            say(ProbeCommand.table(results, trace: false))
            try check(results.allSatisfy(\.ok) && Set(results.compactMap(\.reply)) == ["svc1", "svc2"],
                      "after \(chosen.rawValue) both flows should be symmetric and answer svc1/svc2")
            let again = try returnRouter.apply(policy, strategy: chosen, dryRun: false)
            try check(again.added == 0 && again.removed == 0, "a second apply of \(chosen.rawValue) should change nothing")
            say("a second apply: 0 added, 0 removed, \(again.unchanged) unchanged")
            let removed = try returnRouter.remove(dryRun: false)
            say("returnpath remove: \(removed.removed) removed")
        }

        heading("4. The POC's typos")
        var typo = policy
        typo.interfaces[0].gateway = IPAddress.v4(0x0a6f_dd0b)   // 10.111.221.11, the node's own address
        do {
            _ = try returnRouter.apply(typo, strategy: .source, dryRun: false)
            throw StepFailed(description: "a gateway equal to the node's own address should be refused")
        } catch let error as ApplyError {
            try check(error.isInvalid, "the typo should be refused as invalid, got \(error)")
            say("static route \"via 10.111.221.11\" (the node itself): refused — \(error)")
        }
        var crossed = policy
        crossed.interfaces[0].services += crossed.interfaces[1].services   // svc2 sent to eth1's table
        crossed.interfaces[1].services = []
        crossed.interfaces.removeLast()
        _ = try returnRouter.apply(crossed, strategy: .source, dryRun: false)
        for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth1.rp_filter", "net.ipv4.conf.eth2.rp_filter"] {
            try router.writeSysctl(key, "1")
        }
        results = try prober.run(flows)
        say(ProbeCommand.table(results, trace: false))
        let client2 = results.first { $0.address == IPAddress("192.168.2.1") }
        try check(client2?.verdict == .asymmetric && client2?.connected == false,
                  "svc2 via eth1's table should be asymmetric and fail once the router's rp_filter is strict")
        say("\"from 192.168.2.1 lookup device1\": the reply leaves by eth1, and the router's strict rp_filter drops it.")
        _ = try returnRouter.remove(dryRun: false)

        heading("5. A strict node (rp_filter=1, as RHEL-family nodes ship): every fix still works")
        for key in ["all", "default", "eth1", "eth2"] { try node.writeSysctl("net.ipv4.conf.\(key).rp_filter", "1") }
        say("sysctl net.ipv4.conf.{all,default,eth1,eth2}.rp_filter=1 on the node: a SYN from a client is dropped unless the")
        say("reverse lookup of its source leads back out the interface it came in on.")
        for chosen in strategies {
            let report = try returnRouter.apply(policy, strategy: chosen, dryRun: false)
            results = try prober.run(flows)
            try check(results.allSatisfy(\.ok) && Set(results.compactMap(\.reply)) == ["svc1", "svc2"],
                      "on a strict node, \(chosen.rawValue) should keep both flows symmetric and connected")
            say("  \(chosen.rawValue): both flows symmetric and connected — \(report.notes.first ?? "")")
            _ = try returnRouter.remove(dryRun: false)
        }

        if !keep {
            heading("6. returnpath lab down --name \(name)")
            let down = try manager.down(name: name)
            say("removed \(down.removedNamespaces.count) namespaces")
        }
    }

    static func summary(_ strategy: Strategy) -> String {
        switch strategy {
        case .static: return "routes to the client networks via the router"
        case .source: return "a table per interface, a rule per service address"
        case .mark: return "nftables marks replies by service address, one fwmark rule per interface"
        case .ingress: return "conntrack remembers the ingress interface, replies carry it as a mark"
        }
    }
}
