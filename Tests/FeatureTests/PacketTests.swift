import Netlink
@testable import Probe
import Testing

struct PacketTests {
    /// A LINUX_SLL2 frame: IPv4/TCP SYN from 10.111.223.23:52820 to 192.168.1.1:3000, received on ifindex 101.
    static let synFrame: [UInt8] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 101, 0x00, 0x01, 0x00, 0x06, 1, 2, 3, 4, 5, 6, 0, 0,  // SLL2
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,                         // IPv4
        10, 111, 223, 23, 192, 168, 1, 1,
        0xce, 0x54, 0x0b, 0xb8, 0xc1, 0x3d, 0x73, 0x24, 0x00, 0x00, 0x00, 0x00,                         // TCP
        0x50, 0x02, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00,
    ]

    @Test func decodesSLL2IPv4TCP() throws {
        let packet = try #require(TCPPacket.decode(sll2: Self.synFrame, time: 55883.870929, originalLength: 60,
                                                   names: [101: "eth1"]))
        #expect(packet.interface == "eth1")
        #expect(packet.direction == .incoming)
        #expect(packet.source == IPAddress("10.111.223.23"))
        #expect(packet.sourcePort == 52820)
        #expect(packet.destinationPort == 3000)
        #expect(packet.isSYN && !packet.isSYNACK)
        #expect(packet.sequence == 3242029860)
        #expect(packet.length == 0)
        #expect(packet.tcpdumpLine
                == "15:31:23.870929 eth1  In  IP 10.111.223.23.52820 > 192.168.1.1.3000: Flags [S], seq 3242029860, win 64240, length 0")
    }

    @Test func outgoingSynAckAndUnknownInterface() throws {
        var frame = Self.synFrame
        frame[10] = 4             // PACKET_OUTGOING
        frame[7] = 7              // ifindex 7, not named
        frame[20 + 20 + 13] = 0x12  // SYN|ACK
        let packet = try #require(TCPPacket.decode(sll2: frame, time: 0, originalLength: 60, names: [:]))
        #expect(packet.direction == .outgoing)
        #expect(packet.interface == "if7")
        #expect(packet.isSYNACK)
        #expect(packet.flagText == "S.")
    }

    @Test func ignoresWhatIsNotTCP() {
        var udp = Self.synFrame
        udp[20 + 9] = 17
        #expect(TCPPacket.decode(sll2: udp, time: 0, originalLength: 60, names: [:]) == nil)
        var arp = Self.synFrame
        arp[1] = 0x06
        #expect(TCPPacket.decode(sll2: arp, time: 0, originalLength: 60, names: [:]) == nil)
        #expect(TCPPacket.decode(sll2: Array(Self.synFrame.prefix(30)), time: 0, originalLength: 30, names: [:]) == nil)
    }
}
