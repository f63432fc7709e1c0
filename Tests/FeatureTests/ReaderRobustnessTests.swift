import Foundation
@testable import Lab
import Netlink
import ReturnRouting
import Testing
@testable import YAMLFile

// Regression tests for what the fuzz tests (ParserFuzzTests) and their hostile corpus found in the readers. Each
// names what the reader did before its fix.

private let policyHead = "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n"

/// Both readers' outcome for `text`: nil when accepted, else the error. Run on a 512 KiB stack.
private func refusals(_ text: String) -> (topology: FileError?, policy: FileError?) {
    var result: (FileError?, FileError?) = (nil, nil)
    onSmallStack {
        do throws(FileError) { _ = try TopologyFile.parse(text, file: "t.yaml") } catch { result.0 = error }
        do throws(FileError) { _ = try PolicyFile.parse(text, file: "t.yaml") } catch { result.1 = error }
    }
    return result
}

/// Asserts both readers refuse `text` at `line` with a message containing `message`, within `seconds`.
private func expectRefused(_ text: String, line: Int?, _ message: String, within seconds: Double = 5,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    let start = Date()
    let (topology, policy) = refusals(text)
    let elapsed = Date().timeIntervalSince(start)
    #expect(elapsed < seconds, "took \(elapsed) s", sourceLocation: sourceLocation)
    for error in [topology, policy] {
        #expect(error?.line == line, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))", sourceLocation: sourceLocation)
    }
}

private func laughs(levels: Int) -> String {
    var text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in 1..<levels {
        text += "l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ") + "]\n"
    }
    return text
}

struct ReaderRobustnessTests {
    /// Was: SIGSEGV. Yams recurses once per level and libyaml allows ~1000 levels; 999 need more than 512 KiB.
    @Test func deepNestingIsRefusedWithItsLineOnASmallStack() {
        let deep = String(repeating: "[", count: 999) + String(repeating: "]", count: 999)
        expectRefused(deep, line: 1, "nested more than 64 levels")
        expectRefused(String(repeating: "{a: ", count: 999) + "x" + String(repeating: "}", count: 999), line: 1, "nested more than 64 levels")
        expectRefused(String(repeating: "- ", count: 999) + "x\n", line: 1, "nested more than 64 levels")
        expectRefused((0..<999).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n") + " v\n", line: 65, "nested more than 64 levels")
        expectRefused(policyHead + "  interfaces: " + deep + "\n", line: 4, "nested more than 64 levels")
        // 64 levels are YAML the readers look at (and refuse for what it is); 65 are not.
        #expect(refusals(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).policy?.message == "the policy must be a mapping")
        expectRefused(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), line: 1, "nested more than 64 levels")
        // Far beyond: refused at the 65th level, before libyaml reads on (0.2.5 has no nesting limit of its own).
        expectRefused(String(repeating: "[", count: 10_000), line: 1, "nested more than 64 levels")
    }

    /// Was: a hang. Yams hashed a key that is an alias of a billion-laughs structure through all its 10^9 nodes.
    @Test func aliasBombsAreRefusedNotExpanded() {
        expectRefused(laughs(levels: 9) + "k: {*l8 : x}\n", line: 5, "aliases expand the document by more than 100000 nodes (at *l3)")
        expectRefused(laughs(levels: 9) + "[*l8]: x\n", line: 5, "aliases expand the document by more than 100000 nodes")
        expectRefused(laughs(levels: 9), line: 5, "aliases expand the document by more than 100000 nodes")
        // An alias as a key, or inside a key, is refused outright (the files' keys are names).
        expectRefused("a: &k name\n*k : x\n", line: 2, "an alias (*k) cannot be a mapping key")
        expectRefused("a: &k [x]\n[*k]: x\n", line: 2, "an alias (*k) cannot be a mapping key")
        // Aliases that nest deeper than the limit through a chain of anchors.
        let chain = (0..<100).map { $0 == 0 ? "a0: &a0 [x]" : "a\($0): &a\($0) [*a\($0 - 1)]" }.joined(separator: "\n")
        expectRefused(chain, line: 64, "alias *a62 nests lists and mappings more than 64 levels deep")
        expectRefused("a: [*nowhere]\n", line: 1, "undefined alias *nowhere")
        expectRefused("a: &a [*a]\n", line: 1, "undefined alias *a")
        expectRefused("a: &a x\nb: *a y\n", line: 2, "malformed YAML: while parsing a block mapping: did not find expected key")
        expectRefused("a: *\n", line: 1, "malformed YAML: while scanning an alias: did not find expected alphabetic or numeric character")
    }

    /// Was: over 60 s. 3000 hosts sharing one 300-route list through an alias are 900,000 routes to check and keep.
    @Test func aliasAmplificationInTopologiesIsBounded() {
        var text = "networks:\n  a: {subnet: 10.0.0.0/16}\nhosts:\n  h0:\n    interfaces:\n      eth0: {network: a}\n    routes: &r\n"
        text += (0..<300).map { "      - {to: 10.\($0 % 250 + 1).0.0/16, dev: eth0}\n" }.joined()
        text += (1..<3000).map { "  h\($0): {interfaces: {eth0: {network: a}}, routes: *r}\n" }.joined()
        let start = Date()
        let error = refusals(text).topology
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(error?.description.hasPrefix("t.yaml:") == true)
        #expect(error?.message.contains("aliases expand the document by more than 100000 nodes (at *r)") == true, "\(String(describing: error))")
    }

    /// Was: 71 s for 990 nested explicit keys over 100,000 scalars (Yams hashes each level's key whole).
    @Test func explicitKeysAreRefused() {
        expectRefused(String(repeating: "? ", count: 990) + "[" + Array(repeating: "x", count: 20_000).joined(separator: ",") + "]\n",
                      line: 1, "explicit keys (\"? KEY\") are not supported")
        expectRefused("name: x\n? networks\n: {}\n", line: 2, "explicit keys")
        expectRefused("a: {? b: c}\n", line: 1, "explicit keys")
    }

    /// Was: 26 s (debug; 13 s in a release build at 200 levels): Yams hashes nested mappings used as keys whole, at
    /// every level, for each line of a 1 MiB file.
    @Test func nestedMappingsAsKeysAreBounded() {
        for depth in [60, 200] {
            var key = "x"
            for _ in 0..<depth { key = "{" + key + ": 1}" }
            let line = "- " + key + "\n"
            let text = String(repeating: line, count: YAMLReader.maximumBytes / line.utf8.count - 1)
            expectRefused(text, line: depth == 60 ? 118 : 11, "too many lists or mappings used as keys", within: 2)
        }
        // Just under the budget: read (and refused by the readers, keys being plain names) in about a second.
        var key = "x"
        for _ in 0..<60 { key = "{" + key + ": 1}" }
        let start = Date()
        let error = refusals(String(repeating: "- " + key + "\n", count: 117)).policy
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(error?.message == "the policy must be a mapping")
        // Brackets before a colon in quoted text count too, but a file full of IPv6 flows stays far below.
        let flows = "flows:\n" + String(repeating: "  - {from: client, to: \"[fd00:5::1]:80\"}\n", count: 20_000)
        #expect(refusals(flows).topology?.message.contains("too many") == false)
    }

    /// Aliases, "*" and "?" keep their meaning in documents that use them sensibly.
    @Test func aliasesAndStarsAndQuestionMarksStillWork() throws {
        let sharing = policyHead + """
              interfaces:
                - name: eth1
                  gateway: 10.111.221.21
                  services: &svc [192.168.1.1/32, 192.168.1.2/32]
                  clients: &clients [10.111.223.0/24, 10.111.224.0/24]
                - name: eth2
                  gateway: 10.111.222.21
                  services: [192.168.2.1/32]
                  clients: *clients
              exempt: *svc
            """
        let written = sharing.replacingOccurrences(of: "&svc ", with: "").replacingOccurrences(of: "&clients ", with: "")
            .replacingOccurrences(of: "*clients", with: "[10.111.223.0/24, 10.111.224.0/24]")
            .replacingOccurrences(of: "*svc", with: "[192.168.1.1/32, 192.168.1.2/32]")
        let viaAliases = try PolicyFile.parse(sharing, file: "p.yaml")
        let spelledOut = try PolicyFile.parse(written, file: "p.yaml")
        #expect(viaAliases.interfaces.map(\.clients) == spelledOut.interfaces.map(\.clients))
        #expect(viaAliases.exempt == spelledOut.exempt)
        #expect(viaAliases.interfaces[1].clients.map(\.cidr) == ["10.111.223.0/24", "10.111.224.0/24"])

        // Hosts sharing a route list.
        let lab = """
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              h1:
                interfaces: {eth0: {network: a, address: 10.0.0.1}}
                routes: &routes
                  - {to: 10.1.0.0/16, dev: eth0}
                  - {to: 10.2.0.0/16, dev: eth0}
              h2: {interfaces: {eth0: {network: a, address: 10.0.0.2}}, routes: *routes}
              h3: {interfaces: {eth0: {network: a, address: 10.0.0.3}}, routes: *routes}
            """
        let shared = try TopologyFile.parse(lab, file: "t.yaml")
        #expect(shared.hosts.map { $0.routes.map(\.destination.cidr) } == Array(repeating: ["10.1.0.0/16", "10.2.0.0/16"], count: 3))

        let seed = Seed.yaml.replacingOccurrences(of: "reply: svc1", with: "reply: \"what? *yes* & [no]\"")
            .replacingOccurrences(of: "reply: svc2", with: "reply: why? not*")
        let topology = try TopologyFile.parse(seed, file: "t.yaml")
        #expect(topology.host("node")?.services.map(\.reply) == ["what? *yes* & [no]", "why? not*"])
        // "*" and "?" inside names.
        #expect(throws: FileError(file: "t.yaml", line: 2, message: "unknown key \"x*?\" in the topology (allowed: name, networks, hosts, flows)")) {
            try TopologyFile.parse("name: a*b?c\nx*?: 1\n", file: "t.yaml")
        }
    }

    /// Was: `FILE: malformed YAML: 1:5: error: reader: …` with the offending line and a caret on further lines.
    @Test func controlCharactersInTheTextNameTheirLine() {
        expectRefused("name: seed\nhosts: {}\nnetworks: a\u{0}b\n", line: 3, "malformed YAML: control characters are not allowed (U+0000)")
        expectRefused("name: \u{1B}[2J\n", line: 1, "control characters are not allowed (U+001B)")
        let (topology, _) = refusals("a: 1\r\nb: \u{7}\r\n")
        #expect(topology?.line == 2)
        #expect(topology?.description == "t.yaml:2: malformed YAML: control characters are not allowed (U+0007)")
    }

    /// Was: a newline or an escape sequence from a quoted value went to the terminal inside the message.
    @Test func descriptionsAreOneLine() throws {
        let text = policyHead + "  strategy: \"mark\\nsource \\e]0;title\\a\"\n  interfaces: []\n"
        let error = try #require(refusals(text).policy)
        #expect(error.message.contains("\"mark\nsource \u{1B}]0;title\u{7}\""))
        #expect(error.description == #"t.yaml:4: strategy "mark\nsource \u{1b}]0;title\u{7}" is not one of static, source, mark, ingress"#)
        #expect(FileError(file: "a\nb", line: nil, message: "x\u{2028}y").description == #"a\nb: x\u{2028}y"#)
    }

    /// Was: accepted. inet_pton and paths see only the text before a NUL: "10.111.221.21\0.9" was 10.111.221.21, a
    /// sysctl key "net.ipv4.ip_forward\0x" was net.ipv4.ip_forward.
    @Test func nulInQuotedValuesIsRefused() throws {
        let policy = String(decoding: FuzzCorpus.document("policy-seed.yaml"), as: UTF8.self)
        #expect(refusals(policy.replacingOccurrences(of: "gateway: 10.111.221.21", with: #"gateway: "10.111.221.21\0.9""#)).policy?.message
                == "gateway of eth1 contains a NUL character")
        let seed = Seed.yaml.replacingOccurrences(of: "net.ipv4.ip_forward: 1", with: #""net.ipv4.ip_forward\0x": 1"#)
        #expect(refusals(seed).topology?.message == "sysctls of host router: a key contains a NUL character")
        #expect(refusals(Seed.yaml.replacingOccurrences(of: "reply: svc1", with: #"reply: "a\0b""#)).topology?.message
                == "service reply contains a NUL character")
    }

    /// Was: the whole file read into memory whatever its size (a device never ends), and no line for bad UTF-8.
    @Test func filesAreBoundedAndUTF8() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("returnpath-reader-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func write(_ name: String, _ bytes: [UInt8]) -> String {
            let path = directory.appendingPathComponent(name).path
            #expect(writeFile(path, bytes))
            return path
        }
        let latin1 = write("latin1.yaml", Array("name: a\nreply: caf".utf8) + [0xE9, 0x0A])
        #expect(throws: FileError(file: latin1, line: 2, message: "the file is not UTF-8 text (0xe9 at byte 18)")) {
            try YAMLReader.read(latin1)
        }
        let big = write("big.yaml", Array(repeating: UInt8(ascii: "#"), count: YAMLReader.maximumBytes + 1))
        #expect(throws: FileError(file: big, line: nil, message: "the file is larger than 32 MiB")) { try YAMLReader.read(big) }
        #expect(throws: FileError(file: "/dev/zero", line: nil, message: "the file is larger than 32 MiB")) {
            try YAMLReader.read("/dev/zero")
        }
        #expect(throws: FileError(file: directory.path, line: nil, message: "cannot read the file: Is a directory")) {
            try YAMLReader.read(directory.path)
        }
        let missing = directory.appendingPathComponent("missing.yaml").path
        #expect(throws: FileError(file: missing, line: nil, message: "cannot read the file: No such file or directory")) {
            try PolicyFile.load(path: missing)
        }
        let exact = write("exact.yaml", Array(repeating: UInt8(ascii: "#"), count: YAMLReader.maximumBytes))
        #expect(throws: FileError(file: exact, line: nil, message: "the file is empty")) { try TopologyFile.load(path: exact) }
    }

    /// Was: 20 s (5000 networks: every pair of subnets compared, every interface's network looked up in a list) and
    /// 27 s (20,000 policy interfaces, each compared with all before it) in a debug build.
    @Test func largeDocumentsAreReadInLinearTime() throws {
        var networks = "name: big\nnetworks:\n"
        for i in 0..<5000 { networks += "  n\(i): {subnet: 10.\(i / 256).\(i % 256).0/24}\n" }
        networks += "hosts:\n"
        for (host, last) in [("a", 1), ("b", 2)] {
            networks += "  \(host):\n    interfaces:\n"
            for i in 0..<5000 { networks += "      e\(i): {network: n\(i), address: 10.\(i / 256).\(i % 256).\(last)}\n" }
        }
        var start = Date()
        #expect(try TopologyFile.parse(networks, file: "t.yaml").networks.count == 5000)
        #expect(Date().timeIntervalSince(start) < 10, "5000 networks took \(Date().timeIntervalSince(start)) s")

        var interfaces = policyHead + "  interfaces:\n"
        for i in 0..<20_000 { interfaces += "    - {name: e\(i), gateway: 10.0.0.1}\n" }
        start = Date()
        #expect(try PolicyFile.parse(interfaces, file: "p.yaml").interfaces.count == 20_000)
        #expect(Date().timeIntervalSince(start) < 10, "20,000 interfaces took \(Date().timeIntervalSince(start)) s")

        var services = "networks:\n  a: {subnet: 10.0.0.0/16}\nhosts:\n  b: {interfaces: {eth0: {network: a, address: 10.0.0.2}}}\n"
        services += "  h:\n    interfaces:\n      eth0: {network: a, address: 10.0.0.1}\n    routes:\n"
        for i in 0..<5000 { services += "      - {to: 10.\(i / 256 + 1).\(i % 256).0/24, via: 10.0.0.2}\n" }
        services += "    services:\n" + (1...5000).map { "      - {address: 10.0.0.1, port: \($0)}\n" }.joined()
        services += "flows:\n" + (1...5000).map { "  - {from: b, to: \"10.0.0.1:\($0)\"}\n" }.joined()
        start = Date()
        #expect(try TopologyFile.parse(services, file: "t.yaml").flows.count == 5000)
        #expect(Date().timeIntervalSince(start) < 10, "5000 routes, services and flows took \(Date().timeIntervalSince(start)) s")
    }

    /// The overlap check finds what comparing every pair finds: the first subnet overlapping an earlier one, and the
    /// first earlier one it overlaps (random sets with nesting and duplicates, both families).
    @Test func overlapsAreFoundAsByComparingEveryPair() throws {
        var rng = SeededGenerator(seed: FuzzSettings.seed)
        for round in 0..<2000 {
            let prefixes: [IPPrefix] = try (0..<Int.random(in: 0...12, using: &rng)).map { _ in
                let v6 = Int.random(in: 0..<4, using: &rng) == 0
                let address: IPAddress = v6 ? .v6(0xfd00_0000_0000_0000 | UInt64.random(in: 0...3, using: &rng) << 56, UInt64.random(in: 0...3, using: &rng) << 62)
                                            : .v4(0x0a00_0000 | UInt32.random(in: 0...7, using: &rng) << 21)
                let length = v6 ? Int.random(in: 0...128, using: &rng) : Int.random(in: 0...32, using: &rng)
                return try IPPrefix(address.masked(to: length), length: length)
            }
            var expected: (Int, Int)?
            search: for index in prefixes.indices {
                for other in 0..<index where prefixes[other].contains(prefixes[index]) || prefixes[index].contains(prefixes[other]) {
                    expected = (index, other)
                    break search
                }
            }
            let found = firstOverlap(prefixes)
            #expect(found?.index == expected?.0 && found?.other == expected?.1, "round \(round): \(prefixes.map(\.cidr))")
        }
    }

    /// Keys are compared as the readers see them, as strings: 1 and "1" are the same host (they were two, and two
    /// namespaces rp-<lab>-1, before).
    @Test func keysAreComparedAsStrings() {
        let text = "networks:\n  a: {subnet: 10.0.0.0/24}\nhosts:\n  1: {interfaces: {eth0: {network: a, address: 10.0.0.1}}}\n"
            + "  \"1\": {interfaces: {eth0: {network: a, address: 10.0.0.2}}}\n"
        #expect(throws: FileError(file: "t.yaml", line: 5, message: "malformed YAML: duplicate key \"1\"")) {
            try TopologyFile.parse(text, file: "t.yaml")
        }
    }

    /// The overlap is reported before a problem further down, and after one further up, as a check in the loop was.
    @Test func networkProblemsKeepTheirOrder() {
        let overlapFirst = "networks:\n  a: {subnet: 10.0.0.0/16}\n  b: {subnet: 10.0.1.0/24}\n  c: {subnet: nonsense}\nhosts: {}\n"
        #expect(throws: FileError(file: "t.yaml", line: 3, message: "subnet 10.0.1.0/24 of network b overlaps network a (10.0.0.0/16)")) {
            try TopologyFile.parse(overlapFirst, file: "t.yaml")
        }
        let invalidFirst = "networks:\n  a: {subnet: 10.0.0.0/16}\n  B: {subnet: 10.9.0.0/24}\n  c: {subnet: 10.0.1.0/24}\nhosts: {}\n"
        #expect(throws: FileError.self) { try TopologyFile.parse(invalidFirst, file: "t.yaml") }
        do { _ = try TopologyFile.parse(invalidFirst, file: "t.yaml") } catch { #expect(error.line == 3 && error.message.contains("network name \"B\"")) }
    }
}
