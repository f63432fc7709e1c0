import YAMLFile

/// `spec.ownership` and `spec.ingress` of a policy file.
enum PolicyOwnershipReader {
    typealias Fields = [(key: String, keyNode: Node, value: Node)]

    static func ownership(_ spec: Fields, _ reader: YAMLReader) throws(FileError) -> Ownership {
        var ownership = Ownership()
        guard let node = reader.value(spec, "ownership") else { return ownership }
        let fields = try reader.entries(node, "spec.ownership", allowed: [
            "priorityBase", "priorityCount", "tableBase", "tableCount", "protocol", "markMask", "allowKubeProxyMarks"])
        func number(_ key: String, _ range: ClosedRange<Int>) throws(FileError) -> Int? {
            guard let n = reader.value(fields, key) else { return nil }
            let text = try reader.string(n, key)
            let value = text.hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text)
            guard let value, range.contains(value) else { throw reader.fail(n, "\(key) \"\(text)\" is not in \(range)") }
            return value
        }
        if let v = try number("priorityBase", 1...Int(UInt32.max)) { ownership.priorityBase = UInt32(v) }
        if let v = try number("priorityCount", 1...1_000_000) { ownership.priorityCount = UInt32(v) }
        if let v = try number("tableBase", 256...Int(UInt32.max)) { ownership.tableBase = UInt32(v) }
        if let v = try number("tableCount", 1...1_000_000) { ownership.tableCount = UInt32(v) }
        if let v = try number("protocol", 5...255) { ownership.proto = UInt8(v) }
        if let v = try number("markMask", 1...Int(UInt32.max)) { ownership.markMask = UInt32(v) }
        if let n = reader.value(fields, "allowKubeProxyMarks") {
            ownership.allowKubeProxyMarks = try boolean(n, "allowKubeProxyMarks", reader)
        }
        return ownership
    }

    static func tracking(_ spec: Fields, _ reader: YAMLReader) throws(FileError) -> Policy.IngressTracking {
        guard let node = reader.value(spec, "ingress") else { return .conntrack }
        let fields = try reader.entries(node, "spec.ingress", allowed: ["tracking"])
        guard let n = reader.value(fields, "tracking") else { return .conntrack }
        let text = try reader.string(n, "spec.ingress.tracking")
        guard let parsed = Policy.IngressTracking(rawValue: text) else {
            throw reader.fail(n, "spec.ingress.tracking \"\(text)\" is not one of conntrack, socket")
        }
        return parsed
    }

    static func boolean(_ node: Node, _ key: String, _ reader: YAMLReader) throws(FileError) -> Bool {
        let text = try reader.string(node, key)
        guard text == "true" || text == "false" else { throw reader.fail(node, "\(key) is true or false") }
        return text == "true"
    }
}
