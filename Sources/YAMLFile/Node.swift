/// A YAML document as the reader composes it (Composer.swift): scalars with their text, tag, style and position;
/// lists; mappings with their pairs in document order. Aliases are resolved (an alias is a copy of its anchor's node),
/// so the tree holds neither anchors nor aliases.
public enum Node: Sendable {
    case scalar(Scalar)
    case sequence(Sequence)
    case mapping(Mapping)

    /// Where a node starts: line and column, both counted from 1.
    public struct Mark: Sendable, Hashable, CustomStringConvertible {
        public var line: Int
        public var column: Int

        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }

        public var description: String { "\(line):\(column)" }
    }

    /// How a list or a mapping is written: indented lines, or brackets.
    public enum CollectionStyle: Sendable, Hashable {
        case block, flow
    }

    public struct Scalar: Sendable {
        public enum Style: Sendable, Hashable {
            case plain, singleQuoted, doubleQuoted, literal, folded
        }

        /// The value, escapes and folding applied. May contain NUL ("\0" in a double-quoted scalar).
        public var string: String
        /// The tag as libyaml resolves it ("!!str" is "tag:yaml.org,2002:str"), or nil when none is written.
        public var tag: String?
        public var style: Style
        public var mark: Mark

        public init(_ string: String, tag: String? = nil, style: Style = .plain, mark: Mark) {
            self.string = string
            self.tag = tag
            self.style = style
            self.mark = mark
        }
    }

    public struct Sequence: Sendable {
        public var items: [Node]
        public var tag: String?
        public var style: CollectionStyle
        public var mark: Mark

        public init(_ items: [Node], tag: String? = nil, style: CollectionStyle = .block, mark: Mark) {
            self.items = items
            self.tag = tag
            self.style = style
            self.mark = mark
        }
    }

    public struct Mapping: Sendable {
        /// In document order; no two keys are equal (the composer refuses duplicates).
        public var pairs: [(key: Node, value: Node)]
        public var tag: String?
        public var style: CollectionStyle
        public var mark: Mark

        public init(_ pairs: [(key: Node, value: Node)], tag: String? = nil, style: CollectionStyle = .block, mark: Mark) {
            self.pairs = pairs
            self.tag = tag
            self.style = style
            self.mark = mark
        }
    }

    public var scalar: Scalar? {
        if case .scalar(let scalar) = self { return scalar }
        return nil
    }

    public var sequence: Sequence? {
        if case .sequence(let sequence) = self { return sequence }
        return nil
    }

    public var mapping: Mapping? {
        if case .mapping(let mapping) = self { return mapping }
        return nil
    }

    /// Where the node starts. Every composed node has one; optional so that `node?.mark?.line` reads as the readers
    /// were written (against Yams' nodes, whose mark was optional).
    public var mark: Mark? {
        switch self {
        case .scalar(let scalar): return scalar.mark
        case .sequence(let sequence): return sequence.mark
        case .mapping(let mapping): return mapping.mark
        }
    }

    public var tag: String? {
        switch self {
        case .scalar(let scalar): return scalar.tag
        case .sequence(let sequence): return sequence.tag
        case .mapping(let mapping): return mapping.tag
        }
    }
}
