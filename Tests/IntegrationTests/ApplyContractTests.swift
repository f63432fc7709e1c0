import Foundation
import Lab
import Namespace
import Netlink
import ReturnRouting
import Testing

/// The sysctls apply may change, as `sysctl -a` prints them in the node's namespace: part of "the state".
func sysctls(_ node: NetworkNamespace) throws -> String {
    try run(["ip", "netns", "exec", node.name!, "sysctl", "-a", "-r", "src_valid_mark|rp_filter|fwmark_accept|fwmark_reflect"])
}

/// The rule, route and nft dumps plus the sysctls.
func state(_ node: NetworkNamespace) throws -> [String] { try dumps(node) + [try sysctls(node)] }

/// A policy for the seed's node (interfaces in the order given), with optional ownership lines.
func seedPolicy(strategy: String, interfaces: [String] = ["eth1", "eth2"], ownership: String = "") -> String {
    let entries = [
        "eth1": "    - {name: eth1, gateway: 10.111.221.21, services: [192.168.1.1], clients: [10.111.223.0/24]}\n",
        "eth2": "    - {name: eth2, gateway: 10.111.222.21, services: [192.168.2.1], clients: [10.111.224.0/24]}\n",
    ]
    return "apiVersion: returnpath.dev/v1alpha1\nkind: ReturnTrafficPolicy\nspec:\n  strategy: \(strategy)\n  interfaces:\n"
        + interfaces.compactMap { entries[$0] }.joined() + ownership
}

/// `returnpath bench connect` from a lab host: connections in a loop to ADDRESS:3000, counted.
final class LoopClient {
    let process = Process()
    let output = Pipe()

    init(lab: String, host: String, address: String, seconds: Double, concurrency: Int = 4) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", try ns(lab, host).name!, returnpathBinary, "bench", "connect",
                             "--address", address, "--port", "3000", "--seconds", String(seconds),
                             "--concurrency", String(concurrency), "--stall-ms", "700"]
        process.standardOutput = output
        try process.run()
    }

    /// completed, failed, stalled.
    func wait() throws -> (completed: Int, failed: Int, stalled: Int) {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        return (object["completed"] as? Int ?? -1, object["failed"] as? Int ?? -1, object["stalled"] as? Int ?? -1)
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct ApplyContractTests {
    /// Ownership is protocol AND band (rules), protocol AND table range (routes): foreign objects with our protocol
    /// outside them are never touched.
    @Test func ourProtocolOutsideOurBandIsNotOurs() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            try ip(node, "rule", "add", "pref", "1000", "from", "10.9.9.9", "lookup", "77", "proto", "212")
            try ip(node, "route", "add", "10.9.9.0/24", "via", "10.111.220.1", "table", "77", "proto", "212")
            let before = try dumps(node)
            for strategy in ["source", "mark"] {
                let applied = try applyJSON(["--lab", lab, "--strategy", strategy])
                #expect(applied.status == 0, "\(applied.raw.errors)")
                let objects = (applied.object["changes"] as? [[String: Any]] ?? []).compactMap { $0["object"] as? String }
                #expect(!objects.contains { $0.contains("10.9.9") }, "\(strategy) touched a foreign object: \(objects)")
                #expect(try run(["ip", "-n", node.name!, "rule"]).contains("1000:\tfrom 10.9.9.9 lookup 77 proto 212"))
            }
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try dumps(node) == before)
        }
    }

    /// A change of band settles: the record holds the ownership in use, a second apply is 0/0 with identical
    /// dumps, nothing of ours stays in the old band, and remove restores everything.
    @Test func anOwnershipChangeSettles() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let docs = repositoryRoot.appendingPathComponent("docs/policy-seed.yaml").path
            #expect(try applyJSON(["--lab", lab, "-f", docs]).status == 0)
            let moved = try String(contentsOfFile: docs, encoding: .utf8)
                .replacingOccurrences(of: "priorityBase: 20000", with: "priorityBase: 21000")
                .replacingOccurrences(of: "priorityCount: 10000", with: "priorityCount: 1000")
            let path = try writeTemporary(moved)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let switched = try applyJSON(["--lab", lab, "-f", path])
            #expect(switched.status == 0, "\(switched.raw.errors)")
            let settled = try dumps(node)
            let again = try applyJSON(["--lab", lab, "-f", path])
            #expect(again.object["added"] as? Int == 0 && again.object["removed"] as? Int == 0, "\(again.raw.output)")
            #expect(try dumps(node) == settled)
            let rules = try ipJSON(node, "rule")
            #expect(!rules.contains { ($0["priority"] as? Int).map { $0 >= 20000 && $0 < 21000 } == true }, "old band not emptied")
            #expect(rules.contains { $0["priority"] as? Int == 21100 })
            let (status, flows, raw) = try probe(lab)
            #expect(status == 0 && flows.values.allSatisfy { $0["verdict"] as? String == "symmetric" }, "\(raw.output)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try state(node) == before)
        }
    }

    /// A record that exists but does not decode is an error naming the file (exit 1), never "nothing to restore";
    /// nothing changes.
    @Test func anUnreadableRecordIsAnErrorNamingTheFile() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            #expect(try applyJSON(["--lab", lab, "--strategy", "mark"]).status == 0)
            let router = try ReturnRouter(namespace: node)
            let path = "/run/returnpath/applied/\(router.key).json"
            let good = try Data(contentsOf: URL(fileURLWithPath: path))
            try Data("{\"ownership\": 7".utf8).write(to: URL(fileURLWithPath: path))
            let applied = try state(node)
            for command in [["remove", "--lab", lab], ["apply", "--lab", lab, "--strategy", "source"]] {
                let result = try returnpath(command)
                #expect(result.status == 1)
                #expect(result.errors.contains(path) && result.errors.contains("does not decode"), "\(result.errors)")
                #expect(try state(node) == applied)
            }
            try good.write(to: URL(fileURLWithPath: path))
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try node.readSysctl("net.ipv4.conf.eth1.src_valid_mark") == "0")
        }
    }

    /// One writer per namespace: a second apply waits, then names the holder's PID and exits 1; it succeeds once
    /// the holder lets go within --wait.
    @Test func aSecondWriterWaitsThenNamesTheHolder() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let router = try ReturnRouter(namespace: node)
            var lock: ApplyLock? = try router.lock(role: "test", wait: 0)
            let refused = try returnpath("apply", "--lab", lab, "--strategy", "mark", "--wait", "0.3")
            #expect(refused.status == 1)
            #expect(refused.errors.contains("pid \(getpid()), test"), "\(refused.errors)")
            #expect(try state(node) == before)
            _ = lock
            lock = nil
            // Held by another process for 0.6 s while the second one waits: it goes ahead after.
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
            holder.arguments = ["\(ApplyLock.directory)/\(router.key).lock", "sleep", "0.6"]
            try holder.run()
            defer { holder.waitUntilExit() }
            Thread.sleep(forTimeInterval: 0.1)
            let waited = try returnpath("apply", "--lab", lab, "--strategy", "mark", "--wait", "10")
            #expect(waited.status == 0, "\(waited.errors)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// Many applies and removes at once: all succeed (they queue), and the original sysctl values survive.
    @Test func concurrentWritersKeepTheOriginals() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            for _ in 0..<3 {
                let commands = [["apply", "--lab", lab, "--strategy", "mark"], ["apply", "--lab", lab, "--strategy", "ingress"],
                                ["apply", "--lab", lab, "--strategy", "source"], ["remove", "--lab", lab],
                                ["apply", "--lab", lab, "--strategy", "static"], ["apply", "--lab", lab, "--strategy", "mark"]]
                let processes = try commands.map { arguments -> Process in
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: returnpathBinary)
                    process.arguments = arguments
                    process.standardOutput = FileHandle.nullDevice
                    process.standardError = FileHandle.nullDevice
                    try process.run()
                    return process
                }
                for process in processes {
                    process.waitUntilExit()
                    #expect(process.terminationStatus == 0, "\(process.arguments ?? [])")
                }
            }
            #expect(try applyJSON(["--lab", lab, "--strategy", "mark"]).status == 0)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try state(node) == before)
        }
    }

    /// Switching strategies and interface sets under a live load: no connection fails or stalls. Each switch
    /// installs the new path before it removes the old one, and the nftables table changes in one transaction.
    @Test func switchesUnderLoadLoseNoConnection() throws {
        try withLab { lab in
            let steps: [(String, [String])] = [
                ("mark", ["eth1", "eth2"]), ("ingress", ["eth1", "eth2"]), ("mark", ["eth1", "eth2"]),
                ("source", ["eth1", "eth2"]), ("ingress", ["eth1", "eth2"]), ("source", ["eth1", "eth2"]),
                ("mark", ["eth1", "eth2"]), ("mark", ["eth2", "eth1"]), ("mark", ["eth1"]), ("ingress", ["eth2", "eth1"]),
                ("static", ["eth1", "eth2"]), ("mark", ["eth1", "eth2"]),
            ]
            let path = try writeTemporary(seedPolicy(strategy: "mark"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(try applyJSON(["--lab", lab, "-f", path]).status == 0)
            let client = try LoopClient(lab: lab, host: "client1", address: "192.168.1.1", seconds: Double(steps.count) * 0.3 + 1.5)
            Thread.sleep(forTimeInterval: 0.5)
            for (strategy, interfaces) in steps {
                try seedPolicy(strategy: strategy, interfaces: interfaces).write(toFile: path, atomically: true, encoding: .utf8)
                let result = try returnpath("apply", "--lab", lab, "-f", path)
                #expect(result.status == 0, "\(strategy) \(interfaces): \(result.errors)")
                Thread.sleep(forTimeInterval: 0.3)
            }
            let counts = try client.wait()
            #expect(counts.completed > 100, "the load did not run: \(counts)")
            #expect(counts.failed == 0 && counts.stalled == 0, "\(counts)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// Crash safety: apply and remove killed (SIGKILL) after each step that changes the node. After every kill,
    /// apply converges (its second run is 0/0) and remove restores the dumps and sysctls of before.
    @Test(arguments: ["fresh", "switch", "remove"])
    func killedAtEveryStepItConvergesAndRemovesExactly(scenario: String) throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let before = try state(node)
            let env = ProcessInfo.processInfo.environment
            var step = 1
            while step < 60 {
                if scenario != "fresh" { #expect(try returnpath("apply", "--lab", lab, "--strategy", "source").status == 0) }
                let command = scenario == "remove" ? ["remove", "--lab", lab] : ["apply", "--lab", lab, "--strategy", "mark"]
                let killed = try execute(returnpathBinary, command, environment: env.merging(["RETURNPATH_FAILPOINT": String(step)]) { $1 })
                if killed.status == 0 { break }   // ran past its last step: every step was covered
                #expect(killed.status == SIGKILL, "step \(step) did not die by the failpoint: \(killed.errors)")
                if scenario == "remove" {
                    #expect(try returnpath("remove", "--lab", lab).status == 0, "step \(step)")
                } else {
                    let converge = try applyJSON(["--lab", lab, "--strategy", "mark"])
                    #expect(converge.status == 0, "step \(step): \(converge.raw.errors)")
                    let second = try applyJSON(["--lab", lab, "--strategy", "mark"])
                    #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0, "step \(step): \(second.raw.output)")
                    #expect(try returnpath("remove", "--lab", lab).status == 0)
                }
                #expect(try state(node) == before, "step \(step) of \(scenario): remove did not restore")
                step += 1
            }
            #expect(step > 3, "the failpoint never fired")
            #expect(step < 60)
            _ = try returnpath("remove", "--lab", lab)
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct ServicesFromTests {
    /// `servicesFrom`: the services are the global addresses on lo inside the prefixes, as they are when apply runs.
    @Test func servicesFollowTheAddressesOnLo() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let policy = """
                apiVersion: returnpath.dev/v1alpha1
                kind: ReturnTrafficPolicy
                spec:
                  strategy: mark
                  interfaces:
                    - {name: eth1, gateway: 10.111.221.21, servicesFrom: {interface: lo, prefixes: [192.168.1.0/24]}}
                    - {name: eth2, gateway: 10.111.222.21, servicesFrom: {interface: lo, prefixes: [192.168.2.0/24]}}
                """
            let path = try writeTemporary(policy)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let first = try applyJSON(["--lab", lab, "-f", path])
            #expect(first.status == 0, "\(first.raw.errors)")
            let set = { try run(["ip", "netns", "exec", node.name!, "nft", "-j", "list", "set", "inet", "returnpath", "svc_1"]) }
            #expect(try set().contains("\"192.168.1.1\""))
            let (status, _, raw) = try probe(lab)
            #expect(status == 0, "\(raw.output)")

            try ip(node, "address", "add", "192.168.1.7/32", "dev", "lo")
            let added = try applyJSON(["--lab", lab, "-f", path])
            let objects = (added.object["changes"] as? [[String: Any]] ?? []).compactMap { $0["object"] as? String }
            #expect(objects == ["element 192.168.1.7 of set svc_1"])
            try ip(node, "address", "del", "192.168.1.7/32", "dev", "lo")
            let removed = try applyJSON(["--lab", lab, "-f", path])
            #expect((removed.object["changes"] as? [[String: Any]] ?? []).compactMap { $0["object"] as? String } == ["element 192.168.1.7 of set svc_1"])
            #expect(removed.object["removed"] as? Int == 1)
            #expect(!(try set().contains("192.168.1.7")))
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct DeletedInterfaceTests {
    /// An interface of the last policy was deleted: its src_valid_mark cannot be put back (it went with the
    /// interface); apply and remove go on, and the record forgets it.
    @Test func aDeletedInterfaceDoesNotStopApplyOrRemove() throws {
        try withLab { lab in
            let node = try ns(lab, "node")
            let path = try writeTemporary(seedPolicy(strategy: "mark"))
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(try applyJSON(["--lab", lab, "-f", path]).status == 0)
            try ip(node, "link", "del", "eth2")
            try seedPolicy(strategy: "mark", interfaces: ["eth1"]).write(toFile: path, atomically: true, encoding: .utf8)
            let applied = try applyJSON(["--lab", lab, "-f", path])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            let record = try String(contentsOfFile: "/run/returnpath/applied/\(try ReturnRouter(namespace: node).key).json", encoding: .utf8)
            #expect(!record.contains("eth2"), "\(record)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
            #expect(try node.readSysctl("net.ipv4.conf.eth1.src_valid_mark") == "0")
        }
    }
}
