import Dispatch
import FoundationEssentials
import Handle
import Namespace
import Netlink
import TextFormat

/// Applies a policy to one network namespace with owned, idempotent policy routing, and removes it.
///
/// Callers hold the namespace's `ApplyLock` around `apply` and `remove` (one writer per namespace). Every change
/// is made before what it replaces is removed: routes, then the nftables table, then new rules; only then stale
/// rules, an unneeded table, stale routes and sysctls back to their original values. What remove will need is
/// written to the record before the change it describes.
public final class ReturnRouter {
    public let namespace: NetworkNamespace
    /// The namespace's sockets and libnftables context, made once by the caller.
    let handle: NamespaceHandle
    var socket: NetlinkSocket { handle.route }
    let store: RecordStore
    /// Names this namespace in /run/returnpath (records, locks): its cookie, which the kernel never reuses.
    public let key: String
    /// How commands are shown for --dry-run: "ip -n NS …" for a named namespace.
    var ipPrefix: [String] { namespace.name.map { ["ip", "-n", $0] } ?? ["ip"] }
    var execPrefix: String { namespace.name.map { "ip netns exec \($0) " } ?? "" }

    /// Opens a handle to `namespace` for this router alone.
    public convenience init(namespace: NetworkNamespace) throws(ApplyError) {
        let handle: NamespaceHandle
        do { handle = try NamespaceHandle(namespace) } catch { throw .netlink(error) }
        try self.init(handle: handle)
    }

    /// A router working through `handle` (shared with the rest of the command).
    public init(handle: NamespaceHandle) throws(ApplyError) {
        self.handle = handle
        namespace = handle.namespace
        // An inode number is reused by a later namespace, and a stale record would then "restore" sysctls that were
        // never ours: the cookie is unique for the kernel's lifetime.
        if let cookie = handle.route.namespaceCookie() {
            key = "netns-cookie-\(cookie)"
        } else {
            do { key = "netns-\(try namespace.inode())" } catch { throw .namespace(error) }
        }
        store = RecordStore(key: key)
    }

    /// Takes this namespace's writer lock (see `ApplyLock`).
    public func lock(role: String, wait: Double) throws(ApplyError) -> ApplyLock {
        try ApplyLock(key: key, namespace: "\(namespace)", role: role, wait: wait)
    }

    /// The record of the last apply here, nil when there is none (a record that does not decode is an error).
    public func record() throws(ApplyError) -> AppliedRecord? { try store.load() }

    // MARK: apply

    /// The policy with the services its `servicesFrom` entries find now: the global addresses on that
    /// interface inside its prefixes, added (once) to the entry's services.
    public func resolvingServices(_ policy: Policy) throws(ApplyError) -> Policy {
        guard policy.interfaces.contains(where: { $0.servicesFrom != nil }) else { return policy }
        var resolved = policy
        var found: [String: [IPAddress]] = [:]
        for (i, entry) in policy.interfaces.enumerated() {
            guard let from = entry.servicesFrom else { continue }
            if found[from.interface] == nil {
                do {
                    found[from.interface] = try socket.addresses(family: .unspecified, interface: from.interface)
                        .filter { $0.scope == .universe }.map(\.prefix.address)
                } catch { throw .netlink(error) }
            }
            let listed = Set(entry.services)
            let more = (found[from.interface] ?? []).filter(from.covers).map { IPPrefix(host: $0) }.filter { !listed.contains($0) }
            resolved.interfaces[i].services += Array(Set(more)).sorted()
        }
        return resolved
    }

    public func apply(_ given: Policy, strategy: Strategy, dryRun: Bool) throws(ApplyError) -> Report {
        let trace = Trace(enabled: ProcessInfo.processInfo.environment["RETURNPATH_TRACE"] != nil)
        let policy = try resolvingServices(given)
        try validate(policy, strategy: strategy)
        let own = policy.ownership
        let previous = try store.load()
        guard let slots = Planner.slots(for: policy, previous: previous?.slots ?? [:], capacity: Planner.capacity(own, strategy)) else {
            throw .invalid("the ownership has room for \(Planner.capacity(own, strategy)) interfaces; the policy has \(policy.interfaces.count)")
        }
        let plan = Planner.plan(policy, strategy: strategy, slots: slots)
        trace.phase("validate and plan")
        var report = Report()
        if strategy == .source && policy.interfaces.reduce(0, { $0 + $1.services.count }) > 100 {
            report.warnings.append("source installs one rule per service: every packet's route lookup walks them all; above 100 services prefer --strategy mark")
        }
        let retiring = (previous?.ownerships ?? []).filter { $0 != own }
        let current = try readState(own, retiring: retiring, desired: plan.nftables)
        trace.phase("read current state")

        // Sysctls: what the plan needs, and what an earlier plan changed that this one does not need.
        var sysctlChanges: [Plan.Sysctl] = []
        var originals = previous?.sysctls ?? [:]
        for sysctl in plan.sysctls {
            let now: String
            do { now = try namespace.readSysctl(sysctl.key) } catch { throw .namespace(error) }
            if now == sysctl.value { report.unchanged += 1; continue }
            if originals[sysctl.key] == nil { originals[sysctl.key] = now }
            sysctlChanges.append(sysctl)
            report.record(.add, .sysctl, "\(sysctl.key)=\(sysctl.value)", "\(execPrefix)sysctl -w \(sysctl.key)=\(sysctl.value)")
        }
        let restores = originals.sorted { $0.key < $1.key }.filter { key, _ in !plan.sysctls.contains { $0.key == key } }

        let routes = Diff.routes(desired: plan.routes, current: current.routes)
        report.unchanged += plan.routes.count - routes.add.count
        let rules = Diff.rules(desired: plan.rules, current: current.rules)
        report.unchanged += plan.rules.count - rules.add.count
        let staleRules = rules.stale + current.leftoverRules, staleRoutes = routes.stale + current.leftoverRoutes
        for route in routes.add { report.record(.add, .route, route.description, ipCommand(route.family, "route", "replace", route.ipArguments)) }
        for rule in rules.add { report.record(.add, .rule, rule.description, ipCommand(rule.family, "rule", "add", rule.ipArguments)) }
        let nft = nftActions(plan.nftables, current.nft, &report)
        for rule in staleRules { report.record(.remove, .rule, rule.description, ipCommand(rule.family, "rule", "del", rule.ipArguments)) }
        for route in staleRoutes { report.record(.remove, .route, route.description, ipCommand(route.family, "route", "del", route.ipArguments)) }
        for (key, original) in restores {
            report.record(.remove, .sysctl, "\(key) (back to \(original))", "\(execPrefix)sysctl -w \(key)=\(original)")
        }
        report.notes = try reversePathNotes(policy, strategy: strategy, slots: slots)
        trace.phase("diff")
        if dryRun { return report }

        // Write ahead: the record covers every ownership that may hold objects and every original value before
        // anything changes.
        var record = previous ?? AppliedRecord(ownership: own)
        record.ownership = own
        record.retiring = retiring
        record.sysctls = originals
        record.slots = (previous?.slots ?? [:]).merging(slots) { _, new in new }
        if record != previous { try store.save(record) }

        for sysctl in sysctlChanges { try writeSysctl(sysctl.key, sysctl.value) }
        try send("replace routes") { () throws(NetlinkError) in try socket.replaceRoutes(routes.add) }
        if let transition = nft.transition { try runNft(transition) }
        if let script = nft.script { try runNft(script) }
        for update in nft.updates {
            let netfilter = try netfilterSocket()
            do {
                try netfilter.nftUpdateSetElements(family: NftTable.inetFamily, table: NftTable.name, set: update.set,
                                                   add: update.add, remove: update.remove)
            } catch { throw .netlink(error) }
            Failpoint.step("update set \(update.set)")
        }
        try send("add rules") { () throws(NetlinkError) in try socket.addRules(rules.add) }
        // The new paths are in place: now what they replace.
        try send("delete rules") { () throws(NetlinkError) in try socket.deleteRules(staleRules).map { $0?.isGone == true ? nil : $0 } }
        if nft.deleteTable { try runNft("delete table \(NftTable.qualifiedName)") }
        try send("delete routes") { () throws(NetlinkError) in try socket.deleteRoutes(staleRoutes).map { $0?.isGone == true ? nil : $0 } }
        for (key, original) in restores { try restoreSysctl(key, original) }

        record.retiring = []
        record.strategy = strategy
        record.slots = slots
        for (key, _) in restores { record.sysctls[key] = nil }
        if record != previous { try store.save(record) }
        trace.phase("write")
        return report
    }

    /// What each interface's rp_filter (the kernel uses the maximum of `all` and the interface's) means for the
    /// requests of this strategy.
    private func reversePathNotes(_ policy: Policy, strategy: Strategy, slots: [String: Int]) throws(ApplyError) -> [String] {
        let modes = ["0": "off (0)", "1": "strict (1)", "2": "loose (2)"]
        let all: String
        do { all = try namespace.readSysctl("net.ipv4.conf.all.rp_filter") } catch { throw .namespace(error) }
        var notes: [String] = []
        for entry in policy.interfaces where entry.gateway(for: .inet) != nil {
            let own: String
            do { own = try namespace.readSysctl("net.ipv4.conf.\(entry.name).rp_filter") } catch { throw .namespace(error) }
            let effective = max(all, own)
            let mode = modes[effective] ?? effective
            let table = Planner.table(policy.ownership, slots[entry.name] ?? 0)
            let how: String
            switch (effective, strategy) {
            case ("0", _): how = "no reverse-path check"
            case ("2", _): how = "the check passes when any route leads back to the client"
            case (_, .static): how = "the check of a request uses table \(policy.ownership.tableBase), which routes its clients back through \(entry.name)"
            case (_, .source): how = "the check of a request uses its service's rule (from SERVICE lookup \(table)), back through \(entry.name)"
            case (_, .mark): how = "requests to the services are marked in prerouting: with src_valid_mark=1 the check uses table \(table), back through \(entry.name)"
            case (_, .ingress): how = "requests to local addresses are marked in prerouting: with src_valid_mark=1 the check uses table \(table), back through \(entry.name)"
            }
            notes.append("rp_filter on \(entry.name) is \(mode) (all=\(all), \(entry.name)=\(own)): \(how)")
        }
        return notes
    }

    // MARK: remove

    /// Deletes everything apply owns here (under every ownership the record names, else the default one) and
    /// restores the sysctls it changed; then the record.
    public func remove(dryRun: Bool) throws(ApplyError) -> Report {
        let record = try store.load()
        let ownerships = record?.ownerships ?? [Ownership()]
        var report = Report()
        let current = try readState(ownerships[0], retiring: Array(ownerships.dropFirst()), checkConflicts: false)
        let rules = current.rules + current.leftoverRules, routes = current.routes + current.leftoverRoutes
        for rule in rules { report.record(.remove, .rule, rule.description, ipCommand(rule.family, "rule", "del", rule.ipArguments)) }
        let table = NftTable.qualifiedName
        if let nft = current.nft {
            report.record(.remove, .nft, "table \(table) (\(nft.objectCount) objects: sets, chains, rules)", "\(execPrefix)nft delete table \(table)")
        }
        for route in routes { report.record(.remove, .route, route.description, ipCommand(route.family, "route", "del", route.ipArguments)) }
        let restores = (record?.sysctls ?? [:]).sorted { $0.key < $1.key }
        for (key, original) in restores {
            report.record(.remove, .sysctl, "\(key) (back to \(original))", "\(execPrefix)sysctl -w \(key)=\(original)")
        }
        if dryRun { return report }
        try send("delete rules") { () throws(NetlinkError) in try socket.deleteRules(rules).map { $0?.isGone == true ? nil : $0 } }
        if current.nft != nil { try runNft("delete table \(table)") }
        try send("delete routes") { () throws(NetlinkError) in try socket.deleteRoutes(routes).map { $0?.isGone == true ? nil : $0 } }
        // The record goes last: until then it still names every original value.
        for (key, original) in restores { try restoreSysctl(key, original) }
        if record != nil {
            try store.delete()
            Failpoint.step("delete record")
        }
        return report
    }

    /// Forgets what apply recorded about `namespace` (for a namespace about to be deleted with whatever apply left).
    public static func discardRecord(of namespace: NetworkNamespace) {
        guard let router = try? ReturnRouter(namespace: namespace) else { return }
        try? router.store.delete()
    }

    // MARK: steps that change the node (each one a failpoint step)

    private func ipCommand(_ family: AddressFamily, _ object: String, _ verb: String, _ arguments: [String]) -> String {
        (ipPrefix + (family == .inet6 ? ["-6"] : []) + [object, verb] + arguments).joined(separator: " ")
    }

    /// Puts back an original value. A sysctl that no longer exists (its interface was deleted) has nothing to put
    /// back: the interface comes back with the kernel's defaults.
    private func restoreSysctl(_ key: String, _ value: String) throws(ApplyError) {
        do {
            try writeSysctl(key, value)
        } catch .namespace(.invalidSysctl(_, let reason)) where reason.hasPrefix("no such sysctl") {
            return
        }
    }

    private func writeSysctl(_ key: String, _ value: String) throws(ApplyError) {
        do { try namespace.writeSysctl(key, value) } catch { throw .namespace(error) }
        Failpoint.step("sysctl \(key)=\(value)")
    }

    /// A batch of rtnetlink requests (one result each); the first failure is thrown.
    private func send(_ what: String, _ batch: () throws(NetlinkError) -> [NetlinkError?]) throws(ApplyError) {
        let results: [NetlinkError?]
        do {
            results = try batch()
            try results.throwFirst()
        } catch { throw .netlink(error) }
        if !results.isEmpty { Failpoint.step(what) }
    }

    private func runNft(_ script: String) throws(ApplyError) {
        let nft = try libnftables()
        do { try nft.run(script, operation: "nft: the table inet returnpath in \(namespace)") } catch {
            switch error {
            case .failed(_, let message): throw .nft(NftError(script: script, message: message))
            case .unavailable: throw .unsupported(error.description)
            case .namespace(let e): throw .namespace(e)
            }
        }
        Failpoint.step("nft transaction")
    }

    /// nfnetlink, for the table's chains, rules and sets, and set elements (hash and interval); also tells whether the kernel
    /// has nf_tables.
    func netfilterSocket() throws(ApplyError) -> NetlinkSocket {
        do { return try handle.netfilter() } catch {
            throw .unsupported("this kernel has no nfnetlink (nf_tables) in \(namespace): \(error)")
        }
    }

    /// libnftables, made when first needed (creating, changing or deleting the table's structure).
    func libnftables() throws(ApplyError) -> Nftables {
        do { return try handle.nftables() } catch {
            switch error {
            case .namespace(let e): throw .namespace(e)
            default: throw .unsupported(error.description)
            }
        }
    }
}

/// `RETURNPATH_TRACE=1`: how long each phase of apply took, on standard error.
struct Trace {
    let enabled: Bool
    private let start = DispatchTime.now().uptimeNanoseconds

    init(enabled: Bool) { self.enabled = enabled }

    func phase(_ name: String) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        printError("apply: \(name) at \(Double(now - start) / 1e6) ms\n")
    }
}

extension NetlinkError {
    /// "Already gone" on delete: rule ENOENT, route ESRCH.
    var isGone: Bool { errno == .noSuchFileOrDirectory || errno == .noSuchProcess }
}
