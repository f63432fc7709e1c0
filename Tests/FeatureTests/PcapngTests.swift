import Netlink
@testable import Probe
import Testing

struct PcapngTests {
    /// Little-endian u32 at `offset`.
    func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    @Test func oneInterfaceBlockPerInterfaceAndEachPacketsDirection() throws {
        let syn = try #require(TCPPacket.decode(sll2: PacketTests.synFrame, time: 1.5, originalLength: 60, names: [101: "eth1"]))
        var reply = syn
        reply.interfaceIndex = 100
        reply.interface = "eth0"
        reply.direction = .outgoing
        reply.time = 1.6
        let bytes = Pcapng.encode([Pcapng.Capture(host: "node", packets: [reply, syn])])
        // Walk the blocks: type, length, body, length again.
        var blocks: [(type: UInt32, body: [UInt8])] = []
        var offset = 0
        while offset < bytes.count {
            let type = u32(bytes, offset), length = Int(u32(bytes, offset + 4))
            #expect(length % 4 == 0 && length >= 12)
            #expect(u32(bytes, offset + length - 4) == UInt32(length))
            blocks.append((type, Array(bytes[(offset + 8)..<(offset + length - 4)])))
            offset += length
        }
        #expect(blocks.map(\.type) == [0x0A0D_0D0A, 1, 1, 6, 6])
        #expect(u32(blocks[0].body, 0) == 0x1A2B_3C4D)
        // Interface blocks: LINUX_SLL2 (276) and the name in option 2.
        for (block, name) in zip(blocks[1...2], ["eth0", "eth1"]) {
            #expect(block.body[0] == 20 && block.body[1] == 1)   // 276 little-endian
            #expect(block.body[8] == 2 && Int(block.body[10]) == name.utf8.count)
            #expect(Array(block.body[12..<(12 + name.utf8.count)]) == Array(name.utf8))
        }
        // Packets in time order, the SYN on interface 1 (eth1) inbound, the reply on 0 (eth0) outbound.
        let first = blocks[3].body, second = blocks[4].body
        #expect(u32(first, 0) == 1 && u32(second, 0) == 0)
        func flags(_ body: [UInt8]) -> UInt32 {
            let captured = Int(u32(body, 12))
            let options = 20 + captured + (4 - captured % 4) % 4
            #expect(body[options] == 2 && body[options + 2] == 4)   // epb_flags, 4 bytes
            return u32(body, options + 4)
        }
        #expect(flags(first) == 1)
        #expect(flags(second) == 2)
        // Microsecond timestamps.
        #expect((UInt64(u32(first, 4)) << 32 | UInt64(u32(first, 8))) == 1_500_000)
    }
}
