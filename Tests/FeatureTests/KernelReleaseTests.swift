@testable import Doctor
@testable import Netlink
import SystemPackage
import Testing

/// The kernel's answer to a packet that fails rp_filter changed in 6.13 (docs/kernel-notes.md): doctor's simulation
/// of the seed node gives the errno of the release it is told the node runs. `scripts/test --kernel 6.1|6.12`
/// checks the same against the real kernels (DoctorExplainTests).
struct KernelReleaseTests {
    @Test func releasesAreReadAsDebianAndOthersWriteThem() {
        for (text, major, minor) in [("6.1.0-57-amd64", 6, 1), ("6.12.95+deb12-amd64", 6, 12), ("6.18.44-fc-v1147", 6, 18),
                                     ("5.14.0-427.el9.x86_64", 5, 14), ("6.8.0-45-generic", 6, 8)] {
            let release = KernelRelease(text)
            #expect(release?.major == major && release?.minor == minor, "\(text)")
            #expect(release?.description == text)
        }
        for text in ["", "linux", "6", "6.", ".1.0", "v6.1"] { #expect(KernelRelease(text) == nil, "\(text)") }
        #expect(KernelRelease(major: 6, minor: 12) < KernelRelease(major: 6, minor: 13))
        #expect(KernelRelease(major: 5, minor: 15) < KernelRelease(major: 6, minor: 1))
    }

    @Test func aStrictReversePathFailureIsEXDEVBefore613AndEINVALSince() throws {
        var node = try SeedNode()
        node.sysctls[NodeState.interfaceKey("all", "rp_filter")] = "1"
        // client1's SYN on eth1: the way back to it is the default route via eth0, not eth1.
        let syn = FlowKey(source: try address("10.111.223.23"), destination: try address("192.168.1.1"), inputInterface: "eth1",
                          ipProtocol: 6, sourcePort: 41000, destinationPort: 3000)
        // A packet from one of the node's own addresses: martian, EINVAL everywhere.
        let martian = FlowKey(source: try address("10.111.220.11"), destination: try address("192.168.1.1"), inputInterface: "eth1",
                              ipProtocol: 6, sourcePort: 41000, destinationPort: 3000)
        for (release, rpf) in [("6.1.0-57-amd64", Errno.improperLink), ("6.12.95+deb12-amd64", .improperLink),
                               ("6.13.0", .invalidArgument), ("6.18.44-fc-v1147", .invalidArgument)] {
            var state = node.state
            state.kernel = KernelRelease(release)
            let path = PacketPath(state)
            let (result, check) = path.route(arriving: syn)
            #expect(result.errno == rpf, "\(release): \(result)")
            #expect(check?.passed == false && check?.martian == false, "\(release): \(check?.reason ?? "no check")")
            let (refused, martianCheck) = path.route(arriving: martian)
            #expect(refused.errno == .invalidArgument, "\(release): \(refused)")
            #expect(martianCheck?.martian == true, "\(release): \(martianCheck?.reason ?? "no check")")
        }
        // Unknown: taken as a current kernel.
        var state = node.state
        state.kernel = nil
        #expect(PacketPath(state).route(arriving: syn).result.errno == .invalidArgument)
    }
}
