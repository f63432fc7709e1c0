import CLinux
import Dispatch
import FoundationEssentials
import TextFormat
import Logging
import Namespace
import Netlink
import ReturnRouting
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif


/// One reconcile: apply with the policy in force, its report logged and counted.
extension AgentCore {
    // MARK: reconcile

    /// apply with the policy in force: the same diff, make-before-break, changes only the difference.
    @discardableResult
    func reconcile(_ trigger: Trigger) -> Result<Report, ApplyError> {
        health.busy(true)
        defer { health.busy(false) }
        let started = Self.now()
        reconcileCount += 1
        // A policy that depends on the node (spec.nodes, network:, gateway: auto) is resolved again each time: a
        // new DHCP gateway, an address that moved, an interface that appeared.
        if let document, document.needsNode {
            let resolved = resolve(document)
            if resolved != policy {
                if resolved.interfaces.map(\.name) != policy.interfaces.map(\.name) { classifier.watch(resolved) }
                policy = resolved
            }
        }
        let configured = (try? router.resolvingServices(policy)) ?? policy
        let leftBefore = Set(leftOut.keys)
        watchRouters(policy)
        let applied = effective(policy, keepMissing: trigger == .start)
        let skipped = Set((prober?.down ?? []).map { [$0.interface, $0.router.description] })
        metrics.setInterfaces(policy.interfaces, active: Set(applied.interfaces.map(\.name)).subtracting(leftOut.keys), skipped: skipped)
        // Withdrawing an interface that went down re-adds nothing that was lost: not a repair.
        let withdrew = !Set(leftOut.keys).isSubset(of: leftBefore)
        let result: Result<Report, ApplyError>
        if applied.interfaces.isEmpty {
            logger.warning("no interface of the policy can carry its return path now; nothing to apply")
            result = .success(Report())
        } else {
            do { result = .success(try router.apply(applied, strategy: strategy, dryRun: false)) } catch { result = .failure(error) }
        }
        let seconds = Double(Self.now() - started) / 1e9
        metrics.reconciled(trigger, seconds: seconds)
        switch result {
        case .success(let report):
            var repairs: [Change.Kind: Int] = [:]
            if let (lastPolicy, lastStrategy) = lastInput, lastPolicy == configured, lastStrategy == strategy, !withdrew {
                for change in report.changes where change.action == .add { repairs[change.kind, default: 0] += 1 }
                for (kind, count) in repairs { metrics.repaired(kind, count: count) }
            }
            lastInput = (configured, strategy)
            let changed = report.added + report.removed > 0
            if changed || reconcileCount == 1 {
                classifier.ownPorts = OwnSockets.portIDs(in: configuration.namespace)
                updateOwned(applied)
            }
            metrics.succeeded(at: Date())
            health.unresolved(unresolved)
            health.succeeded()
            if changed {
                var metadata: Logger.Metadata = [
                    "trigger": "\(trigger.rawValue)", "added": "\(report.added)", "removed": "\(report.removed)",
                    "unchanged": "\(report.unchanged)", "duration_ms": "\(format("%.1f", seconds * 1000))",
                    "changes": "\(Self.summary(report))",
                ]
                if !repairs.isEmpty {
                    metadata["repaired"] = "\(repairs.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: ","))"
                }
                logger.notice("reconciled", metadata: metadata)
            } else {
                logger.debug("reconciled, nothing to change", metadata: [
                    "trigger": "\(trigger.rawValue)", "duration_ms": "\(format("%.1f", seconds * 1000))",
                ])
            }
        case .failure(let error):
            let reason: String
            switch error {
            case .conflict: reason = "conflict"
            case .invalid: reason = "invalid"
            default: reason = "error"
            }
            metrics.failed(reason)
            health.failed(error.description)
            logger.error("reconcile failed: \(error.description); nothing of it was deleted", metadata: [
                "trigger": "\(trigger.rawValue)", "reason": "\(reason)",
                "duration_ms": "\(format("%.1f", seconds * 1000))",
            ])
            // Our own sockets may be new (the first apply failed half-way): keep ignoring our own events.
            classifier.ownPorts = OwnSockets.portIDs(in: configuration.namespace)
        }
        return result
    }

    private func updateOwned(_ applied: Policy) {
        if let counts = try? router.ownedObjectCounts(applied.ownership) {
            for (kind, count) in counts { metrics.setOwned(kind, count) }
        }
        // The sysctls the plan sets (src_valid_mark per IPv4 interface; socket tracking's two or three more).
        let slots = Dictionary(uniqueKeysWithValues: applied.interfaces.enumerated().map { ($1.name, $0 + 1) })
        metrics.setOwned(.sysctl, Planner.plan(applied, strategy: strategy, slots: slots).sysctls.count)
    }

    /// "+ route …; - rule …" (at most 20, then how many more).
    static func summary(_ report: Report) -> String {
        let lines = report.changes.prefix(20).map { "\($0.action == .add ? "+" : "-") \($0.kind.rawValue) \($0.object)" }
        let more = report.changes.count > 20 ? ["… \(report.changes.count - 20) more"] : []
        return (lines + more).joined(separator: "; ")
    }
}
