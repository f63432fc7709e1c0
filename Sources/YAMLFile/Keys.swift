// Keys: the work keys that are lists or mappings may cost (checked over the raw text before composing), and the set
// of a mapping's keys that finds duplicates. Keys are plain names in these files; such keys are only composed so
// that the readers can refuse them with their own message.

extension Composer {
    /// What keys that are lists or mappings may cost, in nodes compared for duplicates, per document.
    static let keyHashBudget = 1 << 21

    /// The line where the work that keys which are lists or mappings could cost crosses `keyHashBudget`, or nil. With
    /// explicit keys and aliases out of the way, such a key is a flow collection followed by ":" on one line of at
    /// most 1024 characters, so a line costs at most (its "]:" and "}:") × min(its length, 1024) nodes. Counted in
    /// the raw text, quotes and comments included: an over-estimate, never an under-estimate.
    static func lineOverKeyBudget(_ text: String) -> Int? {
        withUTF8(text) { bytes in lineOverKeyBudget(bytes) }
    }

    private static func lineOverKeyBudget(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var total = 0, line = 1, length = 0, closers = 0
        var afterCloser = false   // after "]" or "}" and blanks
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\n"):
                total += closers * min(length, 1024)
                if total > keyHashBudget { return line }
                length = 0
                closers = 0
                afterCloser = false
                line += 1
                continue
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                afterCloser = true
            case UInt8(ascii: ":"):
                if afterCloser { closers += 1 }
                afterCloser = false
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                break
            default:
                afterCloser = false
            }
            length += 1
        }
        total += closers * min(length, 1024)
        return total > keyHashBudget ? line : nil
    }
}

/// A mapping's keys so far, compared as the readers see them: a scalar by its text, a list or a mapping by its
/// content. A handful of keys are compared in a list; a large mapping's in a set.
struct KeySet {
    enum Key: Hashable {
        case scalar(String)
        case collection(String)
    }

    private var few: [Key] = []
    private var many: Set<Key>?

    /// Adds `node`'s key; when an equal key is already there, returns how to name it in the error instead.
    mutating func insert(_ node: Node) -> String? {
        let key: Key
        let name: String
        switch node {
        case .scalar(let scalar):
            key = .scalar(scalar.string)
            name = "\"\(scalar.string)\""
        case .sequence:
            key = .collection(Self.content(node))
            name = "(a list)"
        case .mapping:
            key = .collection(Self.content(node))
            name = "(a mapping)"
        }
        if let inserted = many?.insert(key).inserted { return inserted ? nil : name }
        if few.contains(key) { return name }
        few.append(key)
        if few.count > 16 {
            many = Set(few)
            few = []
        }
        return nil
    }

    /// A node's content as text that two nodes share exactly when their values are equal (styles, tags and marks
    /// aside): each scalar with its length, lists and mappings bracketed.
    static func content(_ node: Node) -> String {
        var text = ""
        func add(_ node: Node) {
            switch node {
            case .scalar(let scalar):
                text += "\(scalar.string.utf8.count):"
                text += scalar.string
            case .sequence(let sequence):
                text += "["
                sequence.items.forEach(add)
                text += "]"
            case .mapping(let mapping):
                text += "{"
                for pair in mapping.pairs {
                    add(pair.key)
                    add(pair.value)
                }
                text += "}"
            }
        }
        add(node)
        return text
    }
}
