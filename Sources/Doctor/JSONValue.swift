
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
        // Each kind in turn: a decode that fails here is a type mismatch (the value is of another kind), not an
        // error; what is none of them is decoded as an object, whose error is thrown.
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
