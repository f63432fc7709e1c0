import CYaml
import Yams

// Yams' Parser composes a document by wrapping every libyaml event in a class, decoding every scalar through
// Foundation's `String(bytes:encoding:)`, and keeping each node's anchor in a dictionary: at 10,000 services that was
// most of the time `apply` spent reading its policy. This composer reads the same libyaml events into the same Yams
// nodes (strings, tags, styles, marks and anchors as Yams' Parser makes them) with none of that overhead.
//
// It only handles documents Yams would accept: on any libyaml error, a duplicate key, an alias, or a second
// document it gives up (`nil`), and the caller runs Yams' own Parser on the same text, so every refusal and its
// message stay exactly Yams'.

/// Composes a document from libyaml's events into Yams nodes; see above.
final class EventComposer {
    /// The root (nil for an empty stream) and the anchors the tree's nodes refer to: Yams' nodes hold anchors weakly,
    /// so the caller keeps `anchors` alive as long as it reads them. Nil when Yams' Parser must decide.
    static func compose(_ text: String) -> (root: Node?, anchors: [Anchor])? {
        guard marksByLayout else { return nil }
        if let result = text.utf8.withContiguousStorageIfAvailable({ bytes in EventComposer(bytes).run() }) {
            return result
        }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { EventComposer($0).run() }
    }

    /// Whether a Yams `Mark` is laid out as two Ints, line then column (Mark has no public initializer). Checked once;
    /// when it is not, every document goes through Yams' Parser.
    static let marksByLayout: Bool = {
        guard MemoryLayout<Mark>.size == MemoryLayout<MarkLayout>.size,
              MemoryLayout<Mark>.alignment == MemoryLayout<MarkLayout>.alignment else { return false }
        let mark = unsafeBitCast(MarkLayout(line: 3, column: 5), to: Mark.self)
        return mark.line == 3 && mark.column == 5
    }()

    private struct MarkLayout {
        var line: Int
        var column: Int
    }

    /// Any reason to let Yams' Parser decide.
    private struct GiveUp: Error {}

    private let parser: UnsafeMutablePointer<yaml_parser_t>
    private let event: UnsafeMutablePointer<yaml_event_t>
    private var hasEvent = false
    private var anchors: [Anchor] = []
    private let resolver = Resolver.basic
    private let constructor = Constructor.default

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        parser = .allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        event = .allocate(capacity: 1)
        event.initialize(to: yaml_event_t())
        yaml_parser_initialize(parser)
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

    /// As Yams' `Parser(yaml:…)` then `singleRoot()`.
    private func run() -> (root: Node?, anchors: [Anchor])? {
        do {
            guard try next() == YAML_STREAM_START_EVENT else { return nil }
            guard parser.pointee.stream_end_produced == 0, try next() != YAML_STREAM_END_EVENT else { return (nil, anchors) }
            let root = try node(try next())
            try next()   // the document's end
            guard try next() == YAML_STREAM_END_EVENT else { return nil }
            return (root, anchors)
        } catch {
            return nil
        }
    }

    /// The next event (the previous one released), its type.
    @discardableResult
    private func next() throws(GiveUp) -> yaml_event_type_t {
        if hasEvent {
            yaml_event_delete(event)
            hasEvent = false
        }
        guard yaml_parser_parse(parser, event) == 1 else { throw GiveUp() }
        hasEvent = true
        return event.pointee.type
    }

    /// The node that starts with the current event (of type `type`).
    private func node(_ type: yaml_event_type_t) throws(GiveUp) -> Node {
        switch type {
        case YAML_SCALAR_EVENT: return try scalar()
        case YAML_SEQUENCE_START_EVENT: return try sequence()
        case YAML_MAPPING_START_EVENT: return try mapping()
        default: throw GiveUp()   // an alias (the reader hides them), or an event out of place
        }
    }

    private var startMark: Mark {
        let mark = event.pointee.start_mark
        return unsafeBitCast(MarkLayout(line: Int(mark.line) + 1, column: Int(mark.column) + 1), to: Mark.self)
    }

    private func makeAnchor(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> Anchor? {
        guard let name = Self.string(pointer) else { return nil }
        let anchor = Anchor(stringLiteral: name)
        anchors.append(anchor)
        return anchor
    }

    private func makeTag(_ name: String?) -> Tag {
        Tag(name.map(Tag.Name.init(rawValue:)) ?? .implicit, resolver, constructor)
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        return String.decodeCString(pointer, as: UTF8.self, repairingInvalidCodeUnits: true)?.result
    }

    private func scalar() throws(GiveUp) -> Node {
        let data = event.pointee.data.scalar
        guard let style = Node.Scalar.Style(rawValue: numericCast(data.style.rawValue)) else { throw GiveUp() }
        // libyaml hands out UTF-8 (it checked the input); a scalar may contain NUL.
        let value = String(decoding: UnsafeBufferPointer(start: data.value, count: data.length), as: UTF8.self)
        let tagName = data.quoted_implicit == 1 ? Tag.Name.str.rawValue : Self.string(data.tag)
        return .scalar(.init(value, makeTag(tagName), style, startMark, makeAnchor(data.anchor)))
    }

    private func sequence() throws(GiveUp) -> Node {
        let start = event.pointee.data.sequence_start
        let tag = makeTag(start.implicit != 0 ? nil : Self.string(start.tag))
        let mark = startMark
        let anchor = makeAnchor(start.anchor)
        var items: [Node] = []
        var type = try next()
        while type != YAML_SEQUENCE_END_EVENT {
            items.append(try node(type))
            type = try next()
        }
        // Yams takes the style from the end event (whose data is zeroed): the same here.
        guard let style = Node.Sequence.Style(rawValue: numericCast(event.pointee.data.sequence_start.style.rawValue)) else { throw GiveUp() }
        return .sequence(.init(items, tag, style, mark, anchor))
    }

    private func mapping() throws(GiveUp) -> Node {
        let start = event.pointee.data.mapping_start
        let tag = makeTag(start.implicit != 0 ? nil : Self.string(start.tag))
        let mark = startMark
        let anchor = makeAnchor(start.anchor)
        var pairs: [(Node, Node)] = []
        var keys = Set<Node>()
        var type = try next()
        while type != YAML_MAPPING_END_EVENT {
            let key = try node(type)
            let value = try node(try next())
            // Yams refuses duplicate keys (hashing them as here); it says which.
            guard keys.insert(key).inserted else { throw GiveUp() }
            pairs.append((key, value))
            type = try next()
        }
        guard let style = Node.Mapping.Style(rawValue: numericCast(event.pointee.data.mapping_start.style.rawValue)) else { throw GiveUp() }
        return .mapping(.init(pairs, tag, style, mark, anchor))
    }
}
