import Foundation
import Namespace
import Synchronization
import Testing

/// A rack node: eth0 on the management network, ens5 on the rack's network with two ToRs, ens6 on a network where
/// the node has no address of its own; a DHCP-style default route through ens5 with a higher metric.
let rackTopology = """
    name: rack
    networks:
      primary: {subnet: 10.20.0.0/24}
      rack:    {subnet: 10.1.2.0/24, subnet6: "fd00:12::/64"}
      uplink:  {subnet: 10.30.0.0/24, subnet6: "fd00:30::/64"}
      bare:    {subnet: 10.1.9.0/24}
    hosts:
      node:
        interfaces:
          eth0: {network: primary, address: 10.20.0.11}
          ens5: {network: rack, addresses: [10.1.2.11, "fd00:12::11"]}
          ens6: {network: bare}
          lo: {addresses: [192.168.1.1/32, "fd00:1::1/128"]}
        routes:
          - {to: default, via: 10.20.0.1}
        services:
          - {address: 192.168.1.1, port: 3000, reply: svc1}
          - {address: "fd00:1::1", port: 3000, reply: svc1}
      gateway:
        interfaces:
          eth0: {network: primary, address: 10.20.0.1}
      tor1:
        sysctls: {net.ipv4.ip_forward: 1, net.ipv6.conf.all.forwarding: 1}
        interfaces:
          eth0: {network: rack, addresses: [10.1.2.2, "fd00:12::2"]}
          eth1: {network: uplink, addresses: [10.30.0.2, "fd00:30::2"]}
          eth2: {network: bare, address: 10.1.9.2}
        routes:
          - {to: 192.168.1.1, via: 10.1.2.11}
          - {to: "fd00:1::1", via: "fd00:12::11"}
      tor2:
        sysctls: {net.ipv4.ip_forward: 1, net.ipv6.conf.all.forwarding: 1}
        interfaces:
          eth0: {network: rack, addresses: [10.1.2.3, "fd00:12::3"]}
          eth1: {network: uplink, addresses: [10.30.0.3, "fd00:30::3"]}
        routes:
          - {to: 192.168.1.1, via: 10.1.2.11}
          - {to: "fd00:1::1", via: "fd00:12::11"}
      client1:
        role: client
        interfaces:
          eth0: {network: uplink, addresses: [10.30.0.23, "fd00:30::23"]}
        routes:
          - {to: 192.168.1.1, via: 10.30.0.2}
          - {to: "fd00:1::1", via: "fd00:30::2"}

    """

/// One policy for every node: the rack network by its prefix and the gateway DHCP gave; per-node items.
let clusterPolicy = """
    apiVersion: returnpath.dev/v1alpha1
    kind: ReturnTrafficPolicy
    metadata: {name: cluster}
    spec:
      strategy: source
      interfaces:
        - {network: 10.1.2.0/24, gateway: auto, services: [192.168.1.1]}
      nodes:
        - names: [bare-*]
          interfaces:
            - {name: ens6, gateway: 10.1.9.2, onlink: true, services: [192.168.1.1]}
        - names: [ecmp-*]
          interfaces:
            - {network: 10.1.2.0/24, gateways: [10.1.2.2, 10.1.2.3], services: [192.168.1.1], clients: [10.30.0.0/24]}
        - names: [late-*]
          interfaces:
            - {network: 10.1.9.0/24, gateway: 10.1.9.2, services: [192.168.1.1]}
        - names: [auto-*]
          interfaces:
            - {name: ens6, gateway: auto, services: [192.168.1.1]}
        - names: [ecmp6-*]
          interfaces:
            - {network: 10.1.2.0/24, gateways: [10.1.2.2, 10.1.2.3, "fd00:12::2", "fd00:12::3"], services: [192.168.1.1, "fd00:1::1"]}

    """

func withRackLab<T>(_ body: (String, NetworkNamespace, String) throws -> T) throws -> T {
    let topology = try writeTemporary(rackTopology), policy = try writeTemporary(clusterPolicy)
    defer { unlink(topology); unlink(policy) }
    return try withLab(file: topology) { lab in
        let node = try ns(lab, "node")
        // As DHCP installs it: the secondary NIC's router, a higher metric than the management default.
        try ip(node, "route", "add", "default", "via", "10.1.2.2", "dev", "ens5", "proto", "dhcp", "metric", "101")
        return try body(lab, node, policy)
    }
}

func tableRoutes(_ node: NetworkNamespace, _ table: String) throws -> [[String: Any]] {
    try ipJSON(node, "route", "show", "table", table)
}

@Suite(.enabled(if: isRoot, "needs root"), .serialized)
struct ClusterPolicyTests {
    @Test func theRackInterfaceAndItsDHCPGatewayAreFoundAndApplied() throws {
        try withRackLab { lab, node, policy in
            let resolved = try returnpath("policy", "resolve", "-f", policy, "--lab", lab, "--node", "rack2-node1", "--json")
            #expect(resolved.status == 0, "\(resolved.errors)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(resolved.output.utf8)) as? [String: Any])
            #expect(object["node"] as? String == "rack2-node1" && object["nodeFrom"] as? String == "--node")
            let entry = try #require((object["interfaces"] as? [[String: Any]])?.first)
            #expect(entry["interface"] as? String == "ens5" && entry["gateways"] as? [String] == ["10.1.2.2"])
            let sources = (entry["sources"] as? [[String: String]] ?? []).map { "\($0["value"] ?? ""): \($0["from"] ?? "")" }
            #expect(sources.contains("gateway 10.1.2.2: main table, default via 10.1.2.2 dev ens5 proto dhcp metric 101"), "\(sources)")

            let first = try applyJSON(["--lab", lab, "-f", policy, "--node", "rack2-node1"])
            #expect(first.status == 0 && first.object["added"] as? Int == 2, "\(first.raw.errors)")
            let table = try tableRoutes(node, "52001")
            #expect(table.first?["gateway"] as? String == "10.1.2.2" && table.first?["dev"] as? String == "ens5", "\(table)")
            #expect(try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "2", "192.168.1.1", "3000").output == "svc1\n")
            let second = try applyJSON(["--lab", lab, "-f", policy, "--node", "rack2-node1"])
            #expect(second.object["added"] as? Int == 0 && second.object["removed"] as? Int == 0)
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    @Test func anEntryThatDoesNotResolveExitsTwoAndChangesNothing() throws {
        try withRackLab { lab, node, policy in
            let before = try state(node)
            let result = try returnpath("apply", "--lab", lab, "-f", policy, "--node", "late-node1")
            #expect(result.status == 2)
            #expect(result.errors.contains(":17: network 10.1.9.0/24 on node late-node1: no interface has an address in 10.1.9.0/24"), "\(result.errors)")
            let resolve = try returnpath("policy", "resolve", "-f", policy, "--lab", lab, "--node", "late-node1")
            #expect(resolve.status == 2 && resolve.output.contains("does not resolve"))
            #expect(try state(node) == before)
        }
    }

    /// Two routers: one multipath route in the interface's table, read back from the kernel; a second apply 0/0;
    /// static's client routes are multipath too.
    @Test func twoRoutersMakeAMultipathTable() throws {
        try withRackLab { lab, node, policy in
            #expect(try applyJSON(["--lab", lab, "-f", policy, "--node", "ecmp-1"]).status == 0)
            let route = try #require(try tableRoutes(node, "52001").first)
            let hops = (route["nexthops"] as? [[String: Any]] ?? []).map { "\($0["gateway"] ?? "") \($0["dev"] ?? "")" }
            #expect(hops == ["10.1.2.2 ens5", "10.1.2.3 ens5"], "\(route)")
            #expect(try applyJSON(["--lab", lab, "-f", policy, "--node", "ecmp-1"]).object["added"] as? Int == 0)
            #expect(try applyJSON(["--lab", lab, "-f", policy, "--node", "ecmp-1", "--strategy", "static"]).status == 0)
            let client = try #require(try tableRoutes(node, "52000").first)
            #expect(client["dst"] as? String == "10.30.0.0/24" && (client["nexthops"] as? [Any])?.count == 2, "\(client)")
            #expect(try applyJSON(["--lab", lab, "-f", policy, "--node", "ecmp-1", "--strategy", "static"]).object["added"] as? Int == 0)
            for _ in 0..<4 {
                #expect(try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "2", "192.168.1.1", "3000").output == "svc1\n")
            }
            let doctor = try returnpath("doctor", "--lab", lab, "-f", policy, "--node", "ecmp-1")
            #expect(doctor.status == 0, "\(doctor.output)")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// An interface without an address of its own: the gateway is used on-link, replies reach the client.
    @Test func onlinkOnAnAddresslessInterface() throws {
        try withRackLab { lab, node, policy in
            let applied = try applyJSON(["--lab", lab, "-f", policy, "--node", "bare-1"])
            #expect(applied.status == 0, "\(applied.raw.errors)")
            let route = try #require(try tableRoutes(node, "52001").first)
            #expect(route["gateway"] as? String == "10.1.9.2" && route["dev"] as? String == "ens6"
                    && (route["flags"] as? [String])?.contains("onlink") == true, "\(route)")
            // tor1 sends the request in by ens5; the reply leaves by ens6, on-link to tor1, which forwards it.
            #expect(try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "2", "192.168.1.1", "3000").output == "svc1\n")
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// The agent leaves out what does not resolve (not ready, with the reason), takes it in once it does, and
    /// follows a gateway that DHCP changes.
    @Test func theAgentTakesInAnEntryOnceItResolvesAndFollowsTheGateway() throws {
        try withRackLab { lab, node, policy in
            let agent = try startAgent(["--lab", lab, "-f", policy, "--metrics-address", "127.0.0.1:0"], environment: ["NODE_NAME": "late-node1"])
            defer { agent.kill() }
            let port = try #require(agent.metricsPort())
            let notReady = try httpGet(port: port, "/readyz")
            #expect(notReady.status == 503 && notReady.body.contains("no interface has an address in 10.1.9.0/24"), "\(notReady)")
            try ip(node, "address", "add", "10.1.9.11/24", "dev", "ens6")
            #expect(waitUntil(timeout: 5) { (try? tableRoutes(node, "52001").first?["gateway"] as? String) == "10.1.9.2" })
            #expect(waitUntil(timeout: 5) { (try? httpGet(port: port, "/readyz").status) == 200 })
            var metrics = parseMetrics(try httpGet(port: port, "/metrics").body)
            #expect(metrics["returnpath_interface_active{interface=\"ens6\"}"] == 1, "\(metrics)")
            #expect(metrics["returnpath_gateway_up{interface=\"ens6\",gateway=\"10.1.9.2\"}"] == 1, "\(metrics)")
            // Down: left out, and the metrics say so.
            try ip(node, "link", "set", "ens6", "down")
            #expect(waitUntil(timeout: 5) {
                metrics = parseMetrics((try? httpGet(port: port, "/metrics").body) ?? "")
                return metrics["returnpath_interface_active{interface=\"ens6\"}"] == 0
            }, "\(metrics)")
            #expect(metrics["returnpath_gateway_up{interface=\"ens6\",gateway=\"10.1.9.2\"}"] == 0)
            try ip(node, "link", "set", "ens6", "up")
            agent.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)

            // gateway: auto on a node of no item: DHCP's router, then the one a renew gives.
            let follow = try startAgent(["--lab", lab, "-f", policy], environment: ["NODE_NAME": "rack2-node1"])
            defer { follow.kill() }
            #expect(try tableRoutes(node, "52001").first?["gateway"] as? String == "10.1.2.2")
            try ip(node, "route", "replace", "default", "via", "10.1.2.3", "dev", "ens5", "proto", "dhcp", "metric", "101")
            #expect(waitUntil(timeout: 5) { (try? tableRoutes(node, "52001").first?["gateway"] as? String) == "10.1.2.3" },
                    "\(follow.errors)")
            follow.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// The routers a table's default route sends through: "GATEWAY DEV" per next hop.
    func defaultHops(_ node: NetworkNamespace, _ table: String) -> [String] {
        guard let route = (try? tableRoutes(node, table))?.first else { return [] }
        if let hops = route["nexthops"] as? [[String: Any]] { return hops.map { "\($0["gateway"] ?? "") \($0["dev"] ?? "")" } }
        return ["\(route["gateway"] ?? "") \(route["dev"] ?? "")"]
    }

    /// One of two routers stops answering (its interface to the rack network down inside its namespace; the node's
    /// link stays up, as behind a switch): the agent's ARP probes notice, replies move to the other, no connection
    /// of a client connecting in a loop fails; when it answers again it is taken back.
    @Test func aRouterThatStopsAnsweringIsSkippedAndTakenBack() throws {
        try withRackLab { lab, node, policy in
            let agent = try startAgent(["--lab", lab, "-f", policy, "--metrics-address", "127.0.0.1:0"], environment: ["NODE_NAME": "ecmp-1"])
            defer { agent.kill() }
            let port = try #require(agent.metricsPort())
            #expect(defaultHops(node, "52001") == ["10.1.2.2 ens5", "10.1.2.3 ens5"])
            let tor2 = try ns(lab, "tor2")
            let client = try LoopClient(lab: lab, host: "client1", address: "192.168.1.1", seconds: 3)
            usleep(500_000)
            try ip(tor2, "link", "set", "eth0", "down")
            #expect(waitUntil(timeout: 2) { defaultHops(node, "52001") == ["10.1.2.2 ens5"] }, "\(agent.errors)")
            var metrics = parseMetrics(try httpGet(port: port, "/metrics").body)
            #expect(metrics["returnpath_gateway_up{interface=\"ens5\",gateway=\"10.1.2.3\"}"] == 0, "\(metrics)")
            #expect(metrics["returnpath_gateway_up{interface=\"ens5\",gateway=\"10.1.2.2\"}"] == 1)
            let counts = try client.wait()
            #expect(counts.completed > 0 && counts.failed == 0, "\(counts)")
            try ip(tor2, "link", "set", "eth0", "up")
            #expect(waitUntil(timeout: 3) { defaultHops(node, "52001") == ["10.1.2.2 ens5", "10.1.2.3 ens5"] }, "\(agent.errors)")
            metrics = parseMetrics(try httpGet(port: port, "/metrics").body)
            #expect(metrics["returnpath_gateway_up{interface=\"ens5\",gateway=\"10.1.2.3\"}"] == 1)
            #expect(metrics["returnpath_reconciles_total{trigger=\"gateway\"}"].map { $0 >= 2 } == true, "\(metrics)")
            agent.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// A connection opened before the failure goes on: its replies were hashed onto the router that stops; once the
    /// agent skips it they leave by the other, and the connection's next exchanges get their answers.
    @Test func aConnectionOpenedBeforeTheFailureContinues() throws {
        try withRackLab { lab, node, policy in
            let agent = try startAgent(["--lab", lab, "-f", policy], environment: ["NODE_NAME": "ecmp-1"])
            defer { agent.kill() }
            // Which router the node's replies to client1 take (L3 hash: every connection the same one); the
            // requests come in through the other.
            let route = try #require(try ipJSON(node, "route", "get", "10.30.0.23", "from", "192.168.1.1").first)
            let replyRouter = try #require(route["gateway"] as? String)
            let (dead, requests) = replyRouter == "10.1.2.2" ? ("tor1", "10.30.0.3") : ("tor2", "10.30.0.2")
            try ip(try ns(lab, "client1"), "route", "replace", "192.168.1.1", "via", requests)
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            server.arguments = ["ip", "netns", "exec", node.name!, "socat", "TCP-LISTEN:4000,bind=192.168.1.1,reuseaddr", "EXEC:cat"]
            try server.run()
            // SIGKILL: socat under Foundation's Process does not end on SIGTERM here.
            defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
            usleep(200_000)
            let client = Process(), input = Pipe(), output = Pipe()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = ["ip", "netns", "exec", try ns(lab, "client1").name!, "socat", "-", "TCP:192.168.1.1:4000"]
            client.standardInput = input
            client.standardOutput = output
            try client.run()
            defer { kill(client.processIdentifier, SIGKILL); client.waitUntilExit() }
            let received = Mutex("")
            let reader = Thread {
                while true {
                    let data = output.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    received.withLock { $0 += String(decoding: data, as: UTF8.self) }
                }
            }
            reader.start()
            input.fileHandleForWriting.write(Data("before\n".utf8))
            #expect(waitUntil(timeout: 3) { received.withLock { $0 } == "before\n" })
            try ip(try ns(lab, dead), "link", "set", "eth0", "down")
            input.fileHandleForWriting.write(Data("during\n".utf8))
            // Lost while the route still points at the dead router, then retransmitted over the other.
            #expect(waitUntil(timeout: 5) { received.withLock { $0 } == "before\nduring\n" }, "\(received.withLock { $0 }); \(agent.errors)")
            input.fileHandleForWriting.write(Data("after\n".utf8))
            #expect(waitUntil(timeout: 3) { received.withLock { $0 } == "before\nduring\nafter\n" })
            #expect(client.isRunning, "the connection should still be open")
            try ip(try ns(lab, dead), "link", "set", "eth0", "up")
            agent.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// IPv6 routers are watched by neighbour solicitation: one stops, both families' tables leave it, and it is
    /// taken back; a client connects over IPv6 throughout.
    @Test func anIPv6RouterThatStopsAnsweringIsSkippedToo() throws {
        try withRackLab { lab, node, policy in
            let agent = try startAgent(["--lab", lab, "-f", policy], environment: ["NODE_NAME": "ecmp6-1"])
            defer { agent.kill() }
            func hops6() -> [String] {
                guard let route = (try? ipJSON(node, "-6", "route", "show", "table", "52001"))?.first(where: { $0["dst"] as? String == "default" }) else { return [] }
                if let hops = route["nexthops"] as? [[String: Any]] { return hops.map { "\($0["gateway"] ?? "")" } }
                return ["\(route["gateway"] ?? "")"]
            }
            #expect(hops6() == ["fd00:12::2", "fd00:12::3"], "\(agent.errors)")
            #expect(defaultHops(node, "52001") == ["10.1.2.2 ens5", "10.1.2.3 ens5"])
            try ip(try ns(lab, "tor2"), "link", "set", "eth0", "down")
            #expect(waitUntil(timeout: 2) { hops6() == ["fd00:12::2"] && defaultHops(node, "52001") == ["10.1.2.2 ens5"] },
                    "\(hops6()) \(agent.errors)")
            #expect(try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "2", "fd00:1::1", "3000").output == "svc1\n")
            try ip(try ns(lab, "tor2"), "link", "set", "eth0", "up")
            // IPv6 drops a link's global addresses when it goes down (keep_addr_on_down=0): the router gets its back.
            try ip(try ns(lab, "tor2"), "address", "add", "fd00:12::3/64", "dev", "eth0", "nodad")
            #expect(waitUntil(timeout: 3) { hops6() == ["fd00:12::2", "fd00:12::3"] }, "\(hops6()) \(agent.errors)")
            agent.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }

    /// gateway: auto with no route yet: not ready, the entry left out; the route DHCP would install appears (on-link
    /// on an address-less NIC): ready, the entry in, its table's route on-link as the node's own.
    @Test func theAgentIsReadyOnceTheRouteAppears() throws {
        try withRackLab { lab, node, policy in
            let agent = try startAgent(["--lab", lab, "-f", policy, "--metrics-address", "127.0.0.1:0"], environment: ["NODE_NAME": "auto-1"])
            defer { agent.kill() }
            let port = try #require(agent.metricsPort())
            let notReady = try httpGet(port: port, "/readyz")
            #expect(notReady.status == 503 && notReady.body.contains("auto found no IPv4 route with a gateway through ens6"), "\(notReady)")
            #expect((try? tableRoutes(node, "52001"))?.isEmpty ?? true)   // no table at all, or an empty one
            try ip(node, "route", "add", "default", "via", "10.1.9.2", "dev", "ens6", "onlink", "proto", "dhcp", "metric", "102")
            #expect(waitUntil(timeout: 5) { (try? httpGet(port: port, "/readyz").status) == 200 }, "\(agent.errors)")
            let route = try #require(try tableRoutes(node, "52001").first)
            #expect(route["gateway"] as? String == "10.1.9.2" && (route["flags"] as? [String])?.contains("onlink") == true, "\(route)")
            #expect(try returnpath("lab", "exec", "--name", lab, "client1", "--", "nc", "-w", "2", "192.168.1.1", "3000").output == "svc1\n")
            agent.stop()
            #expect(try returnpath("remove", "--lab", lab).status == 0)
        }
    }
}
