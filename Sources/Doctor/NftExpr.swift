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
