import Foundation
import Netlink
import Yams

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

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Reads YAML documents (topologies, policies) with line numbers at hand: every problem is FILE:LINE: problem.
public struct YAMLReader: Sendable {
    public let file: String

    public init(file: String) { self.file = file }

    /// The document's root; malformed YAML and duplicate keys are errors with their line.
    public func compose(_ text: String) throws(FileError) -> Node {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw FileError(file: file, line: nil, message: "the file is empty")
            }
            return node
        } catch let error as FileError {
            throw error
        } catch let error as YamlError {
            throw FileError(file: file, line: Self.line(of: error, in: text), message: "malformed YAML: \(Self.problem(of: error))")
        } catch {
            throw FileError(file: file, line: nil, message: "malformed YAML: \(error)")
        }
    }

    /// Reads a file from disk as UTF-8 text.
    public static func read(_ path: String) throws(FileError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(file: path, line: nil, message: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw FileError(file: path, line: nil, message: "the file is not UTF-8 text")
        }
        return text
    }

    /// The line of a YAML error (Yams counts from 1). For a duplicate key: the line of its second occurrence.
    static func line(of error: YamlError, in text: String) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        case .duplicatedKeysInMapping(let duplicates, let context):
            if let key = duplicates.first {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                let hits = lines.indices.filter { index in
                    let stripped = lines[index].drop { $0 == " " || $0 == "-" }
                    return stripped.hasPrefix(key + ":") || stripped.hasPrefix("\"\(key)\":")
                }
                if hits.count >= 2 { return hits[1] + 1 }
            }
            return context.mark.line
        default: return nil
        }
    }

    static func problem(of error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
             .composer(let context, let problem, _, _):
            return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
        case .duplicatedKeysInMapping(let duplicates, _):
            return "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", "))"
        default:
            return "\(error)"
        }
    }

    public func fail(_ node: Node?, _ message: String) -> FileError {
        FileError(file: file, line: node?.mark?.line, message: message)
    }

    /// A mapping's entries, with unknown keys refused (naming the ones allowed).
    public func entries(_ node: Node, _ what: String, allowed: [String]? = nil) throws(FileError) -> [(key: String, keyNode: Node, value: Node)] {
        guard let mapping = node.mapping else { throw fail(node, "\(what) must be a mapping") }
        var result: [(String, Node, Node)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string else { throw fail(key, "\(what): keys must be plain names") }
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

    public func string(_ node: Node, _ what: String) throws(FileError) -> String {
        guard let scalar = node.scalar else { throw fail(node, "\(what) must be a single value") }
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
        return Array(sequence)
    }

}
