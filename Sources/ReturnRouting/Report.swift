/// One change apply made (or would make): what, and the equivalent command.
public struct Change: Sendable, Codable, Equatable {
    public enum Action: String, Sendable, Codable { case add, remove }
    public enum Kind: String, Sendable, Codable { case rule, route, nft, sysctl }

    public var action: Action
    public var kind: Kind
    public var object: String
    public var command: String
}

/// What apply or remove did: counts, each change, warnings.
public struct Report: Sendable, Codable {
    public var added = 0
    public var removed = 0
    public var unchanged = 0
    public var changes: [Change] = []
    public var warnings: [String] = []
    /// How the change meets the node's settings (rp_filter per interface), shown by --dry-run and in JSON.
    public var notes: [String] = []

    public init() {}

    mutating func record(_ action: Change.Action, _ kind: Change.Kind, _ object: String, _ command: String) {
        changes.append(Change(action: action, kind: kind, object: object, command: command))
        if action == .add { added += 1 } else { removed += 1 }
    }
}
