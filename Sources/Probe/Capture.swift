import CPcap
import Namespace
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// What can go wrong probing.
public struct ProbeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// libpcap on the `any` device of one network namespace, LINUX_SLL2 (interface index and direction per packet),
/// non-blocking, immediate mode. The handle is opened on the namespace thread (the packet socket then stays in
/// that namespace) and read from the caller's event loop through its selectable descriptor.
public final class PacketCapture {
    public let namespace: NetworkNamespace
    /// Packets read since the last `take()`.
    public private(set) var packets: [TCPPacket] = []
    /// Index → name of the namespace's interfaces when the capture started (pcapng's interface blocks use them).
    public let interfaceNames: [Int32: String]
    public let descriptor: Int32
    /// Headers and a short payload: all that evidence needs.
    public static let snapshotLength = 2048
    private let handle: OpaquePointer
    private let names: [Int32: String]
    private var closed = false

    public init(namespace: NetworkNamespace, filter: String = "tcp") throws(ProbeError) {
        self.namespace = namespace
        do { names = try NetlinkSocket(namespace: namespace).linkNames() } catch {
            throw ProbeError("list interfaces of \(namespace): \(error)")
        }
        interfaceNames = names
        let opened: Result<OpaquePointer, ProbeError>
        do {
            opened = try namespace.perform { () -> Result<OpaquePointer, ProbeError> in Self.open(filter: filter) }
        } catch {
            throw ProbeError("capture in \(namespace): \(error)")
        }
        switch opened {
        case .success(let handle): self.handle = handle
        case .failure(let error): throw ProbeError("capture in \(namespace): \(error)")
        }
        descriptor = pcap_get_selectable_fd(handle)
    }

    private static func open(filter: String) -> Result<OpaquePointer, ProbeError> {
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let handle = pcap_create("any", &errorBuffer) else {
            return .failure(ProbeError(String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        func failed(_ what: String) -> Result<OpaquePointer, ProbeError> {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            return .failure(ProbeError("\(what): \(message)"))
        }
        // Immediate mode makes libpcap use a TPACKET_V2 ring of snaplen-sized frames: a small snaplen gives the ring
        // thousands of slots (262144 would leave about 15 in 4 MiB, and a burst would be dropped).
        pcap_set_snaplen(handle, Int32(PacketCapture.snapshotLength))
        pcap_set_immediate_mode(handle, 1)
        pcap_set_buffer_size(handle, 8 << 20)
        let activated = pcap_activate(handle)
        if activated < 0 {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            if activated == PCAP_ERROR_PERM_DENIED {
                return .failure(ProbeError("returnpath needs root or CAP_NET_RAW to capture: \(message)"))
            }
            return .failure(ProbeError("pcap_activate: \(message)"))
        }
        if pcap_set_datalink(handle, DLT_LINUX_SLL2) != 0 { return failed("LINUX_SLL2 link type") }
        var program = bpf_program()
        if pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 { return failed("filter \"\(filter)\"") }
        defer { pcap_freecode(&program) }
        if pcap_setfilter(handle, &program) != 0 { return failed("set filter") }
        if pcap_setnonblock(handle, 1, &errorBuffer) != 0 { return failed("non-blocking mode") }
        return .success(handle)
    }

    /// Reads every packet waiting in the kernel's buffer.
    public func drain() {
        guard !closed else { return }
        let user = Unmanaged.passUnretained(self).toOpaque().assumingMemoryBound(to: UInt8.self)
        while pcap_dispatch(handle, -1, { user, header, bytes in
            guard let user, let header, let bytes else { return }
            let capture = Unmanaged<PacketCapture>.fromOpaque(UnsafeRawPointer(user)).takeUnretainedValue()
            let frame = Array(UnsafeBufferPointer(start: bytes, count: Int(header.pointee.caplen)))
            let time = Double(header.pointee.ts.tv_sec) + Double(header.pointee.ts.tv_usec) / 1_000_000
            if let packet = TCPPacket.decode(sll2: frame, time: time, originalLength: Int(header.pointee.len),
                                             names: capture.names) {
                capture.packets.append(packet)
            }
        }, user) > 0 {}
    }

    /// The packets read since the last call (drain first to read what the kernel holds).
    public func take() -> [TCPPacket] {
        defer { packets.removeAll(keepingCapacity: true) }
        return packets
    }

    /// Packets the kernel dropped because the capture buffer was full (pcap_stats), before `close`.
    public private(set) var dropped: UInt32 = 0

    public func close() {
        guard !closed else { return }
        drain()
        var stats = pcap_stat()
        if pcap_stats(handle, &stats) == 0 { dropped = stats.ps_drop }
        closed = true
        pcap_close(handle)
    }

    deinit { if !closed { pcap_close(handle) } }
}

