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
            metrics.setPolicyValid(false)   // before the log line: whoever reads the log sees the metric
            logger.error("policy refused: \(error); the last good policy stays in force")
            return .invalid
        }
        if text == policyText && !force { return .unchanged }
        let previousText = policyText
        policyText = text
        let parsed: PolicyDocument
        do { parsed = try PolicyFile.parseDocument(text, file: watcher.path) } catch {
            metrics.setPolicyValid(false)   // before the log line: whoever reads the log sees the metric
            logger.error("policy refused: \(error.description); the last good policy stays in force")
            return .invalid
        }
        let candidate = parsed.needsNode ? resolve(parsed) : PolicyResolver.fixed(parsed)
        if !parsed.needsNode { noteUnresolved([]) }
        let chosen = configuration.strategy ?? candidate.strategy ?? candidate.defaultStrategy.strategy
        if candidate == policy && chosen == strategy {
            document = parsed
            classifier.followsNode = parsed.needsNode
            metrics.setPolicyValid(true)
            return text == previousText ? .unchanged : .changed
        }
        do {
            _ = try router.apply(effective(candidate, keepMissing: true), strategy: chosen, dryRun: true)
        } catch where error.isInvalid {
            metrics.setPolicyValid(false)   // before the log line: whoever reads the log sees the metric
            logger.error("policy refused: \(error.description); the last good policy stays in force")
            return .invalid
        } catch {
            // A conflict or a kernel error is not the policy's fault: the reconcile reports it.
        }
        policy = candidate
        document = parsed
        strategy = chosen
        classifier.watch(policy)
        classifier.followsNode = parsed.needsNode
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
            // onlink: the routers are on the link whatever the interface's addresses.
            for gateway in entry.routers where !gateway.isLinkLocal && !entry.onlink {
                let family = gateway.family
                // A failed read counts as no address: the entry is left out and the next event or resync asks again.
                let addresses = (try? inspector.addresses(family: family, interface: entry.name)) ?? []
                if !addresses.contains(where: { $0.prefix.contains(gateway) && !$0.prefix.address.isLinkLocal }) {
                    missing[entry.name] = "no address on the subnet of its gateway \(gateway)"
                    return false
                }
            }
            return true
        }
        // Routers that stopped answering are skipped (a multipath route over the others).
        if let down = prober?.down, !down.isEmpty {
            result.interfaces = result.interfaces.map { entry in
                entry.skipping(Set(down.filter { $0.interface == entry.name }.map(\.router)))
            }
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

    /// `document` resolved for this node now (spec.nodes, network:, gateway: auto). Entries that do not resolve are
    /// left out, logged, and keep /readyz at 503 until they resolve; when the node cannot be read the policy in
    /// force stays.
    func resolve(_ document: PolicyDocument) -> Policy {
        do {
            let facts = try router.nodeFacts(for: document, name: configuration.node)
            let resolution = PolicyResolver.resolve(document, facts: facts)
            noteUnresolved(resolution.problems)
            return resolution.policy
        } catch {
            logger.error("cannot read the node to resolve the policy: \(error.description); the policy in force stays")
            return policy
        }
    }

    func noteUnresolved(_ problems: [String]) {
        if problems != unresolved {
            for problem in problems where !unresolved.contains(problem) {
                logger.warning("policy entry left out: \(problem)")
            }
            if problems.isEmpty && !unresolved.isEmpty { logger.notice("every policy entry resolves on this node") }
            unresolved = problems
        }
        // Not ready at once; ready again only once a reconcile has applied the entries (AgentReconcile), not
        // before their routes exist.
        if !problems.isEmpty { health.unresolved(problems) }
    }

    /// Starts watching the routers of every interface with several of a family (the prober is made on first need).
    func watchRouters(_ policy: Policy) {
        var targets: [RouterProber.Target] = []
        for entry in policy.interfaces where entry.routers(for: .inet).count > 1 || entry.routers(for: .inet6).count > 1 {
            // A link that cannot be read now (gone, renamed) is asked for again at the next reconcile.
            guard let link = try? inspector.link(named: entry.name), let mac = link.hardwareAddress else { continue }
            let bytes = mac.split(separator: ":").compactMap { UInt8($0, radix: 16) }
            let source = (try? inspector.addresses(family: .inet, interface: entry.name))?.first?.prefix.address
            var value: UInt32 = 0
            if case .v4(let raw)? = source { value = raw }
            for family in [AddressFamily.inet, .inet6] where entry.routers(for: family).count > 1 {
                for router in entry.routers(for: family) {
                    targets.append(.init(interface: entry.name, index: link.index, mac: bytes, source: value, router: router))
                }
            }
        }
        if prober == nil && !targets.isEmpty {
            do {
                prober = try RouterProber(namespace: configuration.namespace) { [weak self] in self?.requestGatewayCheck() }
            } catch {
                logger.error("cannot watch the routers: \(error); a router that stops answering is not noticed")
            }
        }
        prober?.watch(targets)
    }
}
