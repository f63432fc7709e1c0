import Foundation
import Lab
import ReturnRouting
import Testing
import YAMLFile

#if canImport(Glibc)
import Glibc
#endif

// Parsers that cannot be crashed: the topology and policy readers get thousands of documents derived from the real
// ones (docs/seed.yaml, docs/policy-seed.yaml, docs/ipv6-lab.yaml), mutated by a seeded generator, plus a corpus of
// hostile documents (deep nesting, alias bombs, huge numbers, invalid UTF-8, NUL bytes, long lines). Each must give a
// result or a FileError whose description is `FILE:LINE: …` or `FILE: …`, on one line, quickly.
//
// Environment:
//   RETURNPATH_FUZZ_ITERATIONS  mutated documents per run (default 5000; each is read by both readers, every
//                               eighth also through a file). The suite takes about 17 s (CPU) in a debug build.
//   RETURNPATH_FUZZ_SEED        the generator's seed (decimal or 0x…; default fixed, so CI runs are repeatable)
//   RETURNPATH_FUZZ_CASE        run only this case number of the mutation test and print its document
//   RETURNPATH_FUZZ_HOSTILE     run only the hostile document of this name
//   RETURNPATH_FUZZ_TRACE       print each hostile document's name before reading it
// A crash cannot be reported by the test itself: the document being read is kept in the file named at the start
// of each test (removed when the test ends normally), so a crashed run leaves it behind.

/// SplitMix64: small, fast, and the same sequence on every platform for a given seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum FuzzSettings {
    static let environment = ProcessInfo.processInfo.environment
    static let iterations = environment["RETURNPATH_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 5000
    static let seed: UInt64 = environment["RETURNPATH_FUZZ_SEED"].flatMap { text in
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    } ?? 0x7270_5f66_757a_7a31
    static let onlyCase = environment["RETURNPATH_FUZZ_CASE"].flatMap { Int($0) }
    /// A single read slower than this is a failure (a debug build on a loaded 2-core machine reads the seed in ~1 ms).
    static let slowRead: Double = 5
}

/// The documents the mutations start from.
enum FuzzCorpus {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func document(_ name: String) -> [UInt8] {
        (try? Array(Data(contentsOf: root.appendingPathComponent("docs/\(name)")))) ?? []
    }
    static let documents: [(name: String, bytes: [UInt8])] = ["seed.yaml", "policy-seed.yaml", "ipv6-lab.yaml"].map {
        ($0, document($0))
    }
}

/// What reading a document gave, as checked by `FuzzOracle`.
struct FuzzProblem: CustomStringConvertible {
    var reader: String
    var problem: String
    var description: String { "\(reader): \(problem)" }
}

enum FuzzOracle {
    static let file = "fuzz.yaml"

    /// Reads `text` with both readers; returns what is wrong with the outcomes (nothing, normally).
    static func check(_ text: String) -> [FuzzProblem] {
        var problems: [FuzzProblem] = []
        let maximumLine = text.reduce(1) { $1.isNewline ? $0 + 1 : $0 } + 1
        func run(_ reader: String, _ body: () throws(FileError) -> Void) {
            let start = Date()
            do throws(FileError) {
                try body()
            } catch {
                if let problem = descriptionProblem(error, file: file, maximumLine: maximumLine) {
                    problems.append(FuzzProblem(reader: reader, problem: problem))
                }
            }
            let elapsed = Date().timeIntervalSince(start)
            if elapsed > FuzzSettings.slowRead {
                problems.append(FuzzProblem(reader: reader, problem: "took \(elapsed) s"))
            }
        }
        run("topology") { () throws(FileError) in _ = try TopologyFile.parse(text, file: file) }
        run("policy") { () throws(FileError) in _ = try PolicyFile.parse(text, file: file) }
        return problems
    }

    /// nil when the description is `FILE:LINE: message` or `FILE: message`, on one line, with a plausible line.
    static func descriptionProblem(_ error: FileError, file: String, maximumLine: Int) -> String? {
        let text = error.description
        if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\t" }) {
            return "control characters in the description: \(text.debugDescription)"
        }
        guard text.hasPrefix(file + ":") else { return "does not start with the file name: \(text.debugDescription)" }
        var rest = text.dropFirst(file.count + 1)
        if let line = error.line {
            guard rest.hasPrefix("\(line): ") else { return "line \(line) not in the description: \(text.debugDescription)" }
            guard (1...maximumLine).contains(line) else { return "line \(line) outside 1...\(maximumLine): \(text)" }
            rest = rest.dropFirst("\(line): ".count)
        } else {
            guard rest.hasPrefix(" ") else { return "no space after FILE: \(text.debugDescription)" }
            rest = rest.dropFirst()
        }
        if rest.trimmingCharacters(in: .whitespaces).isEmpty { return "empty message: \(text.debugDescription)" }
        return nil
    }
}

/// Mutations of a document's bytes. Each takes the generator, so a (seed, case) pair always gives the same document.
enum Mutator {
    static let tokens: [String] = [
        ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "? ", "&a ", "*a", "*a ", "!!str ", "!x ", "|", ">", "|-\n",
        "'", "\"", "#", "%", "@", "`", "\t", "\n", "\r\n", "\r", "\0", "\u{FEFF}", "\\", "\\0", "~", "null", "---\n",
        "...\n", "\u{85}", "\u{2028}", "\u{FFFF}", "\u{1F600}", "é", "0x", "<<: ", "&x [1, 2] ", "*x", "!!binary ",
        "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    ]

    static let values: [String] = [
        // wrong types
        "[a, b]", "{a: b}", "[]", "{}", "~", "null", "\"\"", "''", "[[[]]]", "{a: [b, {c: d}]}", "- x", "|\n  block\n",
        "true", "yes", "1.5",
        // numbers
        "18446744073709551616", "18446744073709551615", "9223372036854775808", "9223372036854775807",
        "-9223372036854775809", "4294967296", "4294967295", "65536", "65535", "-1", "-0", "0", "1e309", "-1e309",
        "1e3", "0x", "0x-1", "0x1_0000_0000", "0xffffffffffffffffffffffff", "0xFFFFFFFF", "0x100000000", "+7",
        "007", "1_000", ".inf", "-.inf", ".nan", "99999999999999999999999999999999", "0b101", "0o17", "١٢٣",
        // addresses and prefixes
        "256.0.0.1", "10.0.0.1/33", "10.0.0.1/-1", "10.0.0.1/", "/24", "10.0.0.0/+8", "10.0.0.0/08", "::",
        "\"::1/129\"", "\"[::1]:80\"", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:", ":80", "\"10.0.0.1\\0junk\"",
        "\"10.0.0.1\\u0000\"", "default", "all", "any", "0.0.0.0/0", "\"fe80::1%eth0\"", "1.2.3", "01.2.3.4",
        "\"::ffff:1.2.3.4\"", "10.111.221.21", "10.111.221.11", "192.168.1.1",
        // names and strings
        "\"\"", "eth0/x", "\"eth 0\"", "lo", "..", "net..ipv4", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "é",
        "\"a\\nb\"", "\"\\e[31mred\"", "\"\\u0085\"", "\"\\U0001F600\"", "-", "?", ":", "'it''s'",
        String(repeating: "x", count: 5000),
        // anchors, aliases, tags
        "&x 1", "*x", "*undefined", "&x [1, 2]", "&x {a: b}", "!!int 3", "!!binary aGVsbG8=",
        "!<tag:yaml.org,2002:str> x", "!custom x", "!!map {}", "!!seq []", "!!null", "!!float 1e309", "! x",
    ]

    static func mutate(_ input: [UInt8], using rng: inout SeededGenerator) -> (bytes: [UInt8], steps: [String]) {
        var bytes = input
        var steps: [String] = []
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            steps.append(step(&bytes, using: &rng))
        }
        return (bytes, steps)
    }

    static func position(_ bytes: [UInt8], using rng: inout SeededGenerator) -> Int {
        bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &rng)
    }

    /// Line ranges (without the newline).
    static func lines(_ bytes: [UInt8]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "\n") {
            result.append(start..<index)
            start = index + 1
        }
        result.append(start..<bytes.count)
        return result
    }

    static func step(_ bytes: inout [UInt8], using rng: inout SeededGenerator) -> String {
        let kind = Int.random(in: 0..<11, using: &rng)
        switch kind {
        case 0:
            guard !bytes.isEmpty else { return "flip (empty)" }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            let bit = UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            bytes[at] ^= bit
            return "flip bit \(bit) at \(at)"
        case 1:
            guard !bytes.isEmpty else { return "replace (empty)" }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            let byte = UInt8.random(in: 0...255, using: &rng)
            bytes[at] = byte
            return "byte \(byte) at \(at)"
        case 2:
            let at = position(bytes, using: &rng)
            let token = tokens.randomElement(using: &rng) ?? ""
            bytes.insert(contentsOf: Array(token.utf8), at: at)
            return "insert \(token.debugDescription) at \(at)"
        case 3:
            guard !bytes.isEmpty else { return "delete (empty)" }
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            let count = min(Int.random(in: 1...16, using: &rng), bytes.count - at)
            bytes.removeSubrange(at..<at + count)
            return "delete \(count) at \(at)"
        case 4:
            guard !bytes.isEmpty else { return "duplicate (empty)" }
            let from = Int.random(in: 0..<bytes.count, using: &rng)
            let count = min(Int.random(in: 1...200, using: &rng), bytes.count - from)
            let to = position(bytes, using: &rng)
            bytes.insert(contentsOf: Array(bytes[from..<from + count]), at: to)
            return "copy \(count) from \(from) to \(to)"
        case 5:
            let at = position(bytes, using: &rng)
            bytes.removeSubrange(at...)
            return "truncate at \(at)"
        case 6:
            // Line surgery: delete, duplicate, swap, re-indent.
            let all = lines(bytes)
            let index = Int.random(in: 0..<all.count, using: &rng)
            var text = all.map { Array(bytes[$0]) }
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: text.remove(at: index)
            case 1: text.insert(text[index], at: index)
            case 2: text.swapAt(index, Int.random(in: 0..<text.count, using: &rng))
            default:
                let shift = Int.random(in: -4...4, using: &rng)
                if shift > 0 { text[index].insert(contentsOf: Array(repeating: UInt8(ascii: " "), count: shift), at: 0) }
                else { text[index].removeFirst(min(-shift, text[index].prefix { $0 == UInt8(ascii: " ") }.count)) }
            }
            bytes = Array(text.joined(separator: [UInt8(ascii: "\n")]))
            return "line surgery at line \(index + 1)"
        case 7, 8:
            // A value replaced: "key: value" (block) or "key: value," / "key: value}" (flow).
            let value = values.randomElement(using: &rng) ?? ""
            let colons = bytes.indices.filter { bytes[$0] == UInt8(ascii: ":") && $0 + 1 < bytes.count && bytes[$0 + 1] == UInt8(ascii: " ") }
            guard let colon = colons.randomElement(using: &rng) else { return "no value to replace" }
            let start = colon + 2
            var end = start
            var depth = 0
            while end < bytes.count {
                let byte = bytes[end]
                if byte == UInt8(ascii: "\n") { break }
                if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") { depth += 1 }
                if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    if depth == 0 { break }
                    depth -= 1
                }
                if byte == UInt8(ascii: ",") && depth == 0 { break }
                if byte == UInt8(ascii: "#") && end > start && bytes[end - 1] == UInt8(ascii: " ") { break }
                end += 1
            }
            bytes.replaceSubrange(start..<end, with: Array(value.utf8))
            return "value at \(start) = \(value.prefix(40).debugDescription)"
        case 9:
            // An anchor on one value, aliases to it elsewhere (as values, sometimes as keys).
            let colons = bytes.indices.filter { bytes[$0] == UInt8(ascii: ":") && $0 + 1 < bytes.count && bytes[$0 + 1] == UInt8(ascii: " ") }
            guard colons.count >= 2 else { return "no place for an alias" }
            let anchorAt = colons.randomElement(using: &rng) ?? 0
            var inserts: [(Int, String)] = [(anchorAt + 2, "&v ")]
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = colons.randomElement(using: &rng) ?? 0
                inserts.append(Bool.random(using: &rng) ? (at + 2, "*v ") : (lines(Array(bytes[..<at])).last?.lowerBound ?? 0, "*v : x\n"))
            }
            for (at, text) in inserts.sorted(by: { $0.0 > $1.0 }) { bytes.insert(contentsOf: Array(text.utf8), at: at) }
            return "anchor &v at \(anchorAt + 2), \(inserts.count - 1) alias(es)"
        default:
            // Wrap a value in more structure: a list, a mapping, or deep brackets.
            let at = position(bytes, using: &rng)
            let depth = Int.random(in: 1...300, using: &rng)
            let open = Bool.random(using: &rng) ? "[" : "{a: "
            let close = open == "[" ? "]" : "}"
            let wrapped = String(repeating: open, count: depth) + "x" + String(repeating: close, count: Int.random(in: 0...depth, using: &rng))
            bytes.insert(contentsOf: Array(wrapped.utf8), at: at)
            return "nesting \(depth) \(open.debugDescription) at \(at)"
        }
    }
}

/// Keeps the document being read in a file while a test runs, so that a crash leaves it behind.
final class CrashNote {
    let path: String
    private let descriptor: Int32
    init(_ test: String) {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("returnpath-fuzz-\(getpid())-\(test).yaml").path
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        print("fuzz \(test): seed 0x\(String(FuzzSettings.seed, radix: 16)); "
              + "if this process crashes, the document being read is in \(path)")
    }
    func note(_ header: String, _ bytes: [UInt8]) {
        guard descriptor >= 0 else { return }
        let data = Array(("# " + header + "\n").utf8) + bytes
        _ = ftruncate(descriptor, 0)
        _ = data.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    }
    func done() {
        if descriptor >= 0 { close(descriptor) }
        unlink(path)
    }
}

/// Problems found on a fuzzing thread, recorded as issues once the thread has ended (an issue recorded on a thread
/// of our own would not be attributed to the test).
final class FuzzLog: @unchecked Sendable {
    var issues: [String] = []
    func record(_ problems: [FuzzProblem], _ what: String, _ text: String) {
        guard !problems.isEmpty else { return }
        let shown = text.count > 2000 ? String(text.prefix(2000)) + "… (\(text.utf8.count) bytes)" : text
        issues.append("\(what): \(problems.map(\.description).joined(separator: "; "))\n--- document ---\n\(shown)\n---")
    }
    func fail(_ message: String) { issues.append(message) }
    func report(_ sourceLocation: SourceLocation = #_sourceLocation) {
        for issue in issues.prefix(50) { Issue.record(Comment(rawValue: issue), sourceLocation: sourceLocation) }
        if issues.count > 50 { Issue.record("… and \(issues.count - 50) more", sourceLocation: sourceLocation) }
    }
}

/// Runs `body` on a thread with a small stack (512 KiB, as secondary threads have on some systems), so that the
/// readers are shown not to depend on the caller's stack.
func onSmallStack(_ body: () -> Void) {
    withoutActuallyEscaping(body) { body in
        final class Work: @unchecked Sendable {
            let run: () -> Void
            init(_ run: @escaping () -> Void) { self.run = run }
        }
        let work = Unmanaged.passRetained(Work(body))
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, 512 * 1024)
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            Unmanaged<Work>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, work.toOpaque())
        pthread_attr_destroy(&attributes)
        if rc != 0 { fatalError("pthread_create: \(rc)") }
        pthread_join(thread, nil)
    }
}

@Suite(.serialized) struct ParserFuzzTests {
    @Test func truncatedAtEveryByte() {
        let note = CrashNote("truncated")
        let log = FuzzLog()
        onSmallStack {
            for (name, bytes) in FuzzCorpus.documents {
                if bytes.isEmpty { log.fail("docs/\(name) is missing") }
                for end in 0...bytes.count {
                    let prefix = Array(bytes[..<end])
                    note.note("docs/\(name) truncated at byte \(end)", prefix)
                    let text = String(decoding: prefix, as: UTF8.self)
                    log.record(FuzzOracle.check(text), "docs/\(name) truncated at byte \(end)", text)
                }
            }
        }
        note.done()
        log.report()
    }

    @Test func mutatedDocuments() {
        let note = CrashNote("mutated")
        let log = FuzzLog()
        let cases = FuzzSettings.onlyCase.map { [$0] } ?? Array(0..<FuzzSettings.iterations)
        onSmallStack {
            for number in cases {
                // Each case has its own generator, so one case can be rerun alone.
                var rng = SeededGenerator(seed: FuzzSettings.seed &+ UInt64(number) &* 0x9E37_79B9)
                let source = FuzzCorpus.documents[Int.random(in: 0..<FuzzCorpus.documents.count, using: &rng)]
                let (bytes, steps) = Mutator.mutate(source.bytes, using: &rng)
                let what = "case \(number) (RETURNPATH_FUZZ_SEED=0x\(String(FuzzSettings.seed, radix: 16)) "
                    + "RETURNPATH_FUZZ_CASE=\(number)): docs/\(source.name), \(steps.joined(separator: ", "))"
                note.note(what, bytes)
                let text = String(decoding: bytes, as: UTF8.self)
                if FuzzSettings.onlyCase != nil { print("\(what)\n--- document ---\n\(text)\n---") }
                log.record(FuzzOracle.check(text), what, text)
                // Every eighth case also goes through a file, where invalid UTF-8 must be refused.
                if number % 8 == 0 { checkThroughFile(bytes, what, log) }
            }
        }
        note.done()
        log.report()
    }

    @Test func hostileDocuments() {
        let note = CrashNote("hostile")
        let log = FuzzLog()
        onSmallStack {
            let only = FuzzSettings.environment["RETURNPATH_FUZZ_HOSTILE"]
            for (name, text) in HostileCorpus.documents where only == nil || only == name {
                note.note(name, Array(text.utf8))
                if FuzzSettings.environment["RETURNPATH_FUZZ_TRACE"] != nil {
                    print("hostile: \(name)")
                    let start = Date()
                    let topology = Result { () throws(FileError) in try TopologyFile.parse(text, file: FuzzOracle.file) }
                    let policy = Result { () throws(FileError) in try PolicyFile.parse(text, file: FuzzOracle.file) }
                    print("  topology: \(topology.map { _ in "accepted" })\n  policy: \(policy.map { _ in "accepted" }) "
                          + "(\(Int(Date().timeIntervalSince(start) * 1000)) ms)")
                }
                log.record(FuzzOracle.check(text), "hostile document \(name)", text)
            }
            for (name, bytes) in HostileCorpus.files where only == nil || only == name {
                note.note(name, bytes)
                if FuzzSettings.environment["RETURNPATH_FUZZ_TRACE"] != nil { print("hostile file: \(name)") }
                checkThroughFile(bytes, "hostile file \(name)", log)
            }
        }
        note.done()
        log.report()
    }
}

/// Writes a file with plain write(2) (FileManager's atomic writes sync, which made the suite wait on the disk).
func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    return bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == bytes.count
}

/// Writes `bytes` to a file and loads it with both readers: invalid UTF-8 must be refused as such, anything else
/// must behave as the text does.
func checkThroughFile(_ bytes: [UInt8], _ what: String, _ log: FuzzLog) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("returnpath-fuzz-\(getpid())-file.yaml").path
    defer { unlink(path) }
    guard writeFile(path, bytes) else {
        log.fail("cannot write \(path)")
        return
    }
    let valid = String(validating: bytes, as: UTF8.self) != nil
    let maximumLine = bytes.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } + 2
    for (reader, load) in [("topology", { () throws(FileError) in _ = try TopologyFile.load(path: path) }),
                           ("policy", { () throws(FileError) in _ = try PolicyFile.load(path: path) })] {
        do throws(FileError) {
            try load()
            if !valid { log.fail("\(what): \(reader) accepted invalid UTF-8") }
        } catch {
            if let problem = FuzzOracle.descriptionProblem(error, file: path, maximumLine: maximumLine) {
                log.fail("\(what): \(reader) through a file: \(problem)")
            }
            if !valid && !error.message.contains("UTF-8") {
                log.fail("\(what): \(reader): invalid UTF-8 refused for another reason: \(error)")
            }
        }
    }
}

/// Documents no mutation is likely to stumble on: each names the trouble it is after.
enum HostileCorpus {
    static let seed = String(decoding: FuzzCorpus.document("seed.yaml"), as: UTF8.self)
    static let policy = String(decoding: FuzzCorpus.document("policy-seed.yaml"), as: UTF8.self)
    static let policyHead = "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n"

    /// "Billion laughs": `levels` anchors, each a list of ten aliases to the previous one.
    static func laughs(levels: Int, width: Int = 10) -> String {
        var text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for level in 1..<levels {
            text += "l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: width).joined(separator: ", ") + "]\n"
        }
        return text
    }

    /// "{{{x: 1}: 1}: 1}", `depth` levels.
    static func nestedKey(_ depth: Int) -> String {
        (0..<depth).reduce("x") { key, _ in "{" + key + ": 1}" }
    }

    static var documents: [(String, String)] {
        var result: [(String, String)] = [
            ("empty", ""), ("spaces", "   \n\n  "), ("comment only", "# nothing\n"), ("document marker", "---\n"),
            ("two documents", "---\na: 1\n---\nb: 2\n"), ("end marker", "...\n"), ("null", "~"),
            ("YAML 1.1 directive", "%YAML 1.1\n---\n" + seed), ("YAML 9.9 directive", "%YAML 9.9\n---\na: 1\n"),
            ("TAG directive", "%TAG ! tag:x,2000:\n--- !a\nname: x\n"),
            ("byte order mark", "\u{FEFF}" + seed), ("byte order mark inside", "name: a\u{FEFF}b\n"),
            ("CRLF", seed.replacingOccurrences(of: "\n", with: "\r\n")),
            ("CR", seed.replacingOccurrences(of: "\n", with: "\r")),
            ("NEL line breaks", seed.replacingOccurrences(of: "\n", with: "\u{85}")),
            ("tabs for indentation", seed.replacingOccurrences(of: "  ", with: "\t")),
            ("NUL byte", "name: se\0ed\n" + seed), ("NUL at the start", "\0"), ("escape character", "name: \u{1B}[2J\n"),
            ("DEL", "name: \u{7F}\n"), ("C1 control", "name: \u{9B}31m\n"),
            ("NUL escape in an address", policy.replacingOccurrences(of: "gateway: 10.111.221.21", with: "gateway: \"10.111.221.21\\0.9\"")),
            ("NUL escape in a sysctl", seed.replacingOccurrences(of: "net.ipv4.ip_forward: 1", with: "\"net.ipv4.ip_forward\\0x\": 1")),
            ("NUL escape in a key", "\"name\\0\": x\n"),
            ("newline in a value", policy.replacingOccurrences(of: "strategy: mark", with: "strategy: \"mark\\nsource\"")),
            ("terminal escape in a value", policy.replacingOccurrences(of: "strategy: mark", with: "strategy: \"\\e]0;pwned\\a\"")),
            ("line separator in a value", policy.replacingOccurrences(of: "strategy: mark", with: "strategy: \"a\\Lb\"")),
            ("long line", "name: " + String(repeating: "a", count: 200_000) + "\n"),
            ("long key", String(repeating: "k", count: 100_000) + ": 1\n"),
            ("long comment", "# " + String(repeating: "#", count: 200_000) + "\n" + seed),
            ("huge list of prefixes", policyHead + "  interfaces: []\n  exempt: [" + Array(repeating: "10.0.0.0/8", count: 20_000).joined(separator: ", ") + "]\n"),
            ("huge numbers", policy.replacingOccurrences(of: "priorityBase: 20000", with: "priorityBase: 18446744073709551616")),
            ("huge hex", policy.replacingOccurrences(of: "markMask: 0x0e000000", with: "markMask: 0xffffffffffffffffffffffffffff")),
            ("negative", policy.replacingOccurrences(of: "tableCount: 1000", with: "tableCount: -1")),
            ("1e309", policy.replacingOccurrences(of: "protocol: 212", with: "protocol: 1e309")),
            ("port 2^64", seed.replacingOccurrences(of: "port: 3000", with: "port: 18446744073709551616")),
            ("mtu -1", seed.replacingOccurrences(of: "{network: network1, address: 10.111.221.11}", with: "{network: network1, address: 10.111.221.11, mtu: -1}")),
            ("table 2^32", seed.replacingOccurrences(of: "- {to: 192.168.1.1, via: 10.111.223.21}", with: "- {to: 192.168.1.1, via: 10.111.223.21, table: 4294967296}")),
            ("metric 2^63", seed.replacingOccurrences(of: "- {to: 192.168.1.1, via: 10.111.223.21}", with: "- {to: 192.168.1.1, via: 10.111.223.21, metric: 9223372036854775808}")),
            ("prefix length 2^64", seed.replacingOccurrences(of: "10.111.221.0/24", with: "10.111.221.0/18446744073709551616")),
            ("flow port 2^64", seed + "flows:\n  - {from: client1, to: \"192.168.1.1:18446744073709551616\"}\n"),
            ("10,000 [", String(repeating: "[", count: 10_000)),
            ("10,000 [ ]", String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)),
            ("999 [ ]", String(repeating: "[", count: 999) + String(repeating: "]", count: 999)),
            ("1,400 [ ] on one line", String(repeating: "[", count: 1400) + String(repeating: "]", count: 1400)),
            ("999 {a:", String(repeating: "{a: ", count: 999) + "x" + String(repeating: "}", count: 999)),
            ("10,000 {", String(repeating: "{", count: 10_000)),
            ("999 - - -", String(repeating: "- ", count: 999) + "x\n"),
            ("999 nested block mappings", (0..<999).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n") + " v\n"),
            ("999 nested ? keys", String(repeating: "? ", count: 999) + "x\n"),
            ("990 nested ? keys over a long list", String(repeating: "? ", count: 990) + "[" + Array(repeating: "x", count: 20_000).joined(separator: ",") + "]\n"),
            ("interfaces: 999 [", policyHead + "  interfaces: " + String(repeating: "[", count: 999) + String(repeating: "]", count: 999) + "\n"),
            ("65 levels", String(repeating: "[", count: 65) + String(repeating: "]", count: 65)),
            ("64 levels", String(repeating: "[", count: 64) + String(repeating: "]", count: 64)),
            ("nested mappings as keys", String(repeating: "- " + nestedKey(60) + "\n", count: 3400)),
            ("nested mappings as keys, under the budget", String(repeating: "- " + nestedKey(60) + "\n", count: 117)),
            ("one deep key", "? " + nestedKey(200) + "\n"),
            ("billion laughs", laughs(levels: 9)),
            ("billion laughs as a key", laughs(levels: 9) + "? *l8\n: x\n"),
            ("billion laughs as a flow key", laughs(levels: 9) + "k: {*l8 : x}\n"),
            ("billion laughs in a list key", laughs(levels: 9) + "[*l8]: x\n"),
            ("billion laughs as interfaces", policyHead + laughs(levels: 9).replacingOccurrences(of: "\n", with: "\n  ").replacingOccurrences(of: "l0: ", with: "  l0: ")),
            ("billion laughs as exempt", policyHead + "  interfaces: []\n  ownership: {}\n  exempt: &e0 [" + Array(repeating: "10.0.0.0/8", count: 10).joined(separator: ", ") + "]\n"
                + (1..<9).map { "  x\($0): &e\($0) [" + Array(repeating: "*e\($0 - 1)", count: 10).joined(separator: ", ") + "]\n" }.joined()),
            ("deep alias chain", (0..<200).map { $0 == 0 ? "a0: &a0 [x]" : "a\($0): &a\($0) [*a\($0 - 1)]" }.joined(separator: "\n") + "\n"),
            ("alias to itself", "a: &a [*a]\n"), ("undefined alias", "a: *nowhere\n"), ("alias with a tag", "a: &a x\nb: !t *a\n"),
            ("alias as a key", "a: &k name\n*k : x\n"), ("alias followed by text", "a: &a x\nb: *a y\n"),
            ("merge key", "a: &a {x: 1}\nb:\n  <<: *a\n"), ("shadowed anchor", "a: &a 1\nb: &a 2\nc: *a\n"),
            ("anchor on a key", "&k a: 1\n"), ("long anchor name", "a: &" + String(repeating: "n", count: 100_000) + " 1\n"),
            ("many aliases", "a: &a x\nb: [" + Array(repeating: "*a", count: 50_000).joined(separator: ", ") + "]\n"),
            ("tags", "!!map {name: !!str seed, networks: !!seq [], hosts: !custom {}}\n"),
            ("binary tag", "name: !!binary aGVsbG8=\n"), ("verbatim tag", "name: !<tag:yaml.org,2002:str> seed\n"),
            ("tag with a star", "name: !a*b seed\n"), ("tag with a question mark", "name: !<tag:x?y> seed\n"),
            ("explicit key", "? name\n: seed\n"), ("question mark in a value", "name: what? yes\n"),
            ("star in a value", "name: a*b\nreply: \"*x\"\n"), ("star in a block scalar", "name: |\n  *x\n  ? y\n"),
            ("duplicate keys", "name: a\nname: b\n"), ("duplicate quoted keys", "name: a\n\"name\": b\n"),
            ("private use characters", "name: \u{E000}\u{E001}\n"),
            ("unicode everywhere", seed.replacingOccurrences(of: "client1", with: "клиент1")),
            ("surrogate escape", "name: \"\\uD800\"\n"), ("max escape", "name: \"\\U0010FFFF\"\n"),
            ("too big escape", "name: \"\\U00110000\"\n"),
            ("unterminated quote", "name: \"abc\n"), ("unterminated flow", "a: [1, 2\n"),
            ("policy as topology", policy), ("topology as policy", seed),
        ]
        // Amplification through aliases: many hosts sharing one long route list.
        var amplified = "networks:\n  a: {subnet: 10.0.0.0/16}\nhosts:\n  h0:\n    interfaces:\n      eth0: {network: a}\n    routes: &r\n"
        amplified += (0..<300).map { "      - {to: 10.\($0 % 250 + 1).0.0/16, dev: eth0}\n" }.joined()
        amplified += (1..<3000).map { "  h\($0): {interfaces: {eth0: {network: a}}, routes: *r}\n" }.joined()
        result.append(("3000 hosts sharing 300 routes", amplified))
        return result
    }

    static var files: [(String, [UInt8])] {
        let seed = FuzzCorpus.document("seed.yaml")
        return [
            ("0xff byte", seed + [0xFF]), ("overlong NUL", [UInt8]("name: ".utf8) + [0xC0, 0x80]),
            ("UTF-16 surrogate in UTF-8", [UInt8]("name: ".utf8) + [0xED, 0xA0, 0x80]),
            ("truncated 4-byte sequence", [UInt8]("name: ".utf8) + [0xF0, 0x9F, 0x98]),
            ("beyond U+10FFFF", [UInt8]("name: ".utf8) + [0xF4, 0x90, 0x80, 0x80]),
            ("Latin-1", [UInt8]("name: caf".utf8) + [0xE9]),
            ("UTF-16 with BOM", [0xFF, 0xFE] + Array("name: x\n".utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] })),
            ("UTF-8 BOM", [0xEF, 0xBB, 0xBF] + seed), ("NUL bytes", seed + [0, 0, 0]),
            ("empty file", []), ("2 MiB", Array(repeating: UInt8(ascii: "#"), count: 2 << 20)),
        ]
    }
}
