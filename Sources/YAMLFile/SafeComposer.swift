#if canImport(Glibc)
import Glibc
#endif
import Yams

// Yams composes a document into a tree with a few weaknesses against hostile input, each measured in a debug build:
//
// - Its composer recurses once per nesting level. libyaml stops at about 1000 levels (more on one line, where its
//   1024-character look-ahead hides closing brackets from the check), and 999 levels need more than 512 KiB of
//   stack: a thread with a small stack crashes (SIGSEGV).
// - It checks every mapping for duplicate keys by hashing the keys whole. A key that is an alias of a "billion
//   laughs" structure is hashed through all its 10^9 nodes (hangs), and 990 nested explicit keys ("? ? ? …") over a
//   list of 100,000 scalars take 71 s.
// - An alias is the anchored node itself, so a reader walking the tree walks every expansion: 3000 hosts sharing a
//   300-route list are 900,000 routes to validate and keep.
//
// - Nested mappings used as keys ("{{{x: 1}: 1}: 1}: 1", 60 levels on each line of a 1 MiB file) take 26 s
//   (13 s in a release build, at 200 levels) for the same reason.
//
// So the reader never gives Yams an alias or an explicit key, nor more keys that are lists or mappings than it
// hashes in about a second (`lineOverKeyBudget`). Every "*" and "?" of the text is replaced by a character the
// text does not contain (one character for one, so lines and columns stay); the result is composed on a thread
// with a stack of its own; the tree is then rebuilt here: stand-ins back to "*" and "?", aliases resolved to their
// anchors within a budget of nodes, nesting limited to `YAMLReader.maximumDepth`. Keys are plain names in these
// files, so a document that uses "?" as an explicit key, or an alias as a key, is refused; so is one with "*" or
// "?" inside a tag (as malformed YAML: the stand-in is not a URI character).

/// The two stand-ins for "*" and "?" in one document.
struct Markers {
    let star: Unicode.Scalar
    let question: Unicode.Scalar

    /// Two characters that `text` does not contain, or nil when the text has neither "*" nor "?" — or uses every
    /// candidate (then the document is refused: "too many distinct characters"). Private-use characters first; then
    /// any other character that can start a plain scalar.
    init?(for text: String) {
        var needed = false
        var used = Set<UInt32>()
        for scalar in text.unicodeScalars {
            if scalar == "*" || scalar == "?" { needed = true }
            if scalar.value >= 0xA1 { used.insert(scalar.value) }
        }
        guard needed else { return nil }
        let candidates = [0xE000...0xF8FF, 0xF0000...0xFFFFD, 0x100000...0x10FFFD, 0xA1...0xD7FF, 0xF900...0xFFFD]
            .lazy.flatMap { $0 }
            .filter { value in ![0x2028, 0x2029, 0xFEFF].contains(value) && !used.contains(UInt32(value)) }
            .compactMap { Unicode.Scalar(UInt32($0)) }
            .prefix(2)
        let free = Array(candidates)
        guard free.count == 2 else { return nil }
        star = free[0]
        question = free[1]
    }

    func hide(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            result.append(scalar == "*" ? star : scalar == "?" ? question : scalar)
        }
        return String(result)
    }

    func reveal(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == star || $0 == question }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            result.append(scalar == star ? "*" : scalar == question ? "?" : scalar)
        }
        return String(result)
    }
}

/// Composes one document safely (see above); every problem is a FileError with the file's name.
struct SafeComposer {
    let file: String
    /// Compose with Yams' Parser only, not from libyaml's events first (the tests compare the two).
    var viaYamsParser = false

    func compose(_ text: String) throws(FileError) -> Node {
        if text.utf8.count > YAMLReader.maximumBytes {
            throw FileError(file: file, line: nil, message: "the document is larger than \(YAMLReader.maximumSize)")
        }
        if let line = Self.lineOverKeyBudget(text) {
            throw FileError(file: file, line: line, message: "too many lists or mappings used as keys (\"]:\" or \"}:\"); keys are plain names")
        }
        // "*" and "?" are ASCII: a byte scan finds them (most documents have neither, and need no stand-ins).
        let starOrQuestion = withUTF8(text) { $0.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") } }
        let markers = starOrQuestion ? Markers(for: text) : nil
        if markers == nil && starOrQuestion {
            throw FileError(file: file, line: nil, message: "the document uses too many distinct characters")
        }
        let hidden = markers.map { $0.hide(text) } ?? text
        let outcome = Box<Result<Node, FileError>>()
        let rc = onLargeStack {
            outcome.value = Result { () throws(FileError) in try composeHidden(hidden, original: text, markers: markers) }
        }
        guard rc == 0 else {
            throw FileError(file: file, line: nil, message: "cannot start a thread to read it: \(String(cString: strerror(rc)))")
        }
        guard let result = outcome.value else { throw FileError(file: file, line: nil, message: "the reader ended without a result") }
        return try result.get()
    }

    /// What Yams may spend hashing keys that are lists or mappings, in nodes (about a second in a debug build).
    static let keyHashBudget = 1 << 21

    /// The line where the work Yams could spend hashing keys that are lists or mappings crosses `keyHashBudget`,
    /// or nil. With explicit keys and aliases out of the way, such a key is a flow collection followed by ":" on one
    /// line of at most 1024 characters, so a line costs at most (its "]:" and "}:") × min(its length, 1024) nodes.
    /// Counted in the raw text, quotes and comments included: an over-estimate, never an under-estimate. Nested
    /// mappings as keys made Yams take 13 s (release) and 68 s (debug) for 1 MiB.
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

    static let explicitKeys = "explicit keys (\"? KEY\") are not supported; write KEY: VALUE"

    /// The first line, up to `limit`, that begins (after indentation and list dashes) with an explicit key.
    static func explicitKeyLine(in text: String, upTo limit: Int) -> Int? {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).prefix(limit).enumerated() {
            var rest = line.drop { $0 == " " || $0 == "\t" }
            while rest.hasPrefix("- ") { rest = rest.dropFirst(2).drop { $0 == " " || $0 == "\t" } }
            if rest == "?" || rest.hasPrefix("? ") || rest.hasPrefix("?\t") { return index + 1 }
        }
        return nil
    }

    /// On the large stack: Yams, then the rebuild. The intermediate tree (up to libyaml's ~1000 levels) is released
    /// here too, so the caller only ever holds trees of at most `maximumDepth` levels.
    private func composeHidden(_ hidden: String, original: String, markers: Markers?) throws(FileError) -> Node {
        // The fast way first (libyaml's events straight into nodes); Yams' Parser for what it refuses, which then
        // refuses it with Yams' own message.
        if !viaYamsParser, let composed = EventComposer.compose(hidden) {
            // Anchors are weak references in Yams' nodes; `composed.anchors` keeps them alive until the rebuild is done.
            defer { withExtendedLifetime(composed.anchors) {} }
            guard let root = composed.root else { throw FileError(file: file, line: nil, message: "the file is empty") }
            var rebuilder = Rebuilder(file: file, markers: markers)
            return try rebuilder.rebuild(root, enclosing: 0, inKey: false).node
        }
        let parser: Parser
        let root: Node?
        do {
            parser = try Parser(yaml: hidden, resolver: .basic, constructor: .default, encoding: .utf8)
            root = try parser.singleRoot()
        } catch let error as YamlError {
            let converted = YAMLReader.fileError(error, file: file, text: original, composed: hidden, markers: markers)
            // An explicit key is a plain scalar to Yams here, which usually makes the document malformed: say why.
            if markers != nil, let line = converted.line, let keyLine = Self.explicitKeyLine(in: original, upTo: line) {
                throw FileError(file: file, line: keyLine, message: Self.explicitKeys)
            }
            throw converted
        } catch {
            throw FileError(file: file, line: nil, message: "malformed YAML: \(markers?.reveal("\(error)") ?? "\(error)")")
        }
        // Anchors are weak references in Yams' nodes; the parser keeps them alive until the rebuild is done.
        defer { withExtendedLifetime(parser) {} }
        guard let root else { throw FileError(file: file, line: nil, message: "the file is empty") }
        var rebuilder = Rebuilder(file: file, markers: markers)
        return try rebuilder.rebuild(root, enclosing: 0, inKey: false).node
    }
}

/// Rebuilds a composed tree: markers back to "*" and "?", aliases resolved, nesting and expansion bounded.
struct Rebuilder {
    let file: String
    let markers: Markers?
    /// Anchors seen so far, in document order (a later anchor of the same name shadows an earlier one).
    private var anchors: [String: Rebuilt] = [:]
    /// Nodes added by aliases so far.
    private var aliasNodes = 0

    init(file: String, markers: Markers?) {
        self.file = file
        self.markers = markers
    }

    struct Rebuilt {
        var node: Node
        /// Nodes in the tree, aliases expanded.
        var size: Int
        /// Lists and mappings nested in the tree, itself included (0 for a scalar).
        var height: Int
        /// Whether `node` differs from the node it was rebuilt from.
        var changed: Bool
    }

    private func fail(_ node: Node, _ message: String) -> FileError {
        FileError(file: file, line: node.mark?.line, message: message)
    }

    /// `enclosing`: lists and mappings around `node`.
    mutating func rebuild(_ node: Node, enclosing: Int, inKey: Bool) throws(FileError) -> Rebuilt {
        var rebuilt: Rebuilt
        switch node {
        case .scalar(let scalar):
            if let markers, scalar.style == .plain, let first = scalar.string.unicodeScalars.first {
                if first == markers.star { return try alias(node, scalar, enclosing: enclosing, inKey: inKey) }
                let next = scalar.string.unicodeScalars.dropFirst().first
                if first == markers.question && (next == nil || next == " " || next == "\t") {
                    throw fail(node, SafeComposer.explicitKeys)
                }
            }
            let string = markers?.reveal(scalar.string) ?? scalar.string
            if string == scalar.string {
                rebuilt = Rebuilt(node: node, size: 1, height: 0, changed: false)
            } else {
                rebuilt = Rebuilt(node: .scalar(.init(string, scalar.tag, scalar.style, scalar.mark)), size: 1, height: 0, changed: true)
            }
        case .sequence(let sequence):
            try checkDepth(node, enclosing: enclosing)
            // A new list only from the first child that changed (most documents change none).
            var items: [Node]?
            var size = 1, height = 1, index = 0
            for item in sequence {
                let child = try rebuild(item, enclosing: enclosing + 1, inKey: inKey)
                if child.changed && items == nil {
                    var copied = Array(sequence.prefix(index))
                    copied.reserveCapacity(sequence.count)
                    items = copied
                }
                items?.append(child.node)
                size += child.size
                height = max(height, child.height + 1)
                index += 1
            }
            let changed = items != nil
            let result: Node = if let items { .sequence(.init(items, sequence.tag, sequence.style, sequence.mark)) } else { node }
            rebuilt = Rebuilt(node: result, size: size, height: height, changed: changed)
        case .mapping(let mapping):
            try checkDepth(node, enclosing: enclosing)
            var pairs: [(Node, Node)]?
            var size = 1, height = 1, index = 0
            for (key, value) in mapping {
                let newKey = try rebuild(key, enclosing: enclosing + 1, inKey: true)
                let newValue = try rebuild(value, enclosing: enclosing + 1, inKey: inKey)
                if (newKey.changed || newValue.changed) && pairs == nil {
                    var copied = mapping.prefix(index).map { ($0.key, $0.value) }
                    copied.reserveCapacity(mapping.count)
                    pairs = copied
                }
                pairs?.append((newKey.node, newValue.node))
                size += newKey.size + newValue.size
                height = max(height, newKey.height + 1, newValue.height + 1)
                index += 1
            }
            let changed = pairs != nil
            let result: Node = if let pairs { .mapping(.init(pairs, mapping.tag, mapping.style, mapping.mark)) } else { node }
            rebuilt = Rebuilt(node: result, size: size, height: height, changed: changed)
        case .alias:
            // Yams' composer resolves aliases itself and never produces this case; it gets no alias here anyway.
            throw fail(node, "unexpected alias")
        }
        if let anchor = node.anchor?.rawValue { anchors[anchor] = rebuilt }
        return rebuilt
    }

    private func checkDepth(_ node: Node, enclosing: Int) throws(FileError) {
        if enclosing + 1 > YAMLReader.maximumDepth {
            throw fail(node, "lists and mappings nested more than \(YAMLReader.maximumDepth) levels deep")
        }
    }

    /// A plain scalar that began with "*": an alias in the original text.
    private mutating func alias(_ node: Node, _ scalar: Node.Scalar, enclosing: Int, inKey: Bool) throws(FileError) -> Rebuilt {
        let name = String(String.UnicodeScalarView(scalar.string.unicodeScalars.dropFirst()))
        let allowed = name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }
        guard !name.isEmpty, allowed else {
            throw fail(node, "malformed alias \"*\(markers?.reveal(name) ?? name)\" (an alias is *NAME: letters, digits, - and _)")
        }
        if inKey { throw fail(node, "an alias (*\(name)) cannot be a mapping key") }
        // (A tag on an alias is ignored: Yams resolves tags in place, so an explicit one cannot be told apart.)
        if node.anchor != nil { throw fail(node, "an alias (*\(name)) cannot have an anchor") }
        guard let target = anchors[name] else { throw fail(node, "undefined alias *\(name)") }
        if enclosing + target.height > YAMLReader.maximumDepth {
            throw fail(node, "alias *\(name) nests lists and mappings more than \(YAMLReader.maximumDepth) levels deep")
        }
        aliasNodes += target.size
        if aliasNodes > YAMLReader.maximumAliasNodes {
            throw fail(node, "aliases expand the document by more than \(YAMLReader.maximumAliasNodes) nodes (at *\(name))")
        }
        return Rebuilt(node: target.node, size: target.size, height: target.height, changed: true)
    }
}

/// `body` on the text's UTF-8 bytes, in place when the string stores them contiguously (a native string does).
func withUTF8<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
    return Array(text.utf8).withUnsafeBufferPointer(body)
}

/// A value written on one thread and read on another after pthread_join.
private final class Box<T>: @unchecked Sendable {
    var value: T?
}

/// The stack for composing: libyaml's nesting limit (about 1000 levels, up to ~1500 on one line) times Yams' frames
/// (under 1 KiB a level in a debug build), with room to spare.
let composerStackSize = 16 << 20

/// Runs `body` on a new thread with a `composerStackSize` stack and waits for it; returns pthread_create's error.
private func onLargeStack(_ body: () -> Void) -> Int32 {
    withoutActuallyEscaping(body) { body in
        let work = Unmanaged.passRetained(StackWork(body))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, composerStackSize)
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, stackWorkMain, work.toOpaque())
        guard rc == 0 else {
            work.release()
            return rc
        }
        pthread_join(thread, nil)
        return 0
    }
}

private func stackWorkMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let raw else { return nil }
    Unmanaged<StackWork>.fromOpaque(raw).takeRetainedValue().run()
    return nil
}

/// The closure handed to the thread; pthread_join orders everything it wrote before the caller reads it.
private final class StackWork: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
