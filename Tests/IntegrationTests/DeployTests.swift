import Foundation
import Namespace
import Testing
import YAMLFile
#if canImport(Glibc)
import Glibc
#endif

let deployDirectory = repositoryRoot.appendingPathComponent("deploy")

/// The DaemonSet's agent container: command, args, probe ports, and the ConfigMap's policy text.
struct DaemonSetSpec {
    var command: [String]
    var args: [String]
    var livenessPath: String
    var readinessPath: String
    var probePort: Int
    var policyMountPath: String
    var policyText: String

    static func load() throws -> DaemonSetSpec {
        let daemonSet = try manifest("daemonset.yaml"), configMap = try manifest("configmap.yaml")
        let pod = try #require(daemonSet["spec"]?["template"]?["spec"])
        let container = try #require(pod["containers"]?.sequence?.items.first)
        let liveness = try #require(container["livenessProbe"]?["httpGet"])
        let readiness = try #require(container["readinessProbe"]?["httpGet"])
        let mounts = try #require(container["volumeMounts"]?.sequence?.items)
        let policyMount = try #require(mounts.first { $0["name"]?.text == "policy" })
        #expect(policyMount["subPath"] == nil, "a subPath mount never sees ConfigMap updates")
        #expect(pod["hostNetwork"]?.text == "true")
        let volumes = try #require(pod["volumes"]?.sequence?.items)
        let run = try #require(volumes.first { $0["name"]?.text == "run" }?["hostPath"])
        #expect(run["path"]?.text == "/run/returnpath")
        return DaemonSetSpec(
            command: try #require(container["command"]?.texts),
            args: try #require(container["args"]?.texts),
            livenessPath: try #require(liveness["path"]?.text),
            readinessPath: try #require(readiness["path"]?.text),
            probePort: try #require(liveness["port"]?.text.flatMap { Int($0) }),
            policyMountPath: try #require(policyMount["mountPath"]?.text),
            policyText: try #require(configMap["data"]?["policy.yaml"]?.text))
    }

    /// A manifest of deploy/kubernetes, read by the reader the policies and topologies go through.
    static func manifest(_ name: String) throws -> Node {
        let path = deployDirectory.appendingPathComponent("kubernetes/\(name)").path
        return try YAMLReader(file: path).compose(try YAMLReader.read(path))
    }
}

/// Just enough to walk a manifest.
private extension Node {
    subscript(key: String) -> Node? { mapping?.pairs.first { $0.key.scalar?.string == key }?.value }
    var text: String? { scalar?.string }
    /// A list of single values, or nil.
    var texts: [String]? {
        guard let items = sequence?.items else { return nil }
        let texts = items.compactMap(\.text)
        return texts.count == items.count ? texts : nil
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DeployTests {
    /// The manifests against Kubernetes' own schemas, offline (PyPI's kubernetes-validate carries them; scripts/
    /// deps.sh installs it).
    @Test func theManifestsValidate() throws {
        let files = ["configmap.yaml", "daemonset.yaml"].map { deployDirectory.appendingPathComponent("kubernetes/\($0)").path }
        let result = try execute("/usr/bin/env", ["kubernetes-validate", "--strict"] + files)
        #expect(result.status == 0, "kubernetes-validate: \(result.output)\(result.errors)")
        #expect(result.output.components(separatedBy: "passed").count - 1 == files.count, "\(result.output)")
    }

    /// The agent with exactly the DaemonSet's command and arguments, its policy directory laid out as kubelet lays
    /// out a ConfigMap volume (in a temporary directory) and --netns for a lab's node: it applies, answers the
    /// probes on the manifest's port, follows a ConfigMap update, and stops with exit 0 on SIGTERM.
    @Test func theAgentRunsWithTheDaemonSetsArguments() throws {
        let spec = try DaemonSetSpec.load()
        #expect(spec.command.first?.hasSuffix("/returnpath") == true)
        try withLab { lab in
            let node = try ns(lab, "node")
            try withTemporaryDirectory { dir in
                let fm = FileManager.default
                try fm.createDirectory(atPath: "\(dir)/..2026_01_01", withIntermediateDirectories: true)
                try spec.policyText.write(toFile: "\(dir)/..2026_01_01/policy.yaml", atomically: false, encoding: .utf8)
                try fm.createSymbolicLink(atPath: "\(dir)/..data", withDestinationPath: "..2026_01_01")
                try fm.createSymbolicLink(atPath: "\(dir)/policy.yaml", withDestinationPath: "..data/policy.yaml")
                let arguments = spec.args.map { $0.replacingOccurrences(of: spec.policyMountPath, with: dir) }
                #expect(arguments != spec.args, "the policy path is under \(spec.policyMountPath)")
                #expect(arguments.first == "agent")
                let agent = try startAgent(Array(arguments.dropFirst()) + ["--netns", node.name!])
                defer { agent.kill() }
                #expect(agent.output.contains("added"), "\(agent.output)")
                #expect(waitUntil(timeout: 5) { (try? httpGet(port: spec.probePort, spec.livenessPath).status) == 200 })
                #expect(try httpGet(port: spec.probePort, spec.readinessPath).status == 200)
                #expect(try client1Connects(lab))
                // JSON logs, as the DaemonSet asks.
                let first = agent.errors.split(separator: "\n").first.map(String.init) ?? ""
                #expect((try? JSONSerialization.jsonObject(with: Data(first.utf8))) != nil, "\(first)")
                // A ConfigMap update: eth1 only.
                try fm.createDirectory(atPath: "\(dir)/..2026_01_02", withIntermediateDirectories: true)
                let eth1Only = spec.policyText.components(separatedBy: "    - network: 10.111.222.0/24")[0]
                try eth1Only.write(toFile: "\(dir)/..2026_01_02/policy.yaml", atomically: false, encoding: .utf8)
                try fm.createSymbolicLink(atPath: "\(dir)/..data_tmp", withDestinationPath: "..2026_01_02")
                #expect(rename("\(dir)/..data_tmp", "\(dir)/..data") == 0)
                #expect(try waitUntil(timeout: 3) { !(try run(["ip", "-n", node.name!, "rule"]).contains("lookup 52002")) }, "\(agent.errors)")
                let stopped = agent.stop(SIGTERM)
                #expect(stopped.status == 0 && stopped.seconds < 1, "\(stopped)")
            }
        }
    }

    /// The systemd unit: ExecStart's arguments parse, reload is SIGHUP, stop is SIGTERM with the fix left in
    /// place; `systemd-analyze verify` finds nothing wrong (when it is installed).
    @Test func theSystemdUnitStartsReloadsAndStops() throws {
        let unitPath = deployDirectory.appendingPathComponent("systemd/returnpath-agent.service").path
        let unit = try String(contentsOfFile: unitPath, encoding: .utf8)
        func value(_ key: String) -> String? {
            unit.split(separator: "\n").first { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        let start = try #require(value("ExecStart")).split(separator: " ").map(String.init)
        #expect(start.first == "/usr/local/bin/returnpath")
        let parsed = try execute(returnpathBinary, Array(start.dropFirst()), environment: ["RETURNPATH_PARSE_ONLY": "1"])
        #expect(parsed.status == 0, "\(parsed.errors)")
        #expect(value("ExecReload") == "/bin/kill -HUP $MAINPID")
        #expect(value("KillSignal") == "SIGTERM")
        #expect(!start.contains("--remove-on-exit"))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("returnpath-agent-\(getpid()).service").path
            try unit.replacingOccurrences(of: "/usr/local/bin/returnpath", with: returnpathBinary).write(toFile: copy, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: copy) }
            let verified = try execute("/usr/bin/systemd-analyze", ["verify", copy])
            #expect(verified.status == 0, "\(verified.output)\(verified.errors)")
        }
        // The Containerfile's default command parses too.
        let containerfile = try String(contentsOf: deployDirectory.appendingPathComponent("kubernetes/Containerfile"), encoding: .utf8)
        let cmd = try #require(containerfile.split(separator: "\n").first { $0.hasPrefix("CMD ") })
        let words = try #require(try JSONSerialization.jsonObject(with: Data(cmd.dropFirst(4).utf8)) as? [String])
        #expect(try execute(returnpathBinary, words, environment: ["RETURNPATH_PARSE_ONLY": "1"]).status == 0)
    }
}
