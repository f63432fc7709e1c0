import CYAML
#if canImport(Glibc)
import Glibc
#endif

// Composes one document from libyaml's events (libyaml-dev, through the CYAML system library) straight into `Node`s,
// refusing hostile input as it goes, so no limit depends on what comes later in the text:
//
// - Lists and mappings nest at most `YAMLReader.maximumDepth` levels. The composer recurses once per level and
//   stops at the first node beyond the limit; libyaml keeps its own nesting on the heap (0.2.5 has no limit of its
//   own), and its look-ahead is bounded (1024 characters for a simple key), so neither the stack nor the heap grows
//   with the nesting of the rest of the text.
// - An alias is a copy of its anchor's node (a value, sharing storage), counted: all aliases together may add
//   `YAMLReader.maximumAliasNodes` nodes, and an alias may not take the nesting beyond the limit. A "billion laughs"
//   stops at its first 100,000 nodes.
// - Keys are plain names in these files: an explicit key ("? KEY") and an alias as (or inside) a key are refused.
//   Keys that are lists or mappings are composed (the readers refuse them with their own message), within a budget
//   of work per line (`lineOverKeyBudget`), and compared for duplicates by their content.
// - Duplicate keys are refused at the second occurrence; keys compare as the readers see them, as strings (1 and
//   "1" are the same key; tags play no part).
//
// libyaml's own refusals (malformed YAML, control characters — NUL among them) keep its words: "malformed YAML: "
// then its context and problem, at the line of its mark.

/// Composes one document safely (see above); every problem is a FileError with the file's name.
struct Composer {
    let file: String

    func compose(_ text: String) throws(FileError) -> Node {
        if text.utf8.count > YAMLReader.maximumBytes {
            throw FileError(file: file, line: nil, message: "the document is larger than \(YAMLReader.maximumSize)")
        }
        // (libyaml asserts that its input is not a null pointer, which an empty buffer may be.)
        if text.utf8.isEmpty { throw FileError(file: file, line: nil, message: "the file is empty") }
        if let line = Self.lineOverKeyBudget(text) {
            throw FileError(file: file, line: line, message: "too many lists or mappings used as keys (\"]:\" or \"}:\"); keys are plain names")
        }
        return try withUTF8(text) { bytes in
            Result { () throws(FileError) in try EventReader(file: file, bytes: bytes).document() }
        }.get()
    }

    static let explicitKeys = "explicit keys (\"? KEY\") are not supported; write KEY: VALUE"
}

/// One pass of libyaml's parser over the text's bytes, composing nodes from its events.
private final class EventReader {
    let file: String
    let bytes: UnsafeBufferPointer<UInt8>
    private let parser: UnsafeMutablePointer<yaml_parser_t>
    /// Whether libyaml could allocate its buffers.
    private let initialized: Bool
    private let event: UnsafeMutablePointer<yaml_event_t>
    private var hasEvent = false
    /// Whether the text has a "?" at all: only then can a key be explicit.
    private let mayHaveExplicitKeys: Bool
    /// The byte offset where the text between events begins: the end of the previous event (the start of a mapping
    /// written without properties, whose event covers the "?" of a pair in a flow list).
    private var betweenEvents = 0
    /// Anchors seen so far (a later anchor of the same name shadows an earlier one).
    private var anchors: [String: Composed] = [:]
    /// Nodes added by aliases so far.
    private var aliasNodes = 0

    /// A node with what aliases to it cost.
    struct Composed {
        var node: Node
        /// Nodes in the tree, aliases expanded.
        var size: Int
        /// Lists and mappings nested in the tree, itself included (0 for a scalar).
        var height: Int
    }

    init(file: String, bytes: UnsafeBufferPointer<UInt8>) {
        self.file = file
        self.bytes = bytes
        mayHaveExplicitKeys = bytes.baseAddress.map { memchr($0, Int32(UInt8(ascii: "?")), bytes.count) != nil } ?? false
        parser = .allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        event = .allocate(capacity: 1)
        event.initialize(to: yaml_event_t())
        initialized = yaml_parser_initialize(parser) == 1
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(parser, bytes.baseAddress, bytes.count)
    }

    deinit {
        if hasEvent { yaml_event_delete(event) }
        yaml_parser_delete(parser)
        event.deinitialize(count: 1)
        event.deallocate()
        parser.deinitialize(count: 1)
        parser.deallocate()
    }

    /// The stream's one document: its root.
    func document() throws(FileError) -> Node {
        guard initialized else { throw FileError(file: file, line: nil, message: "malformed YAML: out of memory") }
        try next()   // the stream's start
        guard try next() == YAML_DOCUMENT_START_EVENT else { throw FileError(file: file, line: nil, message: "the file is empty") }
        let root = try node(try next(), enclosing: 0, inKey: false).node
        try next()   // the document's end
        if try next() != YAML_STREAM_END_EVENT {
            throw FileError(file: file, line: startMark.line,
                            message: "malformed YAML: expected a single document in the stream: but found another document")
        }
        return root
    }

    /// The next event (the previous one released), its type.
    @discardableResult
    private func next() throws(FileError) -> yaml_event_type_t {
        if hasEvent {
            let current = event.pointee
            let unadorned = current.type == YAML_MAPPING_START_EVENT && current.data.mapping_start.anchor == nil
                && current.data.mapping_start.tag == nil
            betweenEvents = Int(unadorned ? current.start_mark.index : current.end_mark.index)
            yaml_event_delete(event)
            hasEvent = false
        }
        guard yaml_parser_parse(parser, event) == 1 else { throw libyamlError() }
        hasEvent = true
        return event.pointee.type
    }

    private var startMark: Node.Mark {
        let mark = event.pointee.start_mark
        return Node.Mark(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private func fail(_ mark: Node.Mark, _ message: String) -> FileError {
        FileError(file: file, line: mark.line, message: message)
    }

    /// The node that starts with the current event (of type `type`). `enclosing`: lists and mappings around it.
    private func node(_ type: yaml_event_type_t, enclosing: Int, inKey: Bool) throws(FileError) -> Composed {
        switch type {
        case YAML_SCALAR_EVENT: return scalar()
        case YAML_SEQUENCE_START_EVENT: return try sequence(enclosing: enclosing, inKey: inKey)
        case YAML_MAPPING_START_EVENT: return try mapping(enclosing: enclosing, inKey: inKey)
        case YAML_ALIAS_EVENT: return try alias(enclosing: enclosing, inKey: inKey)
        default:
            // libyaml's parser gives only node events where a node is expected.
            throw fail(startMark, "malformed YAML: an unexpected event (\(type.rawValue)) where a node belongs")
        }
    }

    private static func text(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    private func scalar() -> Composed {
        let data = event.pointee.data.scalar
        // libyaml hands out UTF-8 (it checked the input); a scalar may contain NUL, so its length counts, not a NUL.
        let string = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
        let style: Node.Scalar.Style
        switch data.style {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: style = .singleQuoted
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: style = .doubleQuoted
        case YAML_LITERAL_SCALAR_STYLE: style = .literal
        case YAML_FOLDED_SCALAR_STYLE: style = .folded
        default: style = .plain
        }
        return anchored(Composed(node: .scalar(.init(string, tag: Self.text(data.tag), style: style, mark: startMark)), size: 1, height: 0),
                        Self.text(data.anchor))
    }

    /// The current event opens a list or a mapping: where (within the depth limit), its tag and its anchor.
    private func opening(enclosing: Int, tag: UnsafeMutablePointer<yaml_char_t>?, anchor: UnsafeMutablePointer<yaml_char_t>?)
        throws(FileError) -> (mark: Node.Mark, tag: String?, anchor: String?) {
        let mark = startMark
        if enclosing + 1 > YAMLReader.maximumDepth {
            throw fail(mark, "lists and mappings nested more than \(YAMLReader.maximumDepth) levels deep")
        }
        return (mark, Self.text(tag), Self.text(anchor))
    }

    /// `composed`, kept under its anchor's name when it has one.
    private func anchored(_ composed: Composed, _ anchor: String?) -> Composed {
        if let anchor { anchors[anchor] = composed }
        return composed
    }

    private func sequence(enclosing: Int, inKey: Bool) throws(FileError) -> Composed {
        let start = event.pointee.data.sequence_start
        let (mark, tag, anchor) = try opening(enclosing: enclosing, tag: start.tag, anchor: start.anchor)
        let style: Node.CollectionStyle = start.style == YAML_FLOW_SEQUENCE_STYLE ? .flow : .block
        var items: [Node] = []
        var size = 1, height = 1
        var type = try next()
        while type != YAML_SEQUENCE_END_EVENT {
            let item = try node(type, enclosing: enclosing + 1, inKey: inKey)
            items.append(item.node)
            size += item.size
            height = max(height, item.height + 1)
            type = try next()
        }
        return anchored(Composed(node: .sequence(.init(items, tag: tag, style: style, mark: mark)), size: size, height: height), anchor)
    }

    private func mapping(enclosing: Int, inKey: Bool) throws(FileError) -> Composed {
        let start = event.pointee.data.mapping_start
        let (mark, tag, anchor) = try opening(enclosing: enclosing, tag: start.tag, anchor: start.anchor)
        let style: Node.CollectionStyle = start.style == YAML_FLOW_MAPPING_STYLE ? .flow : .block
        var pairs: [(key: Node, value: Node)] = []
        var keys = KeySet()
        var size = 1, height = 1
        var type = try next()
        while type != YAML_MAPPING_END_EVENT {
            if mayHaveExplicitKeys, let line = explicitKeyLine() { throw FileError(file: file, line: line, message: Composer.explicitKeys) }
            let key = try node(type, enclosing: enclosing + 1, inKey: true)
            if let duplicate = keys.insert(key.node) {
                throw fail(key.node.mark ?? mark, "malformed YAML: duplicate key \(duplicate)")
            }
            let value = try node(try next(), enclosing: enclosing + 1, inKey: inKey)
            pairs.append((key.node, value.node))
            size += key.size + value.size
            height = max(height, key.height + 1, value.height + 1)
            type = try next()
        }
        return anchored(Composed(node: .mapping(.init(pairs, tag: tag, style: style, mark: mark)), size: size, height: height), anchor)
    }

    private func alias(enclosing: Int, inKey: Bool) throws(FileError) -> Composed {
        let name = Self.text(event.pointee.data.alias.anchor) ?? ""
        let mark = startMark
        if inKey { throw fail(mark, "an alias (*\(name)) cannot be a mapping key") }
        guard let target = anchors[name] else { throw fail(mark, "undefined alias *\(name)") }
        if enclosing + target.height > YAMLReader.maximumDepth {
            throw fail(mark, "alias *\(name) nests lists and mappings more than \(YAMLReader.maximumDepth) levels deep")
        }
        aliasNodes += target.size
        if aliasNodes > YAMLReader.maximumAliasNodes {
            throw fail(mark, "aliases expand the document by more than \(YAMLReader.maximumAliasNodes) nodes (at *\(name))")
        }
        return target
    }

    /// The line of the "?" before the key that starts with the current event, or nil when the key is not explicit.
    /// Between two events libyaml has seen only blanks, line breaks, comments and indicators ("-", ",", ":", "{",
    /// "["; a node's anchor and tag belong to its event), so a "?" there outside a comment is the explicit-key
    /// indicator.
    private func explicitKeyLine() -> Int? {
        var index = betweenEvents
        let end = min(Int(event.pointee.start_mark.index), bytes.count)
        var inComment = false
        while index < end {
            let byte = bytes[index]
            if inComment {
                if Self.lineBreakLength(bytes, at: index) > 0 { inComment = false }
            } else if byte == UInt8(ascii: "#") {
                inComment = true
            } else if byte == UInt8(ascii: "?") {
                return Self.line(at: index, in: bytes)
            }
            index += 1
        }
        return nil
    }

    /// The length of the line break at `index` as libyaml counts them (LF, CR, CR LF, NEL, LS, PS), or 0.
    static func lineBreakLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int {
        func byte(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }
        switch bytes[index] {
        case 0x0A: return 1
        case 0x0D: return byte(1) == 0x0A ? 2 : 1
        case 0xC2: return byte(1) == 0x85 ? 2 : 0
        case 0xE2: return byte(1) == 0x80 && (byte(2) == 0xA8 || byte(2) == 0xA9) ? 3 : 0
        default: return 0
        }
    }

    /// The line (from 1) of the byte at `offset`, counting line breaks as libyaml does.
    static func line(at offset: Int, in bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var line = 1, index = 0
        let end = min(offset, bytes.count)
        while index < end {
            let length = lineBreakLength(bytes, at: index)
            if length > 0 {
                line += 1
                index += length
            } else {
                index += 1
            }
        }
        return line
    }

    /// libyaml's error as a FileError: "malformed YAML: " and its context and problem, at the line of its mark (for
    /// an error of its reader, the line of the byte it names, and the character).
    private func libyamlError() -> FileError {
        let state = parser.pointee
        let problem = state.problem.map { String(cString: $0) } ?? "unknown error"
        switch state.error {
        case YAML_MEMORY_ERROR:
            return FileError(file: file, line: nil, message: "malformed YAML: out of memory")
        case YAML_READER_ERROR:
            var character = ""
            if state.problem_value >= 0 {
                let hex = String(state.problem_value, radix: 16, uppercase: true)
                character = " (U+\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex))"
            }
            return FileError(file: file, line: Self.line(at: Int(state.problem_offset), in: bytes),
                             message: "malformed YAML: \(problem)\(character)")
        default:
            let context = state.context.map { String(cString: $0) }
            let text = [context, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return FileError(file: file, line: Int(state.problem_mark.line) + 1, message: "malformed YAML: \(text)")
        }
    }
}

/// `body` on the text's UTF-8 bytes, in place when the string stores them contiguously (a native string does).
func withUTF8<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
    return Array(text.utf8).withUnsafeBufferPointer(body)
}
