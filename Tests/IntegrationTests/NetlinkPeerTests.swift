import CLinux
import Foundation
import Namespace
@testable import Netlink
import SystemPackage
import Testing

/// The receive loop reads only the kernel's datagrams, and only answers to what this socket asked.
@Suite(.enabled(if: isRoot, "needs root"))
struct NetlinkPeerTests {
    /// Any process may send a datagram to a netlink socket's port id. A forged error for the sequence number of our
    /// next request, sent from another socket, must not become that request's answer.
    @Test func datagramsFromAnotherSocketAreIgnored() throws {
        try withNamespaces(1) { ns in
            let socket = try NetlinkSocket(namespace: ns[0])
            let forger = try ns[0].socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: NETLINK_ROUTE)
            defer { close(forger) }
            // NLMSG_ERROR: the error code (-EPERM), then the header of the request it answers.
            var forged = MessageBuilder(type: UInt16(NLMSG_ERROR), flags: 0)
            forged.append(header: -EPERM)
            forged.append(header: nlmsghdr())
            let bytes = forged.finished(sequence: socket.nextSequence)
            var destination = sockaddr_nl()
            destination.nl_family = sa_family_t(AF_NETLINK)
            destination.nl_pid = socket.portID
            let sent = bytes.withUnsafeBytes { raw in
                withUnsafePointer(to: &destination) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(forger, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
            try #require(sent == bytes.count, "the forged datagram was not delivered: \(Errno(rawValue: errno))")
            // Delivered ahead of the kernel's answer; the request still gets the kernel's.
            #expect(try socket.links().map(\.name) == ["lo"])
        }
    }

    /// An answer to a request this socket did not make in this exchange is a protocol violation, not skipped; the
    /// exchange it broke is abandoned, and its own late answers are skipped by the next ones.
    @Test func aReplyToNoRequestIsAViolationAndTheSocketRecovers() throws {
        try withNamespaces(1) { ns in
            let socket = try NetlinkSocket(namespace: ns[0])
            // Get lo (index 1), sent outside any exchange: the kernel answers with the link and an ack.
            let stray = socket.nextSequence &- 1000
            try socket.sendUnpaired(NetlinkSocket.linkMessage(Int32(RTM_GETLINK), index: 1), sequence: stray)
            let error = netlinkError { _ = try socket.links() }
            guard case .protocolViolation(_, let reason)? = error else {
                Issue.record("expected a protocol violation, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("sequence number \(stray)"), "\(reason)")
            // The stray ack and the broken dump's answers are still queued: skipped, and the socket works on.
            #expect(try socket.links().map(\.name) == ["lo"])
            #expect(try socket.links().map(\.name) == ["lo"])
        }
    }
}
