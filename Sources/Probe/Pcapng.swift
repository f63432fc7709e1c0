import Namespace
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Writes captured packets as pcapng: one Interface Description Block per interface (its name in `if_name`, the
/// host it belongs to in `if_description`) and each packet's direction in `epb_flags`, so Wireshark and
/// `tshark -e frame.interface_name` show eth1/eth0 and in/out on any machine. Frames stay LINUX_SLL2 (interface
/// index and packet type too), so `tcpdump -r` inside the host's namespace reads the file as before.
public enum Pcapng {
    /// LINKTYPE_LINUX_SLL2.
    static let linkType: UInt16 = 276

    /// Packets captured on one host (namespace): they share its interfaces.
    public struct Capture: Sendable {
        public var host: String
        public var packets: [TCPPacket]
        public init(host: String, packets: [TCPPacket]) {
            self.host = host
            self.packets = packets
        }
    }

    /// The file's bytes: a section, the interfaces of every capture, then every packet in time order.
    public static func encode(_ captures: [Capture], application: String = "returnpath") -> [UInt8] {
        var out = block(type: 0x0A0D_0D0A, body: le32(0x1A2B_3C4D) + le16(1) + le16(0) + le64(UInt64.max)
                        + options([(4, Array(application.utf8))]))
        var interfaces: [String: UInt32] = [:]
        var packets: [(UInt32, TCPPacket)] = []
        for capture in captures {
            for packet in capture.packets {
                let key = "\(capture.host)\u{0}\(packet.interfaceIndex)"
                let id: UInt32
                if let known = interfaces[key] {
                    id = known
                } else {
                    id = UInt32(interfaces.count)
                    interfaces[key] = id
                    let body = le16(linkType) + le16(0) + le32(UInt32(PacketCapture.snapshotLength))
                        + options([(2, Array(packet.interface.utf8)),
                                   (3, Array("\(packet.interface) on \(capture.host) (ifindex \(packet.interfaceIndex))".utf8)),
                                   (9, [6])])   // if_tsresol: microseconds
                    out += block(type: 1, body: body)
                }
                packets.append((id, packet))
            }
        }
        for (id, packet) in packets.sorted(by: { $0.1.time < $1.1.time }) {
            let micros = UInt64((packet.time * 1_000_000).rounded())
            var body = le32(id) + le32(UInt32(truncatingIfNeeded: micros >> 32)) + le32(UInt32(truncatingIfNeeded: micros))
                + le32(UInt32(packet.frame.count)) + le32(UInt32(packet.originalLength)) + packet.frame
            body += [UInt8](repeating: 0, count: (4 - packet.frame.count % 4) % 4)
            // epb_flags bits 0-1: 01 inbound, 10 outbound.
            let direction: UInt32
            switch packet.direction {
            case .incoming: direction = 1
            case .outgoing: direction = 2
            case .other: direction = 0
            }
            body += options([(2, le32(direction))])
            out += block(type: 6, body: body)
        }
        return out
    }

    /// Writes the file (replacing one that is there).
    public static func write(_ captures: [Capture], to path: String) throws(ProbeError) {
        let bytes = encode(captures)
        let fd = try syscall { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
            .get { ProbeError("cannot write \(path): \($0)") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            offset += try syscall {
                bytes.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset) }
            }.get { ProbeError("cannot write \(path): \($0)") }
        }
    }

    private static func block(type: UInt32, body: [UInt8]) -> [UInt8] {
        let length = UInt32(12 + body.count)
        return le32(type) + le32(length) + body + le32(length)
    }

    /// Options (code, value), each padded to 4 bytes, then opt_endofopt.
    private static func options(_ items: [(UInt16, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (code, value) in items {
            out += le16(code) + le16(UInt16(value.count)) + value
            out += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
        }
        return out + le16(0) + le16(0)
    }

    private static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    private static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xff) } }
    private static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(v >> (8 * UInt64($0)) & 0xff) } }
}
