import Foundation
import Netlink
import ReturnRouting
import Testing
@testable import YAMLFile
import Yams

// The reader composes documents from libyaml's events (EventComposer) and falls back to Yams' Parser for what it
// refuses. Both ways must give the same tree (strings, tags, styles, marks, anchors) or the same error.

/// The two trees' first difference, or nil.
private func difference(_ a: Node, _ b: Node, at path: String = "") -> String? {
    if a.mark?.line != b.mark?.line || a.mark?.column != b.mark?.column {
        return "\(path): mark \(String(describing: a.mark)) vs \(String(describing: b.mark))"
    }
    if "\(a.tag)" != "\(b.tag)" { return "\(path): tag \(a.tag) vs \(b.tag)" }
    if a.anchor?.rawValue != b.anchor?.rawValue { return "\(path): anchor" }
    switch (a, b) {
    case (.scalar(let x), .scalar(let y)):
        if x.string != y.string { return "\(path): \"\(x.string)\" vs \"\(y.string)\"" }
        if x.style != y.style { return "\(path): style \(x.style) vs \(y.style)" }
        return nil
    case (.sequence(let x), .sequence(let y)):
        if x.count != y.count { return "\(path): \(x.count) vs \(y.count) items" }
        if x.style != y.style { return "\(path): style \(x.style) vs \(y.style)" }
        for (index, (p, q)) in zip(x, y).enumerated() {
            if let found = difference(p, q, at: "\(path)[\(index)]") { return found }
        }
        return nil
    case (.mapping(let x), .mapping(let y)):
        if x.count != y.count { return "\(path): \(x.count) vs \(y.count) pairs" }
        if x.style != y.style { return "\(path): style \(x.style) vs \(y.style)" }
        for (index, (p, q)) in zip(x, y).enumerated() {
            if let found = difference(p.key, q.key, at: "\(path){key \(index)}") { return found }
            if let found = difference(p.value, q.value, at: "\(path){value \(index)}") { return found }
        }
        return nil
    default:
        return "\(path): \(a) vs \(b)"
    }
}

/// Events and Yams' Parser on one text: the first difference, or nil.
private func compareComposers(_ text: String) -> String? {
    let events = Result { () throws(FileError) in try SafeComposer(file: "t.yaml").compose(text) }
    let yams = Result { () throws(FileError) in try SafeComposer(file: "t.yaml", viaYamsParser: true).compose(text) }
    switch (events, yams) {
    case (.success(let a), .success(let b)): return difference(a, b)
    case (.failure(let a), .failure(let b)): return a == b ? nil : "\(a) vs \(b)"
    case (.success, .failure(let b)): return "events accepted, Yams refused: \(b)"
    case (.failure(let a), .success): return "events refused (\(a)), Yams accepted"
    }
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

@Suite struct EventComposerTests {
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
        #expect(compareComposers(text) == nil)
        // An error deep in the list keeps its line.
        let broken = text.replacingOccurrences(of: "- 10.101.19.135\n", with: "- 10.101.19.135/8\n")
        #expect(throws: FileError(file: "large.yaml", line: 8 + 4 + 5000 + 4 + 5000 - 1,
                                  message: "10.101.19.135/8 has host bits set (did you mean 10.0.0.0/8?)")) {
            try PolicyFile.parse(broken, file: "large.yaml")
        }
    }

    @Test func sameTreesAndErrorsAsYamsParser() {
        let documents = [
            "", "# nothing\n", "a: 1\n", "a: 1\na: 2\n", "[a, b]\n--- \nc\n", "a: &x [1, 2]\nb: *x\nc: *x\n",
            "a: 'q'\nb: \"d\"\nc: |\n  lit\nd: >\n  fold\n", "!!str a: !custom b\n? k\n: v\n", "{a: b, c: [d, {e: f}]}\n",
            "a: [\n", "a: b: c\n", "- *undefined\n", "a: \"\\0x\"\n", "&a a: 1\n", "x: !!map {}\n", "%YAML 1.1\n---\na\n",
            String(repeating: "[", count: 70) + String(repeating: "]", count: 70), "{[a]: 1, [a]: 2}\n", "a: b # *c ?d\n",
        ]
        for text in documents { #expect(compareComposers(text) == nil, "\(text)") }
        // The fuzz suite's mutations of the real documents.
        for number in 0..<1500 {
            var rng = SeededGenerator(seed: 0x6576_656e_7473 &+ UInt64(number) &* 0x9E37_79B9)
            let source = FuzzCorpus.documents[Int.random(in: 0..<FuzzCorpus.documents.count, using: &rng)]
            let text = String(decoding: Mutator.mutate(source.bytes, using: &rng).bytes, as: UTF8.self)
            if let problem = compareComposers(text) {
                Issue.record("case \(number): \(problem)\n\(text)")
                break
            }
        }
    }
}
