import Netlink
import TextFormat

/// A TCP packet seen by the capture: where (interface, direction), when, and its TCP header.
public struct TCPPacket: Sendable, Equatable {
    public enum Direction: String, Sendable, Codable {
        case incoming = "In"
        case outgoing = "Out"
        /// Another host's packet seen in promiscuous mode, a broadcast…
        case other = "?"
    }

    /// Seconds since the epoch.
    public var time: Double
    public var interfaceIndex: Int32
    public var interface: String
    public var direction: Direction
    public var source: IPAddress
    public var sourcePort: UInt16
    public var destination: IPAddress
    public var destinationPort: UInt16
    public var flags: UInt8
    public var sequence: UInt32
    public var acknowledgment: UInt32
    public var window: UInt16
    /// TCP payload length.
    public var length: Int
    /// The captured frame (LINUX_SLL2), for the pcap file.
    public var frame: [UInt8]
    public var originalLength: Int

    public static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, psh: UInt8 = 0x08, ack: UInt8 = 0x10

    public var isSYN: Bool { flags & Self.syn != 0 && flags & Self.ack == 0 }
    public var isSYNACK: Bool { flags & Self.syn != 0 && flags & Self.ack != 0 }
    public var isRST: Bool { flags & Self.rst != 0 }

    /// tcpdump's flag notation: S, S., R., P., F., ".".
    public var flagText: String {
        var text = ""
        if flags & Self.fin != 0 { text += "F" }
        if flags & Self.syn != 0 { text += "S" }
        if flags & Self.rst != 0 { text += "R" }
        if flags & Self.psh != 0 { text += "P" }
        if flags & Self.ack != 0 { text += "." }
        return text
    }

    /// One line as `tcpdump -i any -nn` prints it (without the options; time of day in UTC):
    /// "15:31:23.870929 eth1  In  IP 10.111.223.23.52820 > 192.168.1.1.3000: Flags [S], seq 3242029860, win 64240, length 0"
    public var tcpdumpLine: String {
        let seconds = Int(time)
        let micro = String(min(999_999, Int(((time - Double(seconds)) * 1_000_000).rounded())))
        let clock = format2(seconds / 3600 % 24) + ":" + format2(seconds / 60 % 60) + ":" + format2(seconds % 60)
            + "." + String(repeating: "0", count: max(0, 6 - micro.count)) + micro
        let family = source.family == .inet6 ? "IP6" : "IP"
        // tcpdump pads interface names to 5 columns and never cuts them (veth-pod1).
        let name = interface.count >= 5 ? interface : interface.padded(to: 5)
        var line = "\(clock) \(name) "
            + "\(direction.rawValue.padded(to: 3)) \(family) "
            + "\(source).\(sourcePort) > \(destination).\(destinationPort): Flags [\(flagText)]"
        if flags & (Self.syn | Self.fin | Self.rst) != 0 || length > 0 {
            line += ", seq \(sequence)"
            if length > 0 { line += ":\(sequence &+ UInt32(length))" }
        }
        if flags & Self.ack != 0 { line += ", ack \(acknowledgment)" }
        line += ", win \(window), length \(length)"
        return line
    }

    private func format2(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// Decodes a LINUX_SLL2 frame carrying IPv4 or IPv6 and TCP; nil for anything else.
    /// SLL2: protocol (2, big endian), reserved (2), ifindex (4, big endian), hatype (2), packet type (1),
    /// address length (1), address (8); then the network header.
    public static func decode(sll2 frame: [UInt8], time: Double, originalLength: Int,
                              names: [Int32: String]) -> TCPPacket? {
        guard frame.count >= 20 else { return nil }
        let proto = UInt16(frame[0]) << 8 | UInt16(frame[1])
        let index = Int32(bitPattern: UInt32(frame[4]) << 24 | UInt32(frame[5]) << 16 | UInt32(frame[6]) << 8 | UInt32(frame[7]))
        let direction: Direction
        switch frame[10] {
        case 0: direction = .incoming       // PACKET_HOST
        case 4: direction = .outgoing       // PACKET_OUTGOING
        default: direction = .other
        }
        var offset = 20
        let source: IPAddress, destination: IPAddress
        switch proto {
        case 0x0800:
            guard frame.count >= offset + 20, frame[offset] >> 4 == 4, frame[offset + 9] == 6 else { return nil }
            let headerLength = Int(frame[offset] & 0x0f) * 4
            guard let s = IPAddress(bytes: frame[(offset + 12)..<(offset + 16)]),
                  let d = IPAddress(bytes: frame[(offset + 16)..<(offset + 20)]) else { return nil }
            source = s
            destination = d
            let total = Int(frame[offset + 2]) << 8 | Int(frame[offset + 3])
            offset += headerLength
            return tcp(frame, offset, ipEnd: offset - headerLength + total, time, index, names, direction, source,
                       destination, originalLength)
        case 0x86dd:
            guard frame.count >= offset + 40, frame[offset] >> 4 == 6, frame[offset + 6] == 6 else { return nil }
            guard let s = IPAddress(bytes: frame[(offset + 8)..<(offset + 24)]),
                  let d = IPAddress(bytes: frame[(offset + 24)..<(offset + 40)]) else { return nil }
            source = s
            destination = d
            let payload = Int(frame[offset + 4]) << 8 | Int(frame[offset + 5])
            offset += 40
            return tcp(frame, offset, ipEnd: offset + payload, time, index, names, direction, source, destination,
                       originalLength)
        default:
            return nil
        }
    }

    private static func tcp(_ frame: [UInt8], _ offset: Int, ipEnd: Int, _ time: Double, _ index: Int32,
                            _ names: [Int32: String], _ direction: Direction, _ source: IPAddress,
                            _ destination: IPAddress, _ originalLength: Int) -> TCPPacket? {
        guard frame.count >= offset + 20 else { return nil }
        func u16(_ at: Int) -> UInt16 { UInt16(frame[at]) << 8 | UInt16(frame[at + 1]) }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
        let dataOffset = Int(frame[offset + 12] >> 4) * 4
        return TCPPacket(time: time, interfaceIndex: index, interface: names[index] ?? "if\(index)", direction: direction,
                         source: source, sourcePort: u16(offset), destination: destination,
                         destinationPort: u16(offset + 2), flags: frame[offset + 13], sequence: u32(offset + 4),
                         acknowledgment: u32(offset + 8), window: u16(offset + 14),
                         length: max(0, ipEnd - offset - dataOffset), frame: frame, originalLength: originalLength)
    }
}
