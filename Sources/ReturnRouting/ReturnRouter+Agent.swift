import Netlink

/// What the agent needs beyond apply and remove: how many objects returnpath owns now, read from the kernel.
extension ReturnRouter {
    /// Rules in the policy's band with its protocol, routes in its tables with its protocol, and the objects of the
    /// `inet returnpath` table (sets, chains, rules); no conflict check, nothing changed.
    public func ownedObjectCounts(_ ownership: Ownership) throws(ApplyError) -> [Change.Kind: Int] {
        let state = try readState(ownership, checkConflicts: false)
        return [.rule: state.rules.count, .route: state.routes.count, .nft: state.nft?.objectCount ?? 0]
    }
}
