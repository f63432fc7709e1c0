import Netlink
import ReturnRouting

/// `drift`: what the kernel has of returnpath's objects against what its last apply installed.
extension Doctor {
    /// What the kernel has of returnpath's objects against what apply installed (the plan for the policy, the
    /// record's strategy and slots).
    func driftFindings(_ implied: Policy?) -> [Finding] {
        let ownedRules = ourRules
        let ownedRoutes = state.routes.filter(isOurs)
        let table = state.nftables.tables.first { $0.family == "inet" && $0.name == "returnpath" }
        guard let record = state.record else {
            guard !ownedRules.isEmpty || !ownedRoutes.isEmpty || table != nil else { return [] }
            return [Finding(id: FindingID.drift, severity: .error,
                            message: "returnpath's objects are here but there is no record of the apply that made them (a crash before the first record, or a deleted /run/returnpath): remove cannot restore sysctls it does not know",
                            objects: ownedRules.map { "rule \($0)" } + ownedRoutes.map { "route \($0)" } + (table == nil ? [] : ["nft table inet returnpath"]),
                            fix: (["returnpath", "remove"] + request.returnpathTarget).joined(separator: " "),
                            hint: "or apply again: \(applyCommand())")]
        }
        guard let recorded = record.strategy else {
            return [Finding(id: FindingID.drift, severity: .error, message: "the record has no strategy: an apply did not finish",
                            objects: [], fix: applyCommand(), hint: applyNeedsPolicy ? "apply needs the policy: -f POLICY.yaml" : nil)]
        }
        guard var policy = request.policy ?? implied else { return [] }
        policy.ownership = record.ownership
        // Interfaces whose gateway is gone (their table lost its default route) cannot be planned: say so.
        var differences: [String] = []
        let unknownGateways = policy.interfaces.filter { $0.gateway == .v4(0) || $0.gateway == .v6(0, 0) || $0.gateway6 == .v6(0, 0) }.map(\.name)
        let plan = Planner.plan(policy, strategy: recorded, slots: record.slots)
        // Per family: `ip rule` and `ip -6 rule` are separate lists, and may hold the same text.
        func ruleKey(_ rule: Rule) -> String { (rule.family == .inet6 ? "-6 " : "") + rule.description }
        let plannedRules = Set(plan.rules.map(ruleKey))
        let kernelRules = Set(ownedRules.map { ruleKey($0.rule) })
        for rule in plan.rules where !kernelRules.contains(ruleKey(rule)) { differences.append("missing \(rule.family == .inet6 ? "IPv6 " : "")rule \(rule)") }
        for rule in ownedRules where !plannedRules.contains(ruleKey(rule.rule)) { differences.append("unexpected \(rule.rule.family == .inet6 ? "IPv6 " : "")rule \(rule)") }
        let plannedRoutes = plan.routes.filter { $0.gateway != .v4(0) && $0.gateway != .v6(0, 0) }
        let kernelRouteKeys = Set(ownedRoutes.map(\.key))
        for route in plannedRoutes where !kernelRouteKeys.contains(route.key) { differences.append("missing route \(route)") }
        for name in unknownGateways {
            if let slot = record.slots[name] {
                differences.append("missing route: table \(record.ownership.tableBase + UInt32(slot)) (\(name)) has no default route, and its gateway is not recorded")
            }
        }
        let plannedKeys = Set(plannedRoutes.map(\.key))
        for route in ownedRoutes where !plannedKeys.contains(route.key)
            && !(unknownGateways.contains(route.device ?? "") && route.destination.isDefault) {
            differences.append("unexpected route \(route)")
        }
        for sysctl in plan.sysctls {
            let now = state.sysctls[sysctl.key] ?? "?"
            if now != sysctl.value { differences.append("sysctl \(sysctl.key) is \(now); apply set \(sysctl.value)") }
        }
        differences += nftDrift(plan.nftables, table: table != nil)
        guard !differences.isEmpty else { return [] }
        return [Finding(id: FindingID.drift, severity: .error,
                        message: "the node differs from what returnpath's last apply (strategy \(recorded.rawValue)) installed"
                            + (request.policy == nil ? "" : " for this policy") + ": changed by hand, a link flap, or another tool",
                        objects: differences, fix: applyCommand(strategy: recorded),
                        hint: unknownGateways.isEmpty && !applyNeedsPolicy ? nil : "apply needs the policy (-f POLICY.yaml): the record does not hold gateways or services")]
    }

    func nftDrift(_ desired: NftTable?, table exists: Bool) -> [String] {
        guard let desired else { return exists ? ["unexpected nft table inet returnpath (the strategy needs none)"] : [] }
        guard exists else { return ["missing nft table inet returnpath"] }
        var differences: [String] = []
        let chains = state.nftables.chains.filter { $0.family == "inet" && $0.table == "returnpath" }
        for chain in desired.chains {
            guard let current = chains.first(where: { $0.name == chain.name }) else {
                differences.append("missing nft chain inet returnpath \(chain.name)")
                continue
            }
            let rules = state.nftables.rules(of: current)
            if rules.count != chain.rules.count || rules.contains(where: { $0.comment != desired.ruleComment }) {
                differences.append("nft chain inet returnpath \(chain.name) has \(rules.count) rules, \(rules.filter { $0.comment == desired.ruleComment }.count) of them apply's; apply installed \(chain.rules.count)")
            }
        }
        for chain in chains where !desired.chains.contains(where: { $0.name == chain.name }) {
            differences.append("unexpected nft chain inet returnpath \(chain.name)")
        }
        for set in desired.sets {
            guard let current = state.nftables.collection(family: "inet", table: "returnpath", name: set.name) else {
                differences.append("missing nft set inet returnpath \(set.name)")
                continue
            }
            let have = Set(current.elements.map { element -> String in
                switch element {
                case .prefix(let a, let l): return "\(a)/\(l)"
                default: return element.description
                }
            })
            let want = Set(set.elements.map { $0.isHost ? $0.address.description : $0.cidr })
            if have != want {
                differences.append("nft set inet returnpath \(set.name) holds \(have.sorted().joined(separator: ", ")); apply put \(want.sorted().joined(separator: ", "))")
            }
        }
        return differences
    }
}
