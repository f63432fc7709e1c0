import ArgumentParser
import FoundationEssentials
import Lab
import LabPolicy
import Namespace
import ReturnRouting
import TextFormat

extension Strategy: ExpressibleByArgument {}

/// Where a command acts or looks (apply, remove, the agent, doctor): a lab's host, a named namespace, or the current
/// namespace.
struct TargetOptions: ParsableArguments {
    @Option(name: .long, help: "A lab's host (see --host).")
    var lab: String?

    @Option(name: .long, help: "With --lab: the host (default node).")
    var host = "node"

    @Option(name: .long, help: "This named network namespace (ip netns). Without --lab or --netns: the current namespace.")
    var netns: String?

    func validate() throws {
        if lab != nil && netns != nil { throw ValidationError("give --lab or --netns, not both") }
    }

    /// The namespace, and the lab topology when --lab.
    func resolve() throws -> (NetworkNamespace, Topology?) {
        if let lab {
            try LabSupport.checkName(lab)
            let (_, topology) = try LabSupport.topology(of: lab)
            guard topology.host(host) != nil else {
                throw fail("lab \(lab) has no host \"\(host)\" (hosts: \(topology.hosts.map(\.name).joined(separator: ", ")))", code: 2)
            }
            return (try LabSupport.existingNamespace(Topology.namespaceName(lab: lab, host: host), lab: lab), topology)
        }
        if let netns { return (try LabSupport.existingNamespace(netns, lab: nil), nil) }
        return (.current, nil)
    }

    /// The policy a lab implies for the host (no -f with --lab).
    func derivedPolicy(_ topology: Topology) throws -> Policy {
        guard let derived = Policy.derived(from: topology, host: host) else {
            throw fail("lab \(lab ?? topology.name): no interface of \(host) leads to a router that routes its services; give -f POLICY", code: 2)
        }
        return derived
    }
}

/// How long apply and remove wait for another writer of the same namespace.
struct WaitOption: ParsableArguments {
    @Option(name: .long, help: "Wait up to SECONDS for another returnpath changing the same namespace (default 10).")
    var wait: Double = 10

    func validate() throws {
        if !(wait >= 0 && wait <= 86400) { throw ValidationError("--wait takes 0 to 86400 seconds") }
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Make return traffic leave by the interface its request came in on, with policy routing returnpath owns.",
        discussion: """
            Strategies: static (routes to the clients via each gateway), source (a table per interface and a rule per \
            service), mark (an nftables set per interface marks replies by source address; a rule per interface), \
            ingress (conntrack remembers each connection's ingress interface; a rule per interface).
            Without --lab or --netns, acts on the current namespace: a real node. Exit: 0 done, 1 conflict or \
            kernel error, 2 invalid policy or usage (nothing changed).
            """)

    @Option(name: .shortAndLong, help: "Policy file (YAML). With --lab, default: derived from the lab's topology.")
    var file: String?

    @Option(name: .long, help: "static, source, mark or ingress. Default: the policy's, else source (ingress when a service is announced through several interfaces).")
    var strategy: Strategy?

    @OptionGroup var target: TargetOptions

    @OptionGroup var node: NodeOption

    @OptionGroup var waiting: WaitOption

    @Flag(name: .long, help: "Change nothing; print the plan as ip, nft and sysctl commands.")
    var dryRun = false

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let (namespace, topology) = try target.resolve()
        let router: ReturnRouter
        do { router = try ReturnRouter(namespace: namespace) } catch { throw fail(error.description, code: error.exitCode) }
        let policy: Policy
        if let file {
            policy = try PolicyLoading.policy(file, node: node, target: target, router: router)
        } else if let topology {
            policy = try target.derivedPolicy(topology)
        } else {
            throw fail("no policy: give -f POLICY.yaml (or --lab NAME to derive one from a lab)", code: 2)
        }
        var chosen: Strategy
        if let given = strategy ?? policy.strategy { chosen = given } else {
            let fallback = policy.defaultStrategy
            chosen = fallback.strategy
            if let reason = fallback.reason {
                printError("returnpath: strategy \(chosen): \(reason)\n")
            }
        }
        let report: Report
        do {
            let lock = dryRun ? nil : try router.lock(role: "apply", wait: waiting.wait)
            report = try withExtendedLifetime(lock) { () throws(ApplyError) in
                try router.apply(policy, strategy: chosen, dryRun: dryRun)
            }
        } catch {
            throw fail(error.description, code: error.exitCode)
        }
        ReportPrinter.print(report, json: json, dryRun: dryRun, extra: ["strategy": chosen.rawValue, "target": "\(namespace)"])
    }
}

/// Shared by apply and remove.
enum ReportPrinter {
    static func print(_ report: Report, json: Bool, dryRun: Bool, extra: [String: String]) {
        for warning in report.warnings { printError("returnpath: warning: \(warning)\n") }
        if json {
            var object: [String: Any] = [
                "added": report.added, "removed": report.removed, "unchanged": report.unchanged, "dry_run": dryRun,
                "changes": report.changes.map { ["action": $0.action.rawValue, "kind": $0.kind.rawValue, "object": $0.object, "command": $0.command] },
            ]
            object["notes"] = report.notes
            for (key, value) in extra { object[key] = value }
            Swift.print(JSONText.serialize(object))
            return
        }
        if dryRun {
            for note in report.notes { Swift.print("# \(note)") }
            for change in report.changes { Swift.print(change.command) }
            Swift.print("# dry run: \(report.added) to add, \(report.removed) to remove, \(report.unchanged) unchanged")
            return
        }
        for change in report.changes { Swift.print("\(change.action == .add ? "+" : "-") \(change.kind.rawValue) \(change.object)") }
        Swift.print("\(report.added) added, \(report.removed) removed, \(report.unchanged) unchanged")
    }
}
