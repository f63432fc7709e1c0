import Foundation
import Namespace
import Netlink
import SystemPackage

/// Why apply or remove refused or failed. `invalid` means nothing was changed (exit 2).
public enum ApplyError: Error, CustomStringConvertible, Sendable {
    case invalid(String)
    case conflict(String)
    case unsupported(String)
    case kernel(String)

    public var description: String {
        switch self {
        case .invalid(let m): return m
        case .conflict(let m): return "conflict: \(m)"
        case .unsupported(let m): return m
        case .kernel(let m): return m
        }
    }
    public var isInvalid: Bool { if case .invalid = self { return true } else { return false } }
}

/// One change apply made (or would make): what, and the equivalent command.
public struct Change: Sendable, Codable, Equatable {
    public var action: String     // "add" | "remove"
    public var kind: String       // "rule" | "route" | "nft" | "sysctl"
    public var object: String
    public var command: String
}

public struct Report: Sendable, Codable {
    public var added = 0
    public var removed = 0
    public var unchanged = 0
    public var changes: [Change] = []
    public var warnings: [String] = []
}

/// What apply recorded on the node: the ownership it used, the strategy, and the values of the sysctls it changed
/// (restored by remove). Kept under /run/returnpath/applied/, keyed by the namespace's cookie.
struct AppliedState: Codable {
    var strategy: Strategy
    var ownership: Ownership
    var sysctls: [String: String]
}

/// Applies a policy to one network namespace with owned, idempotent policy routing, and removes it.
public final class ReturnRouter {
    public let namespace: NetworkNamespace
    let socket: NetlinkSocket
    let statePath: String
    /// How commands are shown for --dry-run: "ip -n NS …" for a named namespace.
    var ipPrefix: [String] { namespace.name.map { ["ip", "-n", $0] } ?? ["ip"] }
    var execPrefix: String { namespace.name.map { "ip netns exec \($0) " } ?? "" }

    public static let stateDirectory = "/run/returnpath/applied"

    public init(namespace: NetworkNamespace) throws(ApplyError) {
        self.namespace = namespace
        do { socket = try NetlinkSocket(namespace: namespace) } catch { throw .kernel(error.description) }
        // Keyed by the namespace's cookie: an inode number is reused by a later namespace, and a stale record would
        // then "restore" sysctls that were never ours.
        if let cookie = socket.namespaceCookie() {
            statePath = "\(Self.stateDirectory)/netns-cookie-\(cookie).json"
        } else {
            let inode: UInt64
            do { inode = try namespace.inode() } catch { throw .kernel(error.description) }
            statePath = "\(Self.stateDirectory)/netns-\(inode).json"
        }
    }

    // MARK: validation

    /// Every check that needs the node's state, before any change.
    public func validate(_ policy: Policy, strategy: Strategy) throws(ApplyError) {
        let own = policy.ownership
        guard !policy.interfaces.isEmpty else { throw .invalid("the policy lists no interfaces") }
        let links: [Link]
        do { links = try socket.links() } catch { throw .kernel(error.description) }
        var seen: [IPPrefix: String] = [:]
        for entry in policy.interfaces {
            let at = entry.origin.map { "\($0): " } ?? ""
            guard links.contains(where: { $0.name == entry.name }) else {
                throw .invalid("\(at)unknown interface \(entry.name) in \(namespace)")
            }
            // Local addresses are what the kernel routes as local: asked directly, no dump of every address.
            if (try? socket.lookup(RouteQuery(destination: entry.gateway)))?.type == .local {
                throw .invalid("\(at)gateway \(entry.gateway) of \(entry.name) is an address of this node itself (the POC's typo: the router is the other end)")
            }
            let connected: [IPPrefix]
            do { connected = try socket.addresses(family: .inet, interface: entry.name).map(\.prefix) } catch {
                throw .kernel(error.description)
            }
            guard connected.contains(where: { $0.contains(entry.gateway) }) else {
                throw .invalid("\(at)gateway \(entry.gateway) is not on a subnet connected to \(entry.name) (\(connected.map(\.cidr).joined(separator: ", ")))")
            }
            for service in entry.services {
                if let other = seen[service] { throw .invalid("\(at)service \(service) is on both \(other) and \(entry.name)") }
                seen[service] = entry.name
            }
            // An exempt prefix that covers the gateway or the clients would send their replies to main: the very
            // asymmetry the policy is for (Kubernetes' default service CIDR 10.96.0.0/12 covers 10.96–10.111.x.x).
            for exempt in policy.exempt {
                if exempt.contains(entry.gateway) {
                    throw .invalid("\(at)exempt prefix \(exempt.cidr) covers \(entry.gateway), the gateway of \(entry.name): replies would keep using the main table")
                }
                if let client = entry.clients.first(where: { exempt.contains($0) || $0.contains(exempt) }) {
                    throw .invalid("\(at)exempt prefix \(exempt.cidr) overlaps client prefix \(client.cidr) of \(entry.name): replies would keep using the main table")
                }
            }
            switch strategy {
            case .static where entry.clients.isEmpty:
                throw .invalid("\(at)static needs client prefixes on \(entry.name) (clients: […])")
            case .source where entry.services.isEmpty, .mark where entry.services.isEmpty:
                throw .invalid("\(at)\(strategy) needs service addresses on \(entry.name) (services: […])")
            default: break
            }
        }
        if strategy == .mark || strategy == .ingress {
            if own.markMask & 0xc000 != 0 && !own.allowKubeProxyMarks {
                throw .invalid("mark mask 0x\(String(own.markMask, radix: 16)) overlaps kube-proxy's 0x4000/0x8000 (set allowKubeProxyMarks: true to allow)")
            }
            guard policy.interfaces.count <= own.markValues else {
                throw .invalid("mark mask 0x\(String(own.markMask, radix: 16)) tells \(own.markValues) interfaces apart; the policy has \(policy.interfaces.count)")
            }
        }
        let strategyRules = strategy == .source ? policy.interfaces.reduce(0) { $0 + $1.services.count }
                                                : policy.interfaces.count
        let rulesNeeded = 100 + strategyRules
        guard policy.exempt.count <= 100, UInt32(rulesNeeded) <= own.priorityCount else {
            throw .invalid("the priority band of \(own.priorityCount) cannot hold \(policy.exempt.count) exempt and \(rulesNeeded - 100) strategy rules")
        }
        guard UInt32(policy.interfaces.count + 1) <= own.tableCount else {
            throw .invalid("the table range of \(own.tableCount) cannot hold \(policy.interfaces.count + 1) tables")
        }
    }

    // MARK: apply

    public func apply(_ policy: Policy, strategy: Strategy, dryRun: Bool) throws(ApplyError) -> Report {
        var t0 = DispatchTime.now().uptimeNanoseconds
        func phase(_ name: String) {
            let t = DispatchTime.now().uptimeNanoseconds
            if ProcessInfo.processInfo.environment["RETURNPATH_TRACE"] != nil {
                FileHandle.standardError.write(Data("apply: \(name) \(Double(t - t0) / 1e6) ms\n".utf8))
            }
            t0 = t
        }
        try validate(policy, strategy: strategy)
        phase("validate")
        let plan = Planner.plan(policy, strategy: strategy)
        phase("plan")
        var report = Report()
        if strategy == .source && policy.interfaces.reduce(0, { $0 + $1.services.count }) > 100 {
            report.warnings.append("source installs one rule per service: every packet's route lookup walks them all; above 100 services prefer --strategy mark")
        }
        let own = policy.ownership
        var state = loadState() ?? AppliedState(strategy: strategy, ownership: own, sysctls: [:])
        if state.ownership != own && !dryRun {
            // A different band or range: take down what the old ownership holds first.
            report = try remove(dryRun: false, ownership: state.ownership, keepSysctls: true)
        }
        let current = try currentState(own, desired: plan.nftables)
        phase("read current state")

        // Sysctls first (they make rp_filter accept what the rules will do), then tables, nft, and rules last:
        // traffic is diverted only once everything it is diverted to exists.
        var sysctlChanges: [(String, String)] = []
        for (key, value) in plan.sysctls {
            let now: String
            do { now = try namespace.readSysctl(key) } catch { throw .kernel(error.description) }
            if now == value { report.unchanged += 1; continue }
            if state.sysctls[key] == nil { state.sysctls[key] = now }
            sysctlChanges.append((key, value))
            report.record("add", "sysctl", "\(key)=\(value)", "\(execPrefix)sysctl -w \(key)=\(value)")
        }
        // Sysctls an earlier strategy changed that this one does not need: back to their old values.
        var restores: [(String, String)] = []
        for (key, original) in state.sysctls.sorted(by: { $0.key < $1.key }) where !plan.sysctls.contains(where: { $0.key == key }) {
            restores.append((key, original))
            report.record("remove", "sysctl", "\(key) (back to \(original))", "\(execPrefix)sysctl -w \(key)=\(original)")
        }

        let currentRouteKeys = Set(current.routes.map(\.key)), desiredRouteKeys = Set(plan.routes.map(\.key))
        let addRoutes = plan.routes.filter { !currentRouteKeys.contains($0.key) }
        let staleRoutes = current.routes.filter { !desiredRouteKeys.contains($0.key) }
        report.unchanged += plan.routes.count - addRoutes.count
        for route in addRoutes { report.record("add", "route", route.description, (ipPrefix + ["route", "replace"] + route.ipArguments).joined(separator: " ")) }
        for route in staleRoutes { report.record("remove", "route", route.description, (ipPrefix + ["route", "del"] + route.ipArguments).joined(separator: " ")) }

        let (addRules, staleRules) = Self.ruleDiff(desired: plan.rules, current: current.rules)
        report.unchanged += plan.rules.count - addRules.count
        for rule in addRules { report.record("add", "rule", rule.description, (ipPrefix + ["rule", "add"] + rule.ipArguments).joined(separator: " ")) }
        for rule in staleRules { report.record("remove", "rule", rule.description, (ipPrefix + ["rule", "del"] + rule.ipArguments).joined(separator: " ")) }

        let nft = nftDiff(plan.nftables, current.nft, &report)
        phase("diff")

        if dryRun { return report }
        do {
            for (key, value) in sysctlChanges { try namespace.writeSysctl(key, value) }
            try saveState(state)
            try socket.replaceRoutes(addRoutes).throwFirst()
            if let script = nft.script { try libnftables().run(script) }
            for update in nft.updates {
                try netfilterSocket().nftUpdateSetElements(family: NftTable.inetFamily, table: NftTable.name, set: update.set,
                                                           add: update.add, remove: update.remove)
            }
            try socket.addRules(addRules).throwFirst()
            try socket.deleteRules(staleRules).throwFirst()
            try socket.deleteRoutes(staleRoutes).throwFirst()
            for (key, original) in restores {
                try namespace.writeSysctl(key, original)
                state.sysctls[key] = nil
            }
            state.strategy = strategy
            try saveState(state)
            phase("write")
        } catch let error as ApplyError {
            throw error
        } catch let error as NftError {
            throw .kernel("nft: \(error.message)\nscript:\n\(error.script)")
        } catch {
            throw .kernel("\(error)")
        }
        return report
    }

    /// Rules to add and to delete. Both lists are walked in priority order (the kernel dumps them so, the planner
    /// makes them so): no hashing or copying of 10k rules, which cost ~20 ms.
    static func ruleDiff(desired: [Rule], current: [Rule]) -> (add: [Rule], stale: [Rule]) {
        let byPriority = { (a: Rule, b: Rule) in (a.priority ?? 0) < (b.priority ?? 0) }
        let want = desired.isSorted(by: byPriority) ? desired : desired.sorted(by: byPriority)
        let have = current.isSorted(by: byPriority) ? current : current.sorted(by: byPriority)
        var add: [Rule] = [], stale: [Rule] = []
        var i = 0, j = 0
        while i < want.count || j < have.count {
            if j == have.count || (i < want.count && (want[i].priority ?? 0) < (have[j].priority ?? 0)) {
                add.append(want[i]); i += 1
            } else if i == want.count || (have[j].priority ?? 0) < (want[i].priority ?? 0) {
                stale.append(have[j]); j += 1
            } else {
                if want[i] != have[j] { add.append(want[i]); stale.append(have[j]) }
                i += 1; j += 1
            }
        }
        return (add, stale)
    }

    /// What makes the table match: a libnftables script (structure changes, interval sets) and element updates of
    /// hash sets over nfnetlink; and the changes they stand for.
    struct NftActions {
        var script: String?
        var updates: [(set: String, add: [[UInt8]], remove: [[UInt8]])] = []
    }

    private func nftDiff(_ desired: NftTable?, _ current: NftState?, _ report: inout Report) -> NftActions {
        let table = "\(NftTable.family) \(NftTable.name)"
        switch (desired, current) {
        case (nil, nil):
            return NftActions()
        case (nil, let current?):
            report.record("remove", "nft", "table \(table) (\(current.objectCount) objects: sets, chains, rules)", "\(execPrefix)nft delete table \(table)")
            report.removed += max(0, current.objectCount - 1)
            return NftActions(script: "delete table \(table)")
        case (let desired?, let current) where current?.comment != desired.comment:
            var script = ""
            if let current {
                report.record("remove", "nft", "table \(table) (\(current.objectCount) objects: sets, chains, rules)", "\(execPrefix)nft delete table \(table)")
                report.removed += max(0, current.objectCount - 1)
                script = "delete table \(table)\n"
            }
            // The structure (and interval sets' elements) through libnftables; hash sets' elements over nfnetlink.
            script += desired.script(hashSetElements: false)
            let elements = desired.sets.reduce(0) { $0 + $1.elements.count }
            report.record("add", "nft", "table \(table) (\(desired.objectCount) objects: sets, chains, rules; \(elements) elements)",
                          "\(execPrefix)nft -f - <<'EOF'\n\(desired.script)EOF")
            report.added += desired.objectCount + elements - 1
            let updates = desired.sets.filter { !$0.interval && !$0.elements.isEmpty }
                .map { (set: $0.name, add: $0.elements.map(\.address.bytes), remove: [[UInt8]]()) }
            return NftActions(script: script, updates: updates)
        case (let desired?, let current?):
            // Same structure: only set elements change, one transaction, no reload.
            report.unchanged += desired.objectCount
            var actions = NftActions()
            var script = ""
            for set in desired.sets {
                if let have = current.addresses[set.name], !set.interval {
                    // Hash set read over nfnetlink: compare addresses, not text; update over nfnetlink.
                    let want = set.elements.map(\.address)
                    let wanted = Swift.Set(want)
                    let add = want.filter { !have.contains($0) }
                    let drop = have.filter { !wanted.contains($0) }.sorted()
                    report.unchanged += want.count - add.count
                    if !add.isEmpty || !drop.isEmpty {
                        actions.updates.append((set: set.name, add: add.map(\.bytes), remove: drop.map(\.bytes)))
                    }
                    for element in add { report.record("add", "nft", "element \(element) of set \(set.name)", "\(execPrefix)nft 'add element \(table) \(set.name) { \(element) }'") }
                    for element in drop { report.record("remove", "nft", "element \(element) of set \(set.name)", "\(execPrefix)nft 'delete element \(table) \(set.name) { \(element) }'") }
                    continue
                }
                let have = Swift.Set(current.sets[set.name] ?? [])
                let want = set.elements.map(\.description)
                let wanted = Swift.Set(want)
                let add = want.filter { !have.contains($0) }
                let drop = have.filter { !wanted.contains($0) }.sorted()
                report.unchanged += want.count - add.count
                if !add.isEmpty {
                    let command = "add element \(table) \(set.name) { \(add.joined(separator: ", ")) }"
                    script += command + "\n"
                    for element in add { report.record("add", "nft", "element \(element) of set \(set.name)", "\(execPrefix)nft '\(command)'") }
                }
                if !drop.isEmpty {
                    let command = "delete element \(table) \(set.name) { \(drop.joined(separator: ", ")) }"
                    script += command + "\n"
                    for element in drop { report.record("remove", "nft", "element \(element) of set \(set.name)", "\(execPrefix)nft '\(command)'") }
                }
            }
            actions.script = script.isEmpty ? nil : script
            return actions
        default:
            return NftActions()
        }
    }

    // MARK: remove

    /// Deletes everything apply owns here and restores the sysctls it changed.
    public func remove(dryRun: Bool) throws(ApplyError) -> Report {
        let state = loadState()
        return try remove(dryRun: dryRun, ownership: state?.ownership ?? Ownership(), keepSysctls: false)
    }

    private func remove(dryRun: Bool, ownership: Ownership, keepSysctls: Bool) throws(ApplyError) -> Report {
        var report = Report()
        let current = try currentState(ownership, checkConflicts: false)
        for rule in current.rules { report.record("remove", "rule", rule.description, (ipPrefix + ["rule", "del"] + rule.ipArguments).joined(separator: " ")) }
        for route in current.routes { report.record("remove", "route", route.description, (ipPrefix + ["route", "del"] + route.ipArguments).joined(separator: " ")) }
        let table = "\(NftTable.family) \(NftTable.name)"
        if let nft = current.nft {
            report.record("remove", "nft", "table \(table) (\(nft.objectCount) objects: sets, chains, rules)", "\(execPrefix)nft delete table \(table)")
        }
        var state = loadState()
        let restores = keepSysctls ? [] : (state?.sysctls ?? [:]).sorted { $0.key < $1.key }
        for (key, original) in restores {
            report.record("remove", "sysctl", "\(key) (back to \(original))", "\(execPrefix)sysctl -w \(key)=\(original)")
        }
        if dryRun { return report }
        do {
            try socket.deleteRules(current.rules).throwFirst()
            try socket.deleteRoutes(current.routes).throwFirst()
            if current.nft != nil { try libnftables().run("delete table \(table)") }
            for (key, original) in restores { try namespace.writeSysctl(key, original) }
            if keepSysctls, state != nil {
                state?.ownership = Ownership()
                if let state { try saveState(state) }
            } else {
                try? FileManager.default.removeItem(atPath: statePath)
            }
        } catch let error as NftError {
            throw .kernel("nft: \(error.message)")
        } catch {
            throw .kernel("\(error)")
        }
        return report
    }

    // MARK: current state

    struct Current {
        var rules: [Rule]
        var routes: [Route]
        var nft: NftState?
    }

    private var netfilterCache: NetlinkSocket?
    private var nftablesCache: Nftables?

    /// Our rules (our protocol), our routes (our table range), our nft table. A foreign rule in our band or a
    /// foreign route in our tables is a conflict. The table is read over nfnetlink (its comment, and the elements of
    /// hash sets) when its structure is the `desired` one; libnftables lists it only otherwise.
    func currentState(_ own: Ownership, desired: NftTable? = nil, checkConflicts: Bool = true) throws(ApplyError) -> Current {
        let rules: [Rule], routes: [Route], foreignRoutes: [Route]
        do {
            rules = try socket.rules(family: .inet)
            // One dump of every IPv4 route: a foreign route anywhere in our range is a conflict, and the kernel can
            // only filter by a single table.
            let all = try socket.routes(family: .inet)
            routes = all.filter { $0.proto == own.routeProtocol }
            foreignRoutes = all.filter { $0.proto != own.routeProtocol && own.ownsTable($0.table) }
        } catch { throw .kernel(error.description) }
        if checkConflicts {
            if let foreign = rules.first(where: { $0.proto != own.routeProtocol && own.ownsPriority($0.priority ?? 0) }) {
                throw .conflict("rule \"\(foreign)\" is inside returnpath's priority band \(own.priorityBase)-\(own.priorityBase + own.priorityCount - 1) but is not returnpath's; move it or choose another priorityBase")
            }
            if let foreign = foreignRoutes.first {
                throw .conflict("route \"\(foreign)\" is inside returnpath's table range \(own.tableBase)-\(own.tableBase + own.tableCount - 1) but is not returnpath's; move it or choose another tableBase")
            }
        }
        var current = Current(rules: rules.filter { $0.proto == own.routeProtocol },
                              routes: routes.filter { own.ownsTable($0.table) })
        let netfilter = try netfilterSocket()
        let comment: String?
        do { comment = try netfilter.nftTableComment(family: NftTable.inetFamily, table: NftTable.name) } catch {
            throw .kernel(error.description)
        }
        guard let comment else { return current }
        if let desired, desired.comment == comment, !desired.sets.contains(where: \.interval) {
            // Fast path: same structure, hash sets: read their elements directly.
            var state = NftState(comment: comment, sets: [:], objectCount: desired.objectCount)
            for set in desired.sets {
                do {
                    state.addresses[set.name] = Set(try netfilter.nftSetElements(family: NftTable.inetFamily, table: NftTable.name,
                                                                                set: set.name).compactMap { IPAddress(bytes: $0) })
                } catch { throw .kernel(error.description) }
            }
            current.nft = state
            return current
        }
        let nft = try libnftables()
        do {
            let list = "list table \(NftTable.family) \(NftTable.name)"
            var state = NftState.parse(try nft.run(list, json: true))
            state.comment = comment
            current.nft = state
        } catch {
            throw .kernel("nft list table: \(error.message)")
        }
        return current
    }

    /// nfnetlink, for the table's comment and hash-set elements; also tells whether the kernel has nf_tables.
    private func netfilterSocket() throws(ApplyError) -> NetlinkSocket {
        if let netfilter = netfilterCache { return netfilter }
        do {
            let made = try NetlinkSocket(namespace: namespace, family: 12 /* NETLINK_NETFILTER */)
            netfilterCache = made
            return made
        } catch {
            throw .unsupported("this kernel has no nfnetlink (nf_tables) in \(namespace): \(error)")
        }
    }

    /// libnftables, made when first needed (creating, replacing or deleting the table; interval sets).
    private func libnftables() throws(ApplyError) -> Nftables {
        if let made = nftablesCache { return made }
        let made = try Nftables(namespace: namespace)
        nftablesCache = made
        return made
    }

    /// Forgets what apply recorded about `namespace` (for a namespace about to be deleted with whatever apply left).
    public static func discardRecord(of namespace: NetworkNamespace) {
        guard let router = try? ReturnRouter(namespace: namespace) else { return }
        try? FileManager.default.removeItem(atPath: router.statePath)
    }

    func loadState() -> AppliedState? {
        guard let data = FileManager.default.contents(atPath: statePath) else { return nil }
        return try? JSONDecoder().decode(AppliedState.self, from: data)
    }

    func saveState(_ state: AppliedState) throws(ApplyError) {
        do {
            try FileManager.default.createDirectory(atPath: Self.stateDirectory, withIntermediateDirectories: true)
            try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: statePath), options: .atomic)
        } catch {
            throw .kernel("save \(statePath): \(error)")
        }
    }
}

extension Array {
    func isSorted(by areInIncreasingOrder: (Element, Element) -> Bool) -> Bool {
        indices.dropFirst().allSatisfy { !areInIncreasingOrder(self[$0], self[$0 - 1]) }
    }
}

extension Report {
    mutating func record(_ action: String, _ kind: String, _ object: String, _ command: String) {
        changes.append(Change(action: action, kind: kind, object: object, command: command))
        if action == "add" { added += 1 } else { removed += 1 }
    }
}
