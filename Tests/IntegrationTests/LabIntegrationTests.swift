import Foundation
import Lab
import Namespace
import Netlink
import Synchronization
import Testing

/// The returnpath binary that `swift build --build-tests` made next to the tests.
let returnpathBinary = repositoryRoot.appendingPathComponent(".build/debug/returnpath").path

/// Runs returnpath with these arguments.
@discardableResult
func returnpath(_ arguments: String...) throws -> CLIResult {
    try returnpath(arguments)
}

func returnpath(_ arguments: [String]) throws -> CLIResult {
    try execute(returnpathBinary, arguments)
}

private let labCounter = Atomic<Int>(0)

/// A unique lab name: its namespaces are rp-t<pid>-<n>-<host>.
func uniqueLabName() -> String { "t\(getpid())-\(labCounter.add(1, ordering: .relaxed).newValue)" }

func namespaces(of lab: String) -> [String] { NetworkNamespace.list().filter { $0.hasPrefix("rp-\(lab)-") } }

func ns(_ lab: String, _ host: String) throws -> NetworkNamespace {
    try NetworkNamespace(named: Topology.namespaceName(lab: lab, host: host))
}

/// Brings a lab up (the seed unless `file`), runs `body`, and takes it down whatever happens.
func withLab<T>(file: String? = nil, _ body: (String) throws -> T) throws -> T {
    let lab = uniqueLabName()
    defer { _ = try? returnpath("lab", "down", "--name", lab) }
    let up = try returnpath(["lab", "up", "-q", "--name", lab] + (file.map { ["-f", $0] } ?? []))
    try #require(up.status == 0, "lab up failed: \(up.errors)")
    return try body(lab)
}

func servePIDs(_ lab: String) -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.filter { Int($0) != nil }.filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              !String(decoding: stat, as: UTF8.self).contains(") Z ") else { return false }
        return args.suffix(4) == ["lab", "serve", "--name", lab]
    }
}

func writeTemporary(_ text: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("rp-topology-\(getpid())-\(UUID().uuidString).yaml").path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct LabIntegrationTests {
    func addresses(_ namespace: NetworkNamespace, _ dev: String) throws -> [String] {
        let info = try ipJSON(namespace, "addr", "show", "dev", dev).first?["addr_info"] as? [[String: Any]] ?? []
        return info.filter { $0["scope"] as? String == "global" }.map { "\($0["local"] ?? "")/\($0["prefixlen"] ?? "")" }
    }

    func routes(_ namespace: NetworkNamespace) throws -> [String] {
        try ipJSON(namespace, "route", "show").map { r in
            "\(r["dst"] ?? "") " + (r["gateway"].map { "via \($0) " } ?? "") + "dev \(r["dev"] ?? "")"
        }.sorted()
    }

    @Test func seedLabMatchesTheDocsAndBehavesLikeThePOC() throws {
        try withLab { lab in
            #expect(Set(namespaces(of: lab)) == Set(["node", "gateway", "router", "client1", "client2"].map { "rp-\(lab)-\($0)" }))
            let node = try ns(lab, "node"), router = try ns(lab, "router"), gateway = try ns(lab, "gateway")
            let client1 = try ns(lab, "client1"), client2 = try ns(lab, "client2")
            #expect(try addresses(node, "eth0") == ["10.111.220.11/24"])
            #expect(try addresses(node, "eth1") == ["10.111.221.11/24"])
            #expect(try addresses(node, "eth2") == ["10.111.222.11/24"])
            #expect(try addresses(node, "lo") == ["192.168.1.1/32", "192.168.2.1/32"])
            #expect(try addresses(gateway, "eth0") == ["10.111.220.1/24"])
            #expect(Set(try ipJSON(router, "-4", "addr", "show").flatMap { ($0["addr_info"] as? [[String: Any]] ?? []) }
                            .compactMap { $0["local"] as? String })
                    == ["127.0.0.1", "10.111.221.21", "10.111.222.21", "10.111.223.21", "10.111.224.21"])
            #expect(try addresses(client1, "eth0") == ["10.111.223.23/24"])
            #expect(try addresses(client2, "eth0") == ["10.111.224.23/24"])
            #expect(try routes(node).contains("default via 10.111.220.1 dev eth0"))
            #expect(try routes(router).contains("192.168.1.1 via 10.111.221.11 dev eth1"))
            #expect(try routes(router).contains("192.168.2.1 via 10.111.222.11 dev eth2"))
            #expect(try routes(client1).contains("192.168.1.1 via 10.111.223.21 dev eth0"))
            #expect(try routes(client2).contains("192.168.2.1 via 10.111.224.21 dev eth0"))
            #expect(try routes(gateway) == ["10.111.220.0/24 dev eth0"])   // no way back to the clients
            #expect(try run(["ip", "netns", "exec", router.name!, "cat", "/proc/sys/net/ipv4/ip_forward"])
                        .trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try run(["ip", "netns", "exec", node.name!, "cat", "/proc/sys/net/ipv4/ip_forward"])
                        .trimmingCharacters(in: .whitespacesAndNewlines) == "0")

            // The POC's failure: client1 cannot connect (the SYN-ACK leaves by eth0); the router can.
            let svc1 = try #require(IPAddress("192.168.1.1")), svc2 = try #require(IPAddress("192.168.2.1"))
            #expect(fetchLine(in: client1, to: svc1, port: 3000, timeoutMilliseconds: 1500) == .timedOut)
            #expect(fetchLine(in: router, to: svc1, port: 3000, timeoutMilliseconds: 1500) == .replied("svc1"))
            #expect(fetchLine(in: router, to: svc2, port: 3000, timeoutMilliseconds: 1500) == .replied("svc2"))

            // As a user would: lab exec with nc.
            let fromRouter = try returnpath("lab", "exec", "--name", lab, "router", "--", "nc", "-w", "2", "192.168.1.1", "3000")
            #expect(fromRouter.status == 0)
            #expect(fromRouter.output == "svc1\n")
            let fromClient = try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "1", "192.168.1.1", "3000")
            #expect(fromClient.status != 0)
            #expect(fromClient.output.isEmpty)
            #expect(servePIDs(lab).count == 1)
        }
    }

    @Test func downRemovesEverythingAndSaysSoWhenThereIsNothing() throws {
        let lab = try withLab { $0 }
        #expect(namespaces(of: lab).isEmpty)
        #expect(servePIDs(lab).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(LabStore.defaultDirectory)/\(lab).json"))
        let again = try returnpath("lab", "down", "--name", lab)
        #expect(again.status == 0)
        #expect(again.output.contains("does not exist"))
    }

    @Test func secondUpChangesNothing() throws {
        try withLab { lab in
            let hosts = ["node", "gateway", "router", "client1", "client2"]
            func snapshot() throws -> [String] {
                try hosts.flatMap { host in
                    let namespace = try ns(lab, host)
                    return [try run(["ip", "-n", namespace.name!, "-j", "link", "show"]),
                            try run(["ip", "-n", namespace.name!, "-j", "addr", "show"]),
                            try run(["ip", "-n", namespace.name!, "-j", "route", "show", "table", "all"]),
                            try run(["ip", "-n", namespace.name!, "-j", "rule", "show"])]
                }
            }
            let before = try snapshot()
            let up = try returnpath("lab", "up", "--name", lab)
            #expect(up.status == 0)
            let after = try snapshot()
            for (index, (a, b)) in zip(before, after).enumerated() where a != b {
                Issue.record("\(hosts[index / 4]) dump \(index % 4) changed:\n\(a)\n---\n\(b)")
            }
            #expect(servePIDs(lab).count == 1)
            #expect(fetchLine(in: try ns(lab, "router"), to: try #require(IPAddress("192.168.2.1")), port: 3000,
                              timeoutMilliseconds: 1500) == .replied("svc2"))
        }
    }

    @Test func upRepairsDrift() throws {
        try withLab { lab in
            let node = try ns(lab, "node"), client1 = try ns(lab, "client1"), router = try ns(lab, "router")
            try ip(client1, "route", "del", "192.168.1.1")
            try ip(node, "addr", "add", "10.111.221.99/24", "dev", "eth1")
            try ip(node, "link", "del", "eth2")
            try router.writeSysctl("net.ipv4.ip_forward", "0")
            #expect(try returnpath("lab", "up", "-q", "--name", lab).status == 0)
            #expect(try routes(client1).contains("192.168.1.1 via 10.111.223.21 dev eth0"))
            #expect(try addresses(node, "eth1") == ["10.111.221.11/24"])
            #expect(try addresses(node, "eth2") == ["10.111.222.11/24"])
            #expect(try router.readSysctl("net.ipv4.ip_forward") == "1")
            #expect(fetchLine(in: router, to: try #require(IPAddress("192.168.2.1")), port: 3000,
                              timeoutMilliseconds: 1500) == .replied("svc2"))
        }
    }

    /// `lab up` killed (SIGKILL) right after each of its steps in turn (RETURNPATH_LAB_FAILPOINT=N): every kill must
    /// land mid-way — the process died by the signal and left the state of an incomplete lab — and `lab down` must
    /// then leave nothing: no namespace, no service process, no state file.
    @Test func downAfterSigkillOfUpLeavesNothing() throws {
        let environment = ProcessInfo.processInfo.environment
        var step = 1
        var sawNamespaces = false, sawServiceProcess = false
        while step < 60 {
            let lab = uniqueLabName()
            let up = try execute(returnpathBinary, ["lab", "up", "-q", "--name", lab],
                                 environment: environment.merging(["RETURNPATH_LAB_FAILPOINT": String(step)]) { $1 })
            if up.status == 0 {   // ran past its last step: every step was covered
                #expect(try returnpath("lab", "down", "--name", lab).status == 0)
                break
            }
            #expect(up.status == SIGKILL, "step \(step) did not die by the failpoint: \(up.errors)")
            let state = try LabStore().load(lab)
            #expect(state != nil && state?.complete == false, "step \(step): no state of an incomplete lab was left")
            sawNamespaces = sawNamespaces || !namespaces(of: lab).isEmpty
            sawServiceProcess = sawServiceProcess || !servePIDs(lab).isEmpty
            let down = try returnpath("lab", "down", "--name", lab)
            #expect(down.status == 0, "step \(step): \(down.errors)")
            #expect(namespaces(of: lab).isEmpty, "step \(step) left \(namespaces(of: lab))")
            #expect(servePIDs(lab).isEmpty, "step \(step) left a service process")
            #expect(!FileManager.default.fileExists(atPath: "\(LabStore.defaultDirectory)/\(lab).json"))
            step += 1
        }
        // The seed has 5 hosts: at least a step per namespace, then links, addresses, … and the service process.
        #expect(step > 15, "the failpoint fired only \(step - 1) times")
        #expect(step < 60, "lab up never completed")
        #expect(sawNamespaces && sawServiceProcess, "no kill left namespaces or a service process behind")
    }

    @Test func foreignNamespacesAreLeftAlone() throws {
        let lab = uniqueLabName()
        let similar = ["rp-\(lab)-node2", "rp-\(lab)-other"]
        for name in similar { try run(["ip", "netns", "add", name]) }
        defer { for name in similar { _ = try? run(["ip", "netns", "del", name]) } }
        try run(["ip", "-n", similar[0], "link", "add", "eth1", "type", "veth", "peer", "name", "eth2"])
        #expect(try returnpath("lab", "up", "-q", "--name", lab).status == 0)
        let down = try returnpath("lab", "down", "--name", lab)
        #expect(down.status == 0)
        #expect(Set(namespaces(of: lab)) == Set(similar))
        #expect(try ipJSON(try NetworkNamespace(named: similar[0]), "link", "show").count == 3)
    }

    @Test func aForeignNamespaceInTheWayStopsUpBeforeAnythingIsCreated() throws {
        let lab = uniqueLabName()
        let foreign = "rp-\(lab)-router"
        try run(["ip", "netns", "add", foreign])
        defer { _ = try? run(["ip", "netns", "del", foreign]) }
        let up = try returnpath("lab", "up", "-q", "--name", lab)
        #expect(up.status == 1)
        #expect(up.errors.contains("rp-\(lab)-router"))
        #expect(up.errors.contains("not part of this lab"))
        #expect(namespaces(of: lab) == [foreign])
        #expect(try returnpath("lab", "down", "--name", lab).status == 0)
        #expect(namespaces(of: lab) == [foreign])
    }

    @Test func invalidTopologyIsRefusedWithItsLocationAndNothingIsCreated() throws {
        let path = try writeTemporary("""
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              one:
                interfaces:
                  eth0: {network: a, address: 10.0.0.1}
              two:
                interfaces:
                  eth0: {network: a, adress: 10.0.0.2}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lab = uniqueLabName()
        let up = try returnpath("lab", "up", "-f", path, "--name", lab)
        #expect(up.status == 2)
        #expect(up.errors.contains("\(path):9: unknown key \"adress\""))
        // Other suites make namespaces meanwhile: look only at this lab's.
        #expect(namespaces(of: lab).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(LabStore.defaultDirectory)/\(lab).json"))
        #expect(try returnpath("lab", "up", "-f", "/nonexistent/topology.yaml").status == 2)
    }

    @Test func aFailureMidwayRemovesWhatTheRunCreated() throws {
        // Valid as a file, but the kernel has no such sysctl: step 4 fails after namespaces and links exist.
        let path = try writeTemporary("""
            networks:
              a: {subnet: 10.0.0.0/24}
            hosts:
              one:
                sysctls: {net.ipv4.conf.eth9.rp_filter: 1}
                interfaces:
                  eth0: {network: a, address: 10.0.0.1}
              two:
                interfaces:
                  eth0: {network: a, address: 10.0.0.2}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lab = uniqueLabName()
        let up = try returnpath("lab", "up", "-q", "-f", path, "--name", lab)
        #expect(up.status == 1)
        #expect(up.errors.contains("set sysctl net.ipv4.conf.eth9.rp_filter=1 on host one"))
        #expect(namespaces(of: lab).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(LabStore.defaultDirectory)/\(lab).json"))
    }

    @Test func networksOfThreeUseABridge() throws {
        let path = try writeTemporary("""
            name: bridged
            networks:
              lan: {subnet: 10.5.0.0/24}
            hosts:
              server:
                interfaces:
                  eth0: {network: lan, address: 10.5.0.1}
                services:
                  - {address: 10.5.0.1, port: 8080, reply: hello}
              a:
                role: client
                interfaces:
                  eth0: {network: lan, address: 10.5.0.2}
              b:
                role: client
                interfaces:
                  eth0: {network: lan, address: 10.5.0.3}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try withLab(file: path) { lab in
            let server = try #require(IPAddress("10.5.0.1"))
            #expect(fetchLine(in: try ns(lab, "a"), to: server, port: 8080, timeoutMilliseconds: 2000) == .replied("hello"))
            #expect(fetchLine(in: try ns(lab, "b"), to: server, port: 8080, timeoutMilliseconds: 2000) == .replied("hello"))
            let bridge = try ipJSON(try NetworkNamespace(named: Topology.switchNamespaceName(lab: lab)), "link", "show", "type", "bridge")
            #expect(bridge.count == 1)
        }
    }

    @Test func statusAndGraphReadTheRunningLab() throws {
        try withLab { lab in
            let status = try returnpath("lab", "status", "--name", lab, "--json")
            #expect(status.status == 0)
            let object = try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any]
            let labs = object?["labs"] as? [[String: Any]]
            #expect(labs?.count == 1)
            let services = labs?.first?["services"] as? [[String: Any]] ?? []
            #expect(services.map { $0["answer"] as? String } == ["svc1", "svc2"])
            #expect(services.allSatisfy { $0["answers"] as? Bool == true })
            let hosts = labs?.first?["hosts"] as? [[String: Any]] ?? []
            #expect(hosts.count == 5)
            #expect(hosts.allSatisfy { $0["exists"] as? Bool == true })
            let text = try returnpath("lab", "status", "--name", lab)
            #expect(text.output.contains("192.168.1.1:3000"))
            let graph = try returnpath("lab", "graph", "--name", lab, "--format", "mermaid")
            #expect(graph.status == 0)
            #expect(graph.output.hasPrefix("graph LR"))
        }
        #expect(try returnpath("lab", "status", "--name", "nosuchlab").status == 2)
        #expect(try returnpath("lab", "graph", "--format", "svg").status == 2)
    }
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct LabStateTests {
    /// A state file that does not decode is an error naming it (not "no such lab"); lab down still removes the lab
    /// by its markers.
    @Test func anUnreadableStateIsAnErrorAndDownStillWorks() throws {
        let lab = uniqueLabName()
        defer { _ = try? returnpath("lab", "down", "--name", lab) }
        #expect(try returnpath("lab", "up", "-q", "--name", lab).status == 0)
        let path = "\(LabStore.defaultDirectory)/\(lab).json"
        try Data("{\"name\": 7".utf8).write(to: URL(fileURLWithPath: path))
        let status = try returnpath("lab", "status", "--name", lab)
        #expect(status.status == 1, "\(status.errors)")
        #expect(status.errors.contains(path) && status.errors.contains("does not decode"), "\(status.errors)")
        #expect(try returnpath("lab", "down", "--name", lab).status == 0)
        #expect(namespaces(of: lab).isEmpty)
    }
}
