#if canImport(Glibc)
import Glibc
#endif
import Namespace
import Netlink

/// A file that cannot be used (a topology, a policy): names the file, the line, and the problem.
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    /// One line, whatever the file held: control characters (a newline, an escape sequence) in the file name or
    /// in a value quoted in the message are shown escaped, never sent to the terminal.
    public var description: String {
        if let line { return "\(Self.printable(file)):\(line): \(Self.printable(message))" }
        return "\(Self.printable(file)): \(Self.printable(message))"
    }

    static func printable(_ text: String) -> String {
        func escaped(_ scalar: Unicode.Scalar) -> Bool {
            (scalar.properties.generalCategory == .control && scalar != "\t") || scalar == "\u{2028}" || scalar == "\u{2029}"
        }
        guard text.unicodeScalars.contains(where: escaped) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case _ where escaped(scalar): result += "\\u{\(String(scalar.value, radix: 16))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

/// Reads YAML documents (topologies, policies) with line numbers at hand: every problem is FILE:LINE: problem.
public struct YAMLReader: Sendable {
    public let file: String

    public init(file: String) { self.file = file }

    /// Documents larger than this are refused before parsing (topologies and policies are a few KiB; a policy that
    /// lists 100,000 services is about 2 MiB).
    public static let maximumBytes = 32 << 20
    static var maximumSize: String { maximumBytes % (1 << 20) == 0 ? "\(maximumBytes >> 20) MiB" : "\(maximumBytes >> 10) KiB" }
    /// Lists and mappings nested deeper than this are refused (the files nest 7 levels).
    public static let maximumDepth = 64
    /// Nodes that aliases may add to a document, all aliases together (a "billion laughs" adds 10^9).
    public static let maximumAliasNodes = 100_000

    /// The document's root; malformed YAML, duplicate keys, nesting deeper than `maximumDepth`, undefined aliases
    /// and aliases that expand too far are errors with their line. Explicit keys ("? KEY") and aliases as keys are
    /// refused (see Composer.swift).
    public func compose(_ text: String) throws(FileError) -> Node {
        try Composer(file: file).compose(text)
    }

    /// Reads a file from disk as UTF-8 text: at most `maximumBytes`, so a device or a pipe that never ends is
    /// refused too.
    public static func read(_ path: String) throws(FileError) -> String {
        let descriptor = try syscall { open(path, O_RDONLY | O_CLOEXEC) }
            .get { FileError(file: path, line: nil, message: "cannot read the file: \($0)") }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = try syscall { chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) } }
                .get { FileError(file: path, line: nil, message: "cannot read the file: \($0)") }
            if count == 0 { break }
            bytes += chunk[..<count]
            if bytes.count > maximumBytes {
                throw FileError(file: path, line: nil, message: "the file is larger than \(maximumSize)")
            }
        }
        return try text(bytes, file: path)
    }

    /// The bytes as UTF-8 text, or an error naming the line of the first byte that is not UTF-8.
    static func text(_ bytes: [UInt8], file: String) throws(FileError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0, line = 1
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar):
                if scalar.count == 1 && scalar.first == UInt8(ascii: "\n") { line += 1 }
                offset += scalar.count
            case .error(let length):
                let shown = bytes[offset..<min(offset + max(length, 1), bytes.count)].map { "0x" + String($0, radix: 16) }
                throw FileError(file: file, line: line, message: "the file is not UTF-8 text (\(shown.joined(separator: " ")) at byte \(offset))")
            case .emptyInput:
                throw FileError(file: file, line: nil, message: "the file is not UTF-8 text")
            }
        }
    }


    public func fail(_ node: Node?, _ message: String) -> FileError {
        FileError(file: file, line: node?.mark?.line, message: message)
    }

    /// A mapping's entries, with unknown keys refused (naming the ones allowed).
    public func entries(_ node: Node, _ what: String, allowed: [String]? = nil) throws(FileError) -> [(key: String, keyNode: Node, value: Node)] {
        guard let mapping = node.mapping else { throw fail(node, "\(what) must be a mapping") }
        var result: [(String, Node, Node)] = []
        for (key, value) in mapping.pairs {
            guard let name = key.scalar?.string else { throw fail(key, "\(what): keys must be plain names") }
            if name.utf8.contains(0) { throw fail(key, "\(what): a key contains a NUL character") }
            if let allowed, !allowed.contains(name) {
                throw fail(key, "unknown key \"\(name)\" in \(what) (allowed: \(allowed.joined(separator: ", ")))")
            }
            result.append((name, key, value))
        }
        return result
    }

    public func value(_ entries: [(key: String, keyNode: Node, value: Node)], _ key: String) -> Node? {
        entries.first { $0.key == key }?.value
    }

    /// A single value. NUL ("\0" in a quoted string) is refused: C calls (inet_pton, paths) would see only the
    /// text before it.
    public func string(_ node: Node, _ what: String) throws(FileError) -> String {
        guard let scalar = node.scalar else { throw fail(node, "\(what) must be a single value") }
        if withUTF8(scalar.string, { $0.contains(0) }) { throw fail(node, "\(what) contains a NUL character") }
        return scalar.string
    }

    public func integer(_ node: Node, _ what: String, range: ClosedRange<Int>) throws(FileError) -> Int {
        let text = try string(node, what)
        guard let n = Int(text), range.contains(n) else {
            throw fail(node, "\(what) \"\(text)\" is not a number in \(range.lowerBound)-\(range.upperBound)")
        }
        return n
    }

    public func prefix(_ node: Node, _ what: String) throws(FileError) -> IPPrefix {
        let text = try string(node, what)
        do { return try IPPrefix(parsing: text) } catch { throw fail(node, "\(what): \(error)") }
    }

    public func address(_ node: Node, _ what: String) throws(FileError) -> IPAddress {
        let text = try string(node, what)
        guard let address = IPAddress(text) else { throw fail(node, "\(what) \"\(text)\" is not an IP address") }
        return address
    }

    public func list(_ node: Node, _ what: String) throws(FileError) -> [Node] {
        guard let sequence = node.sequence else { throw fail(node, "\(what) must be a list") }
        return sequence.items
    }

}
