/// JSON text of plain values, keys sorted, no spaces: what `--json` prints for the benchmarks and `apply`.
/// Values: `String`, `Bool`, integers, `Double` (non-finite ones are `null`, which JSON has no numbers for),
/// arrays of values, `[String: Any]`, `nil` (`Optional.none` is `null`). Anything else is its description, quoted.
public enum JSONText {
    public static func serialize(_ value: Any?) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    static func write(_ value: Any?, into out: inout String) {
        guard let value else { out += "null"; return }
        switch value {
        case let optional as OptionalValue where optional.isNone: out += "null"
        case let text as String: quote(text, into: &out)
        case let flag as Bool: out += flag ? "true" : "false"
        case let number as Int: out += String(number)
        case let number as Int64: out += String(number)
        case let number as Int32: out += String(number)
        case let number as UInt64: out += String(number)
        case let number as UInt32: out += String(number)
        case let number as UInt16: out += String(number)
        case let number as UInt8: out += String(number)
        case let number as Double: out += number.isFinite ? "\(number)" : "null"
        case let object as [String: Any]:
            out += "{"
            for (i, key) in object.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                quote(key, into: &out)
                out += ":"
                write(object[key] ?? nil, into: &out)
            }
            out += "}"
        case let array as [Any]:
            out += "["
            for (i, element) in array.enumerated() {
                if i > 0 { out += "," }
                write(element, into: &out)
            }
            out += "]"
        default: quote("\(value)", into: &out)
        }
    }

    /// A JSON string literal (RFC 8259 escapes).
    public static func quote(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// An `Optional` seen through `Any` (a `[String: Any]` value that is `nil`).
protocol OptionalValue { var isNone: Bool { get } }
extension Optional: OptionalValue { var isNone: Bool { self == nil } }
