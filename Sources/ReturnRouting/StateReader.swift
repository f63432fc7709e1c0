import Netlink

/// What of ours is in the namespace now: rules and routes under the ownership in use, those still held under
/// ownerships being left, and the nftables table.
struct CurrentState {
    var rules: [Rule]
    var routes: [Route]
    /// Objects of a retiring ownership that the current one does not own: deleted after the new ones are in place.
    var leftoverRules: [Rule] = []
    var leftoverRoutes: [Route] = []
    var nft: CurrentTable?
}

/// The `inet returnpath` table as nfnetlink shows it.
struct CurrentTable {
    var chains: [String]
    var rules: [NetlinkSocket.NftRuleInfo]
    var sets: [NetlinkSocket.NftSetInfo]
    /// Elements of the desired sets that exist with the desired kind: hash sets read over nfnetlink…
    var addresses: [String: Set<IPAddress>] = [:]
    /// …and interval sets' intervals (start and end elements), also over nfnetlink.
    var intervals: [String: [NftInterval]] = [:]
    /// Whether chains, rules (by their comments) and sets are exactly the desired structure.
    var matches = false

    var objectCount: Int { chains.count + rules.count + sets.count }
}

extension ReturnRouter {
    /// Reads rules, routes and the nft table. A foreign rule in our band or a foreign route in our tables is a
    /// conflict (when `checkConflicts`). A rule is ours only with our protocol *and* in our band; a route only with
    /// our protocol *and* in our table range: nothing else is ever touched.
    func readState(_ own: Ownership, retiring: [Ownership] = [], desired: NftTable? = nil,
                   checkConflicts: Bool = true) throws(ApplyError) -> CurrentState {
        let allRules: [Rule], allRoutes: [Route]
        do {
            allRules = try socket.rules(family: .unspecified)
            // One dump of every route per family: a foreign route anywhere in our range is a conflict, and the
            // kernel can only filter by a single table.
            allRoutes = try socket.routes(family: .inet) + socket.routes(family: .inet6)
        } catch { throw .netlink(error) }
        if checkConflicts {
            if let foreign = allRules.first(where: { own.ownsPriority($0.priority ?? 0) && !own.owns($0) }) {
                throw .conflict("rule \"\(foreign)\" is inside returnpath's priority band \(own.priorityBase)-\(own.priorityBase + own.priorityCount - 1) but is not returnpath's; move it or choose another priorityBase")
            }
            if let foreign = allRoutes.first(where: { own.ownsTable($0.table) && !own.owns($0) }) {
                throw .conflict("route \"\(foreign)\" is inside returnpath's table range \(own.tableBase)-\(own.tableBase + own.tableCount - 1) but is not returnpath's; move it or choose another tableBase")
            }
        }
        let others = retiring.filter { $0 != own }
        var state = CurrentState(rules: allRules.filter(own.owns), routes: allRoutes.filter(own.owns))
        if !others.isEmpty {
            state.leftoverRules = allRules.filter { rule in !own.owns(rule) && others.contains { $0.owns(rule) } }
            state.leftoverRoutes = allRoutes.filter { route in !own.owns(route) && others.contains { $0.owns(route) } }
        }
        state.nft = try readTable(desired: desired)
        return state
    }

    /// The table over nfnetlink; nil when there is none.
    func readTable(desired: NftTable?) throws(ApplyError) -> CurrentTable? {
        let netfilter = try netfilterSocket()
        let family = NftTable.inetFamily, name = NftTable.name
        var table: CurrentTable
        do {
            guard try netfilter.nftTableComment(family: family, table: name) != nil else { return nil }
            table = CurrentTable(chains: try netfilter.nftChains(family: family, table: name),
                                 rules: try netfilter.nftRules(family: family, table: name),
                                 sets: try netfilter.nftSets(family: family, table: name).filter { !$0.isAnonymous })
        } catch { throw .netlink(error) }
        guard let desired else { return table }
        for set in desired.sets where table.sets.contains(where: { $0.name == set.name && $0.isInterval == set.interval }) {
            do {
                if set.interval {
                    table.intervals[set.name] = NftInterval.intervals(
                        try netfilter.nftSetElementsWithFlags(family: family, table: name, set: set.name))
                } else {
                    table.addresses[set.name] = Set(try netfilter.nftSetElements(family: family, table: name, set: set.name)
                        .compactMap { IPAddress(bytes: $0) })
                }
            } catch { throw .netlink(error) }
        }
        let comment = desired.ruleComment
        table.matches = Set(table.chains) == Set(desired.chains.map(\.name))
            && table.rules.allSatisfy { $0.comment == comment }
            && desired.chains.allSatisfy { chain in table.rules.filter { $0.chain == chain.name }.count == chain.rules.count }
            && table.sets.count == desired.sets.count
            && desired.sets.allSatisfy { set in table.sets.contains { $0.name == set.name && $0.isInterval == set.interval } }
        return table
    }
}

extension Ownership {
    /// Ours: our protocol and inside our band.
    func owns(_ rule: Rule) -> Bool { rule.proto == routeProtocol && ownsPriority(rule.priority ?? 0) }
    /// Ours: our protocol and inside our table range.
    func owns(_ route: Route) -> Bool { route.proto == routeProtocol && ownsTable(route.table) }
}
