import Foundation
import Netlink
import ReturnRouting
import Testing
@testable import YAMLFile

// The composer (libyaml's events straight into nodes): trees as written, libyaml's refusals in its words at their
// line, explicit keys found wherever they are written, and fuzz mutations of the real documents refused with a line,
// never a crash.

/// A tree as text: plain scalars bare, quoted ones in their quotes, `|`/`>` before block scalars, `!TAG ` before
/// tagged nodes; flow collections in brackets, block ones as seq(…)/map(…); every node followed by @LINE:COLUMN.
private func render(_ node: Node) -> String {
    let tag = node.tag.map { "!\($0) " } ?? ""
    let body: String
    switch node {
    case .scalar(let scalar):
        let text = scalar.string.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\0", with: "\\0")
        switch scalar.style {
        case .plain: body = text
        case .singleQuoted: body = "'\(text)'"
        case .doubleQuoted: body = "\"\(text)\""
        case .literal: body = "|\(text)"
        case .folded: body = ">\(text)"
        }
    case .sequence(let sequence):
        let items = sequence.items.map(render).joined(separator: ", ")
        body = sequence.style == .flow ? "[\(items)]" : "seq(\(items))"
    case .mapping(let mapping):
        let pairs = mapping.pairs.map { "\(render($0.key)): \(render($0.value))" }.joined(separator: ", ")
        body = mapping.style == .flow ? "{\(pairs)}" : "map(\(pairs))"
    }
    return "\(tag)\(body)@\(node.mark.map(\.description) ?? "?")"
}

private func composed(_ text: String) -> Result<String, FileError> {
    Result { () throws(FileError) in render(try YAMLReader(file: "t.yaml").compose(text)) }
}

/// A policy with `count` services split over two interfaces, as `bench apply` writes it.
private func largePolicy(_ count: Int) throws -> (text: String, services: [[IPPrefix]]) {
    var services: [[IPPrefix]] = [[], []]
    var text = """
    apiVersion: returnpath.dev/v1alpha1
    kind: ReturnTrafficPolicy
    metadata:
      name: large
    spec:
      strategy: mark
      interfaces:

    """
    for (index, name) in ["eth1", "eth2"].enumerated() {
        text += "    - name: \(name)\n      gateway: 10.\(index + 1).0.1\n      clients: [192.168.\(index).0/24]\n      services:\n"
        for n in 0..<(count / 2) {
            let address = "10.\(100 + index).\(n / 256).\(n % 256)"
            text += "        - \(address)\n"
            services[index].append(try IPPrefix(parsing: address))
        }
    }
    text += "  exempt: [10.96.0.0/12]\n"
    return (text, services)
}

@Suite struct ComposerTests {
    @Test func aLargePolicyReadsAsItsServices() throws {
        let (text, services) = try largePolicy(10_000)
        let policy = try PolicyFile.parse(text, file: "large.yaml")
        #expect(policy.name == "large")
        #expect(policy.strategy == .mark)
        #expect(policy.interfaces.map(\.name) == ["eth1", "eth2"])
        #expect(policy.interfaces.map(\.services) == services)
        #expect(policy.interfaces.map(\.origin) == ["large.yaml:8", "large.yaml:\(8 + 4 + 5000)"])
        #expect(policy.interfaces.map { $0.clients.map(\.cidr) } == [["192.168.0.0/24"], ["192.168.1.0/24"]])
        #expect(policy.exempt.map(\.cidr) == ["10.96.0.0/12"])
        // An error deep in the list keeps its line.
        let broken = text.replacingOccurrences(of: "- 10.101.19.135\n", with: "- 10.101.19.135/8\n")
        #expect(throws: FileError(file: "large.yaml", line: 8 + 4 + 5000 + 4 + 5000 - 1,
                                  message: "10.101.19.135/8 has host bits set (did you mean 10.0.0.0/8?)")) {
            try PolicyFile.parse(broken, file: "large.yaml")
        }
    }

    @Test func treesAreAsWritten() {
        let cases: [(String, String)] = [
            ("a: 1\nb: [x, 'y']\n", "map(a@1:1: 1@1:4, b@2:1: [x@2:5, 'y'@2:8]@2:4)@1:1"),
            ("- a\n- {k: \"v\"}\n-\n", "seq(a@1:3, {k@2:4: \"v\"@2:7}@2:3, @3:2)@1:1"),
            // An alias is its anchor's node, marks included; a later anchor of the same name shadows the earlier.
            ("a: &x [1, 2]\nb: *x\n", "map(a@1:1: [1@1:8, 2@1:11]@1:4, b@2:1: [1@1:8, 2@1:11]@1:4)@1:1"),
            ("a: &x 1\nb: &x 2\nc: *x\n", "map(a@1:1: 1@1:4, b@2:1: 2@2:4, c@3:1: 2@2:4)@1:1"),
            ("c: |\n  lit\nd: >-\n  fold\n  ed\n", "map(c@1:1: |lit\\n@1:4, d@3:1: >fold ed@3:4)@1:1"),
            ("a: !!str 1\nb: !custom [x]\n", "map(a@1:1: !tag:yaml.org,2002:str 1@1:4, b@2:1: !!custom [x@2:13]@2:4)@1:1"),
            ("a: \"x\\0y\"\n", "map(a@1:1: \"x\\0y\"@1:4)@1:1"),
            // Columns count characters, not bytes.
            ("é: [ü, ß]\n", "map(é@1:1: [ü@1:5, ß@1:8]@1:4)@1:1"),
            ("a:\n", "map(a@1:1: @1:3)@1:1"),
            ("---\n", "@2:1"),
            ("a: x\r\nb: y\r\n", "map(a@1:1: x@1:4, b@2:1: y@2:4)@1:1"),
            // "?" and "*" inside values, comments and tags are text; keys 1 and "1" in different mappings are fine.
            ("a: what? *yes*\nb: [x?, '?'] # ? *c\nc: !<tag:x?y> z\n",
             "map(a@1:1: what? *yes*@1:4, b@2:1: [x?@2:5, '?'@2:9]@2:4, c@3:1: !tag:x?y z@3:4)@1:1"),
            ("- {1: a}\n- {\"1\": b}\n", "seq({1@1:4: a@1:7}@1:3, {\"1\"@2:4: b@2:9}@2:3)@1:1"),
        ]
        for (text, expected) in cases {
            #expect((try? composed(text).get()) == expected, "\(text.debugDescription): \(composed(text))")
        }
        for empty in ["", "# nothing\n", " \n\n"] {
            #expect(throws: FileError(file: "t.yaml", line: nil, message: "the file is empty")) { try composed(empty).get() }
        }
    }

    @Test func refusalsNameTheirLine() {
        let explicit = "explicit keys (\"? KEY\") are not supported; write KEY: VALUE"
        let cases: [(String, Int, String)] = [
            // libyaml's words.
            ("a: [\n", 2, "malformed YAML: while parsing a flow node: did not find expected node content"),
            ("a: b: c\n", 1, "malformed YAML: mapping values are not allowed in this context"),
            ("a: 1\n  b: 2\n", 2, "malformed YAML: mapping values are not allowed in this context"),
            ("a: \"x\n\n", 3, "malformed YAML: while scanning a quoted scalar: found unexpected end of stream"),
            ("a:\n\tb: 1\n", 2, "malformed YAML: while scanning for the next token: found character that cannot start any token"),
            ("%YAML 2.0\n---\na\n", 1, "malformed YAML: found incompatible YAML document"),
            ("a: 1\r\nb: \u{7}\r\n", 2, "malformed YAML: control characters are not allowed (U+0007)"),
            ("a: 1\u{2028}b: \u{0}\n", 2, "malformed YAML: control characters are not allowed (U+0000)"),
            ("x: 1\n---\ny: 2\n", 2, "malformed YAML: expected a single document in the stream: but found another document"),
            // Duplicate keys, at the second one.
            ("a: 1\nb: 2\na: 3\n", 3, "malformed YAML: duplicate key \"a\""),
            ("k:\n  1: a\n  \"1\": b\n", 3, "malformed YAML: duplicate key \"1\""),
            ("{[a, {b: c}]: 1, x: 2,\n [a, {b: c}]: 3}\n", 2, "malformed YAML: duplicate key (a list)"),
            ((0..<40).map { "k\($0): v\n" }.joined() + "k7: again\n", 41, "malformed YAML: duplicate key \"k7\""),
            // Explicit keys, wherever written.
            ("name: x\n? networks\n: {}\n", 2, explicit),
            ("a: {b: 1, ? c: d}\n", 1, explicit),
            ("[? a : b]\n", 1, explicit),
            ("a: [x, y: z, ? u]\n", 1, explicit),
            ("a:\n  - ? b\n    : c\n", 2, explicit),
            ("a: 1 # ?\nb: \"?\"\n? c\n: d\n", 3, explicit),
            ("a: &m\n  ? b\n", 2, explicit),
            ("a:\n  - x\n?\n", 3, explicit),
            // Aliases and anchors.
            ("a: [*nowhere]\n", 1, "undefined alias *nowhere"),
            ("a: &k x\nb: {*k : 1}\n", 2, "an alias (*k) cannot be a mapping key"),
            ("a: &k x\nb: {[*k]: 1}\n", 2, "an alias (*k) cannot be a mapping key"),
        ]
        for (text, line, message) in cases {
            #expect(throws: FileError(file: "t.yaml", line: line, message: message), "\(text.debugDescription)") { try composed(text).get() }
        }
    }

    /// The fuzz suite's mutations of the real documents: each composes, or is refused with a line in the document
    /// (an empty one has none) on one line.
    @Test func mutatedDocumentsAreComposedOrRefusedWithALine() {
        var refused = 0
        for number in 0..<1500 {
            var rng = SeededGenerator(seed: 0x6576_656e_7473 &+ UInt64(number) &* 0x9E37_79B9)
            let source = FuzzCorpus.documents[Int.random(in: 0..<FuzzCorpus.documents.count, using: &rng)]
            let text = String(decoding: Mutator.mutate(source.bytes, using: &rng).bytes, as: UTF8.self)
            var outcome: Result<String, FileError> = .success("")
            onSmallStack { outcome = composed(text) }
            guard case .failure(let error) = outcome else { continue }
            refused += 1
            let lines = text.reduce(1) { $1.isNewline ? $0 + 1 : $0 } + 1
            if error.message == "the file is empty" { continue }
            if let problem = FuzzOracle.descriptionProblem(error, file: "t.yaml", maximumLine: lines) ?? (error.line == nil ? "no line" : nil) {
                Issue.record("case \(number): \(problem): \(error)\n\(text)")
                break
            }
        }
        // Most mutations break the document somewhere; some leave it valid YAML.
        #expect(refused > 150 && refused < 1450, "\(refused) of 1500 refused")
    }
}
