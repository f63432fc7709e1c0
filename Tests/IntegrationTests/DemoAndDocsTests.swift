import Foundation
import Namespace
import Testing

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DemoAndDocsTests {
    @Test func theDemoTellsTheWholeStoryAndExitsZero() throws {
        let lab = uniqueLabName()
        let result = try returnpath("demo", "--name", lab)
        #expect(result.status == 0, "\(result.output)\(result.errors)")
        #expect(result.output.contains("Every step behaved as the story says."))
        for strategy in ["static", "source", "mark", "ingress"] {
            #expect(result.output.contains("Fix with --strategy \(strategy)"))
        }
        #expect(result.output.contains("is an address of this node itself"))
        #expect(result.output.contains("A strict node"))
        #expect(namespaces(of: lab).isEmpty)
        #expect(servePIDs(lab).isEmpty)
    }

    /// The anycast and kube-proxy stories: each exits 0 only when the seed's fixes fail where they must and
    /// ingress succeeds.
    @Test(arguments: [["--topology", "anycast"], ["--topology", "k8s"], ["--family", "ipv6"], ["--family", "dual"], ["--topology", "cluster"]])
    func theClusterStoriesExitZero(story: [String]) throws {
        let lab = uniqueLabName()
        let result = try returnpath(["demo"] + story + ["--name", lab])
        #expect(result.status == 0, "\(result.output)\(result.errors)")
        #expect(result.output.contains("Every step behaved as the story says."))
        #expect(namespaces(of: lab).isEmpty)
        #expect(servePIDs(lab).isEmpty)
        // The cluster story's agents (one per node, spawned in the nodes' namespaces) are gone too.
        let agents = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { Int($0) != nil }.filter { pid in
            let args = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { String(decoding: $0, as: UTF8.self) } ?? ""
            return args.contains("rp-demo-cluster-")
        }
        #expect(agents.isEmpty, "agents left running: \(agents)")
    }

    /// Every `returnpath …` command shown in README.md and docs/ exists and its options parse.
    @Test func everyDocumentedCommandParses() throws {
        let root = repositoryRoot
        let docs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.map { "docs/\($0)" } + ["README.md"]
        var checked = 0
        for file in docs {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            var inCode = false
            for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("```") { inCode.toggle(); continue }
                guard inCode || line.hasPrefix("| `returnpath ") else { continue }
                var command = line
                for prefix in ["$ sudo ", "$ ", "| `"] where command.hasPrefix(prefix) { command.removeFirst(prefix.count) }
                guard command.hasPrefix("returnpath ") else { continue }
                if let end = command.firstIndex(of: "`") { command = String(command[..<end]) }
                if let comment = command.range(of: " #") { command = String(command[..<comment.lowerBound]) }
                // Synopses with placeholders ([…], A|B, …) are described, not run.
                if command.contains("[") || command.contains("|") || command.contains("…") || command.contains("NAME") { continue }
                // Tables of figures ("returnpath   shell script") and lists ("lab up/down/…") are not command lines.
                if command.contains("  ") || command.contains(" / ") || command.split(separator: " ").dropFirst(2).contains(where: { $0.contains("/") && !$0.hasPrefix("-") && !$0.contains(".") }) { continue }
                let words = command.split(separator: " ").map(String.init).dropFirst()
                let result = try parseOnly(Array(words))
                #expect(result.status == 0, "\(file): \(command): \(result.errors)")
                checked += 1
            }
        }
        #expect(checked >= 10, "only \(checked) documented commands found")
    }

    /// Every topology file in docs/ (policies aside) is valid and `lab graph -f` draws it.
    @Test func everyDocumentedTopologyParses() throws {
        let docs = repositoryRoot.appendingPathComponent("docs")
        let files = try FileManager.default.contentsOfDirectory(atPath: docs.path)
            .filter { $0.hasSuffix(".yaml") && !$0.hasPrefix("policy-") }.sorted()
        #expect(Set(["seed.yaml", "ipv6-lab.yaml", "seed-k8s.yaml", "anycast.yaml"]).isSubset(of: Set(files)), "\(files)")
        for file in files {
            let result = try returnpath("lab", "graph", "-f", docs.appendingPathComponent(file).path)
            #expect(result.status == 0, "docs/\(file): \(result.errors)")
        }
    }

    func parseOnly(_ arguments: [String]) throws -> CLIResult {
        try execute(returnpathBinary, arguments, environment: ["RETURNPATH_PARSE_ONLY": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
    }

    @Test func helpAndCompletionsExist() throws {
        // Each help is the command's own (its usage line names it) and shows the flags the docs use.
        let expected: [([String], [String])] = [
            (["--help"], ["USAGE: returnpath <subcommand>", "lab", "probe", "apply", "remove", "doctor", "agent", "demo", "bench"]),
            (["lab", "--help"], ["USAGE: returnpath lab <subcommand>", "up", "down", "status", "graph", "exec"]),
            (["probe", "--help"], ["USAGE: returnpath probe", "--passive", "--json", "--from", "--to"]),
            (["apply", "--help"], ["USAGE: returnpath apply", "--file", "--strategy", "--dry-run", "--lab", "--host", "--netns", "--wait", "--node"]),
            (["remove", "--help"], ["USAGE: returnpath remove", "--dry-run", "--lab", "--netns", "--wait"]),
            (["demo", "--help"], ["USAGE: returnpath demo", "--strategy", "--topology", "--keep"]),
            (["bench", "datapath", "--help"], ["USAGE: returnpath bench datapath", "--services"]),
            (["doctor", "--help"], ["USAGE: returnpath doctor <subcommand>", "check", "explain"]),
            (["doctor", "check", "--help"], ["USAGE: returnpath doctor check", "--file", "--lab", "--host", "--netns", "--json"]),
            (["doctor", "explain", "--help"], ["USAGE: returnpath doctor explain", "--lab", "--netns"]),
            (["agent", "--help"], ["USAGE: returnpath agent", "--file", "--metrics-address", "--strategy", "--lab", "--netns", "--node"]),
            (["policy", "resolve", "--help"], ["USAGE: returnpath policy resolve", "--file", "--node", "--lab", "--host", "--netns", "--json"]),
            (["lab", "up", "--help"], ["USAGE: returnpath lab up", "--file", "--topology", "--name"]),
        ]
        for (command, words) in expected {
            let result = try returnpath(command)
            #expect(result.status == 0, "\(command)")
            for word in words { #expect(result.output.contains(word), "\(command) --help lacks \(word)") }
        }
        let bash = try returnpath("--generate-completion-script", "bash")
        #expect(bash.status == 0)
        #expect(bash.output.contains("_returnpath"))
    }
}

@Suite(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv"))
struct PrivilegeTests {
    /// As nobody, without capabilities: a clear message, and nothing created.
    @Test func withoutCapabilitiesTheErrorSaysWhatIsMissing() throws {
        // Only benchmarks make rp-b… namespaces; other suites running meanwhile make others.
        let before = NetworkNamespace.list().filter { $0.hasPrefix("rp-b") }
        let stderr = try execute("/usr/bin/env", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                                             returnpathBinary, "bench", "netlink", "--count", "1", "--rounds", "1",
                                             "--per-process-count", "0"])
        #expect(stderr.status == 1)
        #expect(stderr.errors.contains("returnpath needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN"))
        #expect(NetworkNamespace.list().filter { $0.hasPrefix("rp-b") } == before)
    }

}
