import FoundationEssentials
import Netlink

/// The node's nftables ruleset as `nft -j list ruleset` describes it (libnftables' JSON schema), reduced to what
/// decides a packet's mark: base chains and their hooks, rules as statements over expressions, named sets and maps.
/// iptables-nft rules are in it too; their `xt` extensions carry what JSON leaves out (`XtExtension`).
public struct NftRuleset: Sendable {
    public struct Table: Sendable, Hashable {
        public var family: String
        public var name: String
        public var comment: String?
    }

    public struct Chain: Sendable, Hashable {
        public var family: String
        public var table: String
        public var name: String
        /// Base chains only: "filter", "route", "nat"; the hook ("prerouting", "output", …) and priority.
        public var type: String?
        public var hook: String?
        public var priority: Int?
        public var policy: String?
        public var isBase: Bool { hook != nil }
        /// "inet returnpath output"
        public var qualifiedName: String { "\(family) \(table) \(name)" }
    }

    /// A named set (elements) or map (element → data).
    public struct Collection: Sendable, Hashable {
        public var family: String
        public var table: String
        public var name: String
        public var elements: [NftExpr]
        /// For maps: the data of each element, in the same order.
        public var data: [NftExpr]?
    }

    public struct Rule: Sendable, Hashable {
        public var family: String
        public var table: String
        public var chain: String
        public var handle: Int
        public var comment: String?
        public var statements: [NftStatement]
        /// The rule as nft prints it (rendered from the statements).
        public var text: String {
            statements.map(\.text).filter { !$0.isEmpty }.joined(separator: " ")
                + (comment.map { " comment \"\($0)\"" } ?? "")
        }
    }

    public var tables: [Table] = []
    public var chains: [Chain] = []
    public var collections: [String: Collection] = [:]
    public var rules: [Rule] = []
    /// The parameters of iptables-nft extensions (MARK, CONNMARK, mark, connmark, conntrack), by rule.
    public var extensions: [String: [XtExtension]] = [:]

    public init() {}

    static func key(_ family: String, _ table: String, _ name: String) -> String { "\(family) \(table) \(name)" }

    public func chain(family: String, table: String, name: String) -> Chain? {
        chains.first { $0.family == family && $0.table == table && $0.name == name }
    }

    public func rules(of chain: Chain) -> [Rule] {
        rules.filter { $0.family == chain.family && $0.table == chain.table && $0.chain == chain.name }
    }

    public func collection(family: String, table: String, name: String) -> Collection? {
        collections[Self.key(family, table, name)]
    }

    /// The xt extensions of a rule, in the order its `xt` statements appear.
    func extensions(of rule: Rule) -> [XtExtension] {
        extensions["\(rule.family) \(rule.table) \(rule.chain) \(rule.handle)"] ?? []
    }

    /// Base chains at `hook` that see packets of `family` (ip or ip6, and inet), in the order the kernel runs them.
    public func baseChains(hook: String, family: AddressFamily = .inet) -> [Chain] {
        let own = family == .inet6 ? "ip6" : "ip"
        return chains.filter { $0.hook == hook && ($0.family == own || $0.family == "inet") }
            .enumerated().sorted { ($0.element.priority ?? 0, $0.offset) < ($1.element.priority ?? 0, $1.offset) }
            .map(\.element)
    }

    /// Parses libnftables' JSON output. Anything not JSON, or not its schema, is an error: an unreadable ruleset
    /// must never look like an empty one.
    public static func parse(json text: String) throws(DoctorError) -> NftRuleset {
        let operation = "read nft -j list ruleset"
        let root: JSONValue
        do { root = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) } catch {
            throw .nftables(operation: operation, message: "libnftables' output is not JSON (\(error)): \(text.prefix(200))")
        }
        guard let items = root["nftables"]?.array else {
            throw .nftables(operation: operation, message: "libnftables' output is not the JSON schema doctor knows: \(text.prefix(200))")
        }
        var ruleset = NftRuleset()
        for item in items {
            if let t = item["table"] {
                guard let family = t["family"]?.string, let name = t["name"]?.string else {
                    throw .nftables(operation: operation, message: "a table without family or name: \(t)")
                }
                ruleset.tables.append(Table(family: family, name: name, comment: t["comment"]?.string))
            } else if let c = item["chain"] {
                guard let family = c["family"]?.string, let table = c["table"]?.string, let name = c["name"]?.string else {
                    throw .nftables(operation: operation, message: "a chain without family, table or name: \(c)")
                }
                ruleset.chains.append(Chain(family: family, table: table, name: name, type: c["type"]?.string,
                                            hook: c["hook"]?.string, priority: c["prio"]?.int, policy: c["policy"]?.string))
            } else if let s = item["set"] ?? item["map"] {
                guard let family = s["family"]?.string, let table = s["table"]?.string, let name = s["name"]?.string else {
                    throw .nftables(operation: operation, message: "a set without family, table or name: \(s)")
                }
                let isMap = item["map"] != nil
                var elements: [NftExpr] = [], data: [NftExpr] = []
                for element in s["elem"]?.array ?? [] {
                    if isMap, let pair = element.array, pair.count == 2 {
                        elements.append(NftExpr(json: pair[0]))
                        data.append(NftExpr(json: pair[1]))
                    } else {
                        elements.append(NftExpr(json: element))
                    }
                }
                ruleset.collections[key(family, table, name)] = Collection(family: family, table: table, name: name,
                                                                            elements: elements, data: isMap ? data : nil)
            } else if let r = item["rule"] {
                guard let family = r["family"]?.string, let table = r["table"]?.string, let chain = r["chain"]?.string,
                      let handle = r["handle"]?.int else {
                    throw .nftables(operation: operation, message: "a rule without family, table, chain or handle: \(r)")
                }
                let statements = (r["expr"]?.array ?? []).map(NftStatement.init(json:))
                ruleset.rules.append(Rule(family: family, table: table, chain: chain, handle: handle,
                                          comment: r["comment"]?.string, statements: statements))
            }
        }
        return ruleset
    }
}
