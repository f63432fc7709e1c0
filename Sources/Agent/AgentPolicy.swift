import CLinux
import Dispatch
import Logging
import Namespace
import Netlink
import ReturnRouting
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif


/// The agent's policy: reloading the file, and the part of it that can be kept true now.
extension AgentCore {
    // MARK: policy

    enum ReloadOutcome { case unchanged, changed, invalid }

    /// Reads the policy file again. A policy that does not parse or that apply would refuse (checked with a dry
    /// run) is refused: logged, `returnpath_policy_valid` 0, the last good one stays in force.
    func reloadPolicy(force: Bool) -> ReloadOutcome {
        guard let watcher else { return .unchanged }
        let text: String
        switch watcher.contents() {
        case .success(let read): text = read
        case .failure(let error):
            logger.error("policy refused: \(error); the last good policy stays in force")
            metrics.setPolicyValid(false)
            return .invalid
        }
        if text == policyText && !force { return .unchanged }
        let previousText = policyText
        policyText = text
        let candidate: Policy
        do { candidate = try PolicyFile.parse(text, file: watcher.path) } catch {
            logger.error("policy refused: \(error.description); the last good policy stays in force")
            metrics.setPolicyValid(false)
            return .invalid
        }
        let chosen = configuration.strategy ?? candidate.strategy ?? candidate.defaultStrategy.strategy
        if candidate == policy && chosen == strategy {
            metrics.setPolicyValid(true)
            return text == previousText ? .unchanged : .changed
        }
        do {
            _ = try router.apply(effective(candidate, keepMissing: true), strategy: chosen, dryRun: true)
        } catch where error.isInvalid {
            logger.error("policy refused: \(error.description); the last good policy stays in force")
            metrics.setPolicyValid(false)
            return .invalid
        } catch {
            // A conflict or a kernel error is not the policy's fault: the reconcile reports it.
        }
        policy = candidate
        strategy = chosen
        classifier.watch(policy)
        if let links = try? inspector.links() { classifier.learn(links) }
        metrics.setPolicyValid(true)
        logger.notice("policy reloaded", metadata: ["file": "\(watcher.path)", "strategy": "\(strategy.rawValue)",
                                                    "interfaces": "\(policy.interfaces.map(\.name).joined(separator: ","))"])
        return .changed
    }

    /// The policy without the interfaces that cannot carry their return path now: down, without an address on the
    /// subnet of one of their gateways (IPv4 or IPv6) (the kernel refuses a route via them, and apply refuses such a gateway), or gone
    /// (deleted while the agent runs). Their routes are gone anyway; the rest of the policy stays true. They come
    /// back when they can. With `keepMissing` (the first apply, a new policy's check) an interface that does not
    /// exist stays in, and apply refuses the policy for it, as it would on its own.
    func effective(_ policy: Policy, keepMissing: Bool = false) -> Policy {
        var result = policy
        var missing: [String: String] = [:]
        result.interfaces = policy.interfaces.filter { entry in
            guard let link = try? inspector.link(named: entry.name) else {
                if keepMissing { return true }
                missing[entry.name] = "no such interface"
                return false
            }
            if !link.isUp {
                missing[entry.name] = "down"
                return false
            }
            // Each family the entry has a gateway for (an IPv6-only entry has only gateway6's): the interface needs an
            // address on that gateway's subnet, except for a link-local gateway, which every up link reaches.
            for family in entry.families {
                guard let gateway = entry.gateway(for: family), !gateway.isLinkLocal else { continue }
                // A failed read counts as no address: the entry is left out and the next event or resync asks again.
                let addresses = (try? inspector.addresses(family: family, interface: entry.name)) ?? []
                if !addresses.contains(where: { $0.prefix.contains(gateway) && !$0.prefix.address.isLinkLocal }) {
                    missing[entry.name] = "no address on the subnet of its gateway \(gateway)"
                    return false
                }
            }
            return true
        }
        if missing != leftOut {
            for (name, why) in missing.sorted(by: { $0.key < $1.key }) where leftOut[name] != why {
                logger.warning("\(name) cannot carry its return path now (\(why)): left out until it can", metadata: ["interface": "\(name)"])
            }
            for name in leftOut.keys.sorted() where missing[name] == nil {
                logger.notice("\(name) can carry its return path again", metadata: ["interface": "\(name)"])
            }
            leftOut = missing
        }
        return result
    }

}
