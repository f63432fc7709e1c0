import Foundation
import Lab
import Namespace
import Testing

@Suite(.enabled(if: isRoot, "needs root"))
struct IPv6LabTests {
    /// docs/ipv6-lab.yaml: built, probed (symmetric over IPv6), and a second up keeps every IPv6 route (the kernel
    /// gives them metric 1024; converging must not take that for a different route).
    @Test func ipv6LabProbesAndConverges() throws {
        let path = repositoryRoot.appendingPathComponent("docs/ipv6-lab.yaml").path
        try withLab(file: path) { lab in
            let client = try ns(lab, "client")
            #expect(try run(["ip", "-n", client.name!, "-6", "route", "show", "fd00:5::/64"]).contains("via fd00:b::2"))
            let first = try probe(lab)
            #expect(first.status == 0, "\(first.raw.output)")
            #expect(first.flows["client>[fd00:5::1]:80"]?["verdict"] as? String == "symmetric")
            #expect(first.flows["client>[fd00:5::1]:80"]?["reply"] as? String == "six")
            let routes = try run(["ip", "-n", client.name!, "-6", "-j", "route", "show", "table", "all"])
            #expect(try returnpath("lab", "up", "-q", "-f", path, "--name", lab).status == 0)
            #expect(try run(["ip", "-n", client.name!, "-6", "-j", "route", "show", "table", "all"]) == routes)
        }
    }
}
