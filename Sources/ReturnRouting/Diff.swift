import Netlink

/// Differences between the plan and the kernel: what to add and what to delete.
enum Diff {
    /// Rules to add and to delete. Both lists are walked in priority order (the kernel dumps them so, the planner
    /// makes them so): no hashing or copying of 10k rules, which cost ~20 ms. Several rules may share a priority
    /// (a switch that was interrupted leaves old and new side by side): each priority's rules are compared as sets.
    static func rules(desired: [Rule], current: [Rule]) -> (add: [Rule], stale: [Rule]) {
        let byPriority = { (a: Rule, b: Rule) in (a.priority ?? 0) < (b.priority ?? 0) }
        let want = desired.isSorted(by: byPriority) ? desired : desired.sorted(by: byPriority)
        let have = current.isSorted(by: byPriority) ? current : current.sorted(by: byPriority)
        var add: [Rule] = [], stale: [Rule] = []
        var i = 0, j = 0
        while i < want.count || j < have.count {
            let p = min(i < want.count ? want[i].priority ?? 0 : .max, j < have.count ? have[j].priority ?? 0 : .max)
            var i2 = i, j2 = j
            while i2 < want.count && (want[i2].priority ?? 0) == p { i2 += 1 }
            while j2 < have.count && (have[j2].priority ?? 0) == p { j2 += 1 }
            let wanted = want[i..<i2], had = have[j..<j2]
            if wanted.count == 1 && had.count == 1 {
                if wanted[i] != had[j] { add.append(wanted[i]); stale.append(had[j]) }
            } else {
                add += wanted.filter { !had.contains($0) }
                stale += had.filter { !wanted.contains($0) }
            }
            i = i2; j = j2
        }
        return (add, stale)
    }

    /// Routes to add (or replace) and to delete, by their identity (destination, table, metric…). A current route
    /// that a desired one replaces in place (same table, type, destination and metric: what NLM_F_REPLACE
    /// overwrites) is not deleted afterwards: the kernel would match the delete to the new route (a multipath route
    /// becoming single-path: its first next hop is the new route's) and remove what was just installed.
    static func routes(desired: [Route], current: [Route]) -> (add: [Route], stale: [Route]) {
        let have = Set(current.map(\.key)), want = Set(desired.map(\.key))
        let add = desired.filter { !have.contains($0.key) }
        // The replace overwrites one route per identity (the first); any other with it is still stale.
        var replaced = Set(add.map(\.replaceKey))
        return (add, current.filter { !want.contains($0.key) && replaced.remove($0.replaceKey) == nil })
    }
}

/// What makes the nftables table match the plan, split by when it may run: `before` the rules change (creating
/// or changing the table — whatever the new rules will point at), `deleteTable` only after (make before break).
struct NftActions {
    /// For a change of structure: the new chains' rules and sets added beside the old ones, one transaction before
    /// `script` — so that, while the switch happens, every packet meets the old rules or the new ones (a SYN that
    /// came in under `mark` gets its `ingress` conntrack mark before the table stops marking by address).
    var transition: String?
    /// One libnftables transaction.
    var script: String?
    /// Set elements (hash sets' keys, interval sets' start and end elements) over nfnetlink, each set in one
    /// transaction (its deletes and adds together), right after `script`.
    var updates: [(set: String, add: [NftSetElement], remove: [NftSetElement])] = []
    var deleteTable = false
}

extension ReturnRouter {
    func nftActions(_ desired: NftTable?, _ current: CurrentTable?, _ report: inout Report) -> NftActions {
        let table = NftTable.qualifiedName
        switch (desired, current) {
        case (nil, nil):
            return NftActions()
        case (nil, let current?):
            report.record(.remove, .nft, "table \(table) (\(current.objectCount) objects: sets, chains, rules)", "\(execPrefix)nft delete table \(table)")
            report.removed += max(0, current.objectCount - 1)
            return NftActions(deleteTable: true)
        case (let desired?, nil):
            // A new table: its structure in one transaction, the sets' elements over nfnetlink (one transaction per
            // set); nothing points at it until the rules are added after both.
            let elements = desired.sets.reduce(0) { $0 + $1.elements.count }
            report.record(.add, .nft, "table \(table) (\(desired.objectCount) objects: sets, chains, rules; \(elements) elements)",
                          "\(execPrefix)nft -f - <<'EOF'\n\(desired.creationScript())EOF")
            report.added += desired.objectCount + elements - 1
            let updates = desired.sets.filter { !$0.elements.isEmpty }
                .map { set in (set: set.name, add: set.interval ? set.elements.flatMap { NftInterval($0).elements }
                                                                : set.elements.map { NftSetElement(key: $0.address.bytes) },
                               remove: [NftSetElement]()) }
            return NftActions(script: desired.creationScript(elements: false), updates: updates)
        case (let desired?, let current?) where current.matches:
            // Same structure: only set elements change, over nfnetlink, one transaction per set.
            report.unchanged += desired.objectCount
            var actions = NftActions()
            for set in desired.sets {
                if set.interval {
                    if let update = intervalSetUpdate(set, have: current.intervals[set.name] ?? [], &report) {
                        actions.updates.append(update)
                    }
                } else if let update = hashSetUpdate(set, have: current.addresses[set.name] ?? [], &report) {
                    actions.updates.append(update)
                }
            }
            return actions
        case (let desired?, let current?):
            // Another structure (strategy, interfaces, kinds of set): replaced in place, in ONE transaction — chains
            // flushed and refilled, sets added, kept (with their element changes) or deleted. Packets see the old
            // table or the new one, never a table in between.
            var script = "", transition = "", first = true
            func note(_ action: Change.Action, _ object: String) {
                let command = first ? "\(execPrefix)nft -f - <<'EOF'\n<script>EOF" : "# (same nft transaction)"
                report.record(action, .nft, object, command)
                first = false
            }
            let wanted = Dictionary(desired.chains.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for chain in current.chains {
                script += "flush chain \(table) \(chain)\n"
                note(.remove, "chain \(chain) (\(current.rules.filter { $0.chain == chain }.count) rules)")
                if wanted[chain] == nil { script += "delete chain \(table) \(chain)\n" }
            }
            for set in current.sets where !desired.sets.contains(where: { $0.name == set.name && $0.interval == set.isInterval }) {
                script += "delete set \(table) \(set.name)\n"
                note(.remove, "set \(set.name)")
            }
            for set in desired.sets {
                if current.sets.contains(where: { $0.name == set.name && $0.isInterval == set.interval }) {
                    report.unchanged += 1
                    let have = set.interval ? (current.intervals[set.name] ?? []).map(\.description)
                                            : (current.addresses[set.name] ?? []).sorted().map(\.description)
                    script += elementLines(set, have: have, &report)
                } else {
                    transition += desired.addSet(set)
                    if !set.elements.isEmpty { transition += desired.elementCommand("add", set.name, set.elements.map(\.description)) }
                    note(.add, "set \(set.name) (\(set.elements.count) elements)")
                    report.added += set.elements.count
                }
            }
            for chain in desired.chains {
                if !current.chains.contains(chain.name) { transition += desired.addChain(chain) }
                transition += desired.ruleCommands(chain)
                script += desired.ruleCommands(chain)
                note(.add, "chain \(chain.name) (\(chain.rules.count) rules)")
            }
            if let i = report.changes.firstIndex(where: { $0.command.hasSuffix("<script>EOF") }) {
                report.changes[i].command = "\(execPrefix)nft -f - <<'EOF'\n\(transition)EOF\n\(execPrefix)nft -f - <<'EOF'\n\(script)EOF"
            }
            return NftActions(transition: transition, script: script)
        }
    }

    /// Adds and deletes of a hash set's elements, for nfnetlink.
    private func hashSetUpdate(_ set: NftTable.Set, have: Set<IPAddress>,
                               _ report: inout Report) -> (set: String, add: [NftSetElement], remove: [NftSetElement])? {
        let want = set.elements.map(\.address)
        let wanted = Set(want)
        let add = want.filter { !have.contains($0) }
        let drop = have.filter { !wanted.contains($0) }.sorted()
        report.unchanged += want.count - add.count
        let table = NftTable.qualifiedName
        for element in add { report.record(.add, .nft, "element \(element) of set \(set.name)", "\(execPrefix)nft 'add element \(table) \(set.name) { \(element) }'") }
        for element in drop { report.record(.remove, .nft, "element \(element) of set \(set.name)", "\(execPrefix)nft 'delete element \(table) \(set.name) { \(element) }'") }
        guard !add.isEmpty || !drop.isEmpty else { return nil }
        return (set: set.name, add: add.map { NftSetElement(key: $0.bytes) }, remove: drop.map { NftSetElement(key: $0.bytes) })
    }

    /// Deletes and adds of an interval set's intervals (start and end elements), for nfnetlink. An interval in
    /// the kernel that is no prefix of the policy (a range added by hand) is deleted by its own elements.
    private func intervalSetUpdate(_ set: NftTable.Set, have: [NftInterval],
                                   _ report: inout Report) -> (set: String, add: [NftSetElement], remove: [NftSetElement])? {
        // Compared as prefixes (cheap to hash); an interval in the kernel that is no prefix is always dropped.
        var wanted = Set<IPPrefix>()
        wanted.reserveCapacity(set.elements.count)
        let want = set.elements.filter { wanted.insert($0).inserted }
        var had = Set<IPPrefix>()
        had.reserveCapacity(have.count)
        var drop: [NftInterval] = []
        for interval in have {
            if let prefix = interval.prefix, wanted.contains(prefix) { had.insert(prefix) } else { drop.append(interval) }
        }
        let add = want.filter { !had.contains($0) }.map { NftInterval($0) }
        report.unchanged += want.count - add.count
        let table = NftTable.qualifiedName
        for interval in add { report.record(.add, .nft, "element \(interval) of set \(set.name)", "\(execPrefix)nft 'add element \(table) \(set.name) { \(interval) }'") }
        for interval in drop { report.record(.remove, .nft, "element \(interval) of set \(set.name)", "\(execPrefix)nft 'delete element \(table) \(set.name) { \(interval) }'") }
        guard !add.isEmpty || !drop.isEmpty else { return nil }
        return (set: set.name, add: add.flatMap(\.elements), remove: drop.flatMap(\.elements))
    }

    /// `add element` / `delete element` lines that turn `have` (as nft prints elements) into the set's elements.
    private func elementLines(_ set: NftTable.Set, have: [String], _ report: inout Report) -> String {
        let haveSet = Set(have), want = set.elements.map(\.description), wanted = Set(want)
        let add = want.filter { !haveSet.contains($0) }
        let drop = have.filter { !wanted.contains($0) }.sorted()
        report.unchanged += want.count - add.count
        let table = NftTable.qualifiedName
        var script = ""
        for (verb, action, elements) in [("add", Change.Action.add, add), ("delete", Change.Action.remove, drop)] where !elements.isEmpty {
            let command = "\(verb) element \(table) \(set.name) { \(elements.joined(separator: ", ")) }"
            script += command + "\n"
            for element in elements { report.record(action, .nft, "element \(element) of set \(set.name)", "\(execPrefix)nft '\(command)'") }
        }
        return script
    }
}

extension Array {
    func isSorted(by areInIncreasingOrder: (Element, Element) -> Bool) -> Bool {
        indices.dropFirst().allSatisfy { !areInIncreasingOrder(self[$0], self[$0 - 1]) }
    }
}
