import Foundation
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
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), let items = root["nftables"]?.array else {
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

/// A JSON value, decoded strictly: a number is never a boolean (JSONSerialization's NSNumber would make 0 and 1
/// look like false and true).
public indirect enum JSONValue: Decodable, Sendable, Hashable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let n = try? c.decode(Int64.self) { self = .integer(n); return }
        if let n = try? c.decode(UInt64.self) { self = .unsigned(n); return }
        if let n = try? c.decode(Double.self) { self = .double(n); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
        self = .object(try c.decode([String: JSONValue].self))
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    var int: Int? {
        switch self {
        case .integer(let n): return Int(exactly: n)
        case .unsigned(let n): return Int(exactly: n)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .integer(let n): return String(n)
        case .unsigned(let n): return String(n)
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\":\(o[$0]?.description ?? "null")" }.joined(separator: ",") + "}"
        }
    }
}

/// An nft expression as the JSON schema writes it.
public indirect enum NftExpr: Sendable, Hashable, CustomStringConvertible {
    case number(UInt64)
    /// A literal: an address, an interface name, a keyword ("local", "original", "tcp"); "@name" is a named set.
    case string(String)
    case bool(Bool)
    /// A JSON array: flag lists (`ct state { established, related }` as ["established", "related"]), map pairs.
    case list([NftExpr])
    /// An anonymous set `{ … }`.
    case set([NftExpr])
    case prefix(address: String, length: Int)
    case range(NftExpr, NftExpr)
    case payload(protocol: String, field: String)
    case meta(String)
    case ct(key: String, direction: String?)
    case fib(result: String, flags: [String])
    /// "&", "|", "^", "<<", ">>".
    case binary(String, NftExpr, NftExpr)
    case map(key: NftExpr, data: NftExpr)
    case concat([NftExpr])
    /// A verdict as data (in a vmap): "accept", "drop", "jump X", "goto X".
    case verdict(String, target: String?)
    /// Anything else, as its JSON text.
    case other(String)

    init(json value: JSONValue) {
        switch value {
        case .integer(let n): self = n >= 0 ? .number(UInt64(n)) : .other(String(n)); return
        case .unsigned(let n): self = .number(n); return
        case .bool(let b): self = .bool(b); return
        case .string(let s): self = .string(s); return
        case .array(let items): self = .list(items.map(NftExpr.init(json:))); return
        case .null, .double: self = .other(value.description); return
        case .object: break
        }
        if let inner = value["set"] { self = .set((inner.array ?? [inner]).map(NftExpr.init(json:))); return }
        if let p = value["prefix"], let address = p["addr"]?.string, let length = p["len"]?.int {
            self = .prefix(address: address, length: length)
            return
        }
        if let r = value["range"]?.array, r.count == 2 { self = .range(NftExpr(json: r[0]), NftExpr(json: r[1])); return }
        if let p = value["payload"], let proto = p["protocol"]?.string, let field = p["field"]?.string {
            self = .payload(protocol: proto, field: field)
            return
        }
        if let key = value["meta"]?["key"]?.string { self = .meta(key); return }
        if let c = value["ct"], let key = c["key"]?.string {
            self = .ct(key: key, direction: c["dir"]?.string)
            return
        }
        if let f = value["fib"], let result = f["result"]?.string {
            self = .fib(result: result, flags: f["flags"]?.array?.compactMap(\.string) ?? f["flags"]?.string.map { [$0] } ?? [])
            return
        }
        for op in ["&", "|", "^", "<<", ">>"] {
            if let operands = value[op]?.array, operands.count >= 2 {
                var folded = NftExpr(json: operands[0])
                for operand in operands.dropFirst() { folded = .binary(op, folded, NftExpr(json: operand)) }
                self = folded
                return
            }
        }
        if let m = value["map"], let key = m["key"], let data = m["data"] {
            self = .map(key: NftExpr(json: key), data: NftExpr(json: data))
            return
        }
        if let c = value["concat"]?.array { self = .concat(c.map(NftExpr.init(json:))); return }
        if let inner = value["elem"]?["val"] { self = NftExpr(json: inner); return }
        let keys = value.object?.keys.map { $0 } ?? []
        for verdict in ["accept", "drop", "return", "continue", "queue", "reject"] where keys.contains(verdict) {
            self = .verdict(verdict, target: nil)
            return
        }
        for verdict in ["jump", "goto"] {
            if let target = value[verdict]?["target"]?.string {
                self = .verdict(verdict, target: target)
                return
            }
        }
        self = .other(value.description)
    }

    /// nft's syntax (marks and masks in hex).
    public var description: String { render(hexNumbers: false) }

    func render(hexNumbers: Bool) -> String {
        switch self {
        case .number(let n): return hexNumbers ? "0x" + String(n, radix: 16) : String(n)
        case .string(let s): return s.hasPrefix("@") || s.allSatisfy({ $0.isNumber || $0 == "." || $0 == ":" || $0.isLetter && $0.isLowercase || $0 == "-" }) ? s : "\"\(s)\""
        case .bool(let b): return b ? "exists" : "missing"
        case .list(let items): return items.map { $0.render(hexNumbers: hexNumbers) }.joined(separator: ",")
        case .set(let items): return "{ " + items.map { $0.render(hexNumbers: hexNumbers) }.joined(separator: ", ") + " }"
        case .prefix(let address, let length): return "\(address)/\(length)"
        case .range(let low, let high): return "\(low.render(hexNumbers: hexNumbers))-\(high.render(hexNumbers: hexNumbers))"
        case .payload(let proto, let field): return "\(proto) \(field)"
        // nft prints these meta keys bare.
        case .meta(let key): return ["iifname", "oifname", "iif", "oif"].contains(key) ? key : "meta \(key)"
        case .ct(let key, let direction): return "ct " + (direction.map { "\($0) " } ?? "") + key
        case .fib(let result, let flags): return "fib \(flags.joined(separator: " . ")) \(result)"
        case .binary(let op, let left, let right):
            let hex = hexNumbers || left.isMark
            return "\(left.render(hexNumbers: hex)) \(op) \(right.render(hexNumbers: hex))"
        case .map(let key, let data): return "\(key.render(hexNumbers: false)) map \(data.render(hexNumbers: true))"
        case .concat(let parts): return parts.map { $0.render(hexNumbers: hexNumbers) }.joined(separator: " . ")
        case .verdict(let verdict, let target): return verdict + (target.map { " \($0)" } ?? "")
        case .other(let json): return json
        }
    }

    /// `meta mark` or `ct mark` (or an operation on one): its numbers read best in hex.
    var isMark: Bool {
        switch self {
        case .meta("mark"), .ct(key: "mark", direction: _): return true
        case .binary(_, let left, _): return left.isMark
        default: return false
        }
    }
}

/// One statement of a rule.
public enum NftStatement: Sendable, Hashable {
    case match(op: String, left: NftExpr, right: NftExpr)
    /// `meta mark set …`, `ct mark set …` (and other keys).
    case mangle(key: NftExpr, value: NftExpr)
    case verdict(String, target: String?)
    case vmap(key: NftExpr, data: NftExpr)
    /// An iptables-nft extension; its parameters come from nfnetlink (`XtExtension`).
    case xt(type: String, name: String)
    /// `dnat to ADDRESS[:PORT]` (nat chains; the first packet of a connection).
    case dnat(address: NftExpr?, port: NftExpr?)
    /// Statements that do not decide a mark or a verdict: counter, log, limit, nat, …
    case passive(String, text: String)
    case unknown(String)

    init(json value: JSONValue) {
        guard let object = value.object, let name = object.keys.first, let body = object[name] else {
            self = .unknown(value.description)
            return
        }
        switch name {
        case "match":
            guard let left = body["left"], let right = body["right"] else { self = .unknown(value.description); return }
            self = .match(op: body["op"]?.string ?? "==", left: NftExpr(json: left), right: NftExpr(json: right))
        case "mangle":
            guard let key = body["key"], let v = body["value"] else { self = .unknown(value.description); return }
            self = .mangle(key: NftExpr(json: key), value: NftExpr(json: v))
        case "accept", "drop", "return", "continue", "queue", "reject":
            self = .verdict(name, target: nil)
        case "jump", "goto":
            self = .verdict(name, target: body["target"]?.string)
        case "vmap":
            guard let key = body["key"], let data = body["data"] else { self = .unknown(value.description); return }
            self = .vmap(key: NftExpr(json: key), data: NftExpr(json: data))
        case "xt":
            self = .xt(type: body["type"]?.string ?? "?", name: body["name"]?.string ?? "?")
        case "dnat":
            self = .dnat(address: body["addr"].map(NftExpr.init(json:)), port: body["port"].map(NftExpr.init(json:)))
        case "counter", "log", "limit", "quota", "notrack", "snat", "masquerade", "redirect", "tproxy", "flow",
             "set", "synproxy", "secmark", "ct helper", "ct timeout", "ct expectation", "dup", "fwd", "last":
            self = .passive(name, text: name)
        default:
            self = .unknown(name)
        }
    }

    /// nft's syntax for the statement.
    public var text: String {
        switch self {
        case .match(let op, let left, let right):
            let hex = left.isMark
            let rightText = right.render(hexNumbers: hex)
            let implicit: Bool
            if case .binary = left { implicit = false } else { implicit = true }
            switch op {
            case "==": return implicit ? "\(left) \(rightText)" : "\(left) == \(rightText)"
            case "in": return "\(left) \(rightText)"
            default: return "\(left) \(op) \(rightText)"
            }
        case .mangle(let key, let value): return "\(key) set \(value.render(hexNumbers: key.isMark))"
        case .verdict(let verdict, let target): return verdict + (target.map { " \($0)" } ?? "")
        case .vmap(let key, let data): return "\(key) vmap \(data)"
        case .xt(let type, let name): return "xt \(type) \(name)"
        case .dnat(let address, let port):
            return "dnat to " + (address?.description ?? "?") + (port.map { ":\($0)" } ?? "")
        case .passive(_, let text): return text
        case .unknown(let name): return "\(name) …"
        }
    }
}
