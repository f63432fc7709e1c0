import CLinux

/// Netlink aligns headers and attributes to 4 bytes (NLMSG_ALIGN, RTA_ALIGN).
@inline(__always) func align4(_ n: Int) -> Int { (n + 3) & ~3 }

let netlinkHeaderSize = 16
let attributeHeaderSize = 4

/// Builds one netlink message: the 16-byte header, a fixed family header (ifinfomsg, rtmsg, …) and attributes.
/// Length and sequence number are filled in when the message is sent.
public struct MessageBuilder: Sendable {
    public private(set) var bytes: [UInt8]

    public init(type: UInt16, flags: UInt16) {
        bytes = [UInt8](repeating: 0, count: netlinkHeaderSize)
        bytes.reserveCapacity(128)
        store(UInt16(type), at: 4)
        store(UInt16(flags), at: 6)
    }

    public var type: UInt16 { load(UInt16.self, at: 4) }
    public var flags: UInt16 { load(UInt16.self, at: 6) }
    mutating func setFlags(_ flags: UInt16) { store(flags, at: 6) }

    /// The raw bytes of a C struct (the family header), padded to 4.
    public mutating func append<T>(header value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
        pad()
    }

    public mutating func append(attribute type: UInt16, bytes payload: some Collection<UInt8>) {
        let length = attributeHeaderSize + payload.count
        precondition(length <= Int(UInt16.max), "netlink attribute too long")
        appendInteger(UInt16(length))
        appendInteger(type)
        bytes.append(contentsOf: payload)
        pad()
    }

    public mutating func append(attribute type: UInt16, u8 value: UInt8) { append(attribute: type, bytes: [value]) }
    public mutating func append(attribute type: UInt16, u32 value: UInt32) {
        withUnsafeBytes(of: value) { append(attribute: type, bytes: $0) }
    }
    public mutating func append(attribute type: UInt16, s32 value: Int32) {
        withUnsafeBytes(of: value) { append(attribute: type, bytes: $0) }
    }
    /// A NUL-terminated string attribute (IFLA_IFNAME, FRA_IFNAME, …).
    public mutating func append(attribute type: UInt16, string: String) {
        append(attribute: type, bytes: Array(string.utf8) + [0])
    }
    public mutating func append(attribute type: UInt16, address: IPAddress) {
        append(attribute: type, bytes: address.bytes)
    }

    /// A nested attribute: `body` appends the inner attributes; the outer length is fixed up afterwards.
    /// `flagged` sets NLA_F_NESTED (nf_tables wants it; rtnetlink, like iproute2, goes without).
    public mutating func nest(_ type: UInt16, flagged: Bool = false, _ body: (inout MessageBuilder) -> Void) {
        let start = bytes.count
        appendInteger(UInt16(0))
        appendInteger(flagged ? type | UInt16(NLA_F_NESTED) : type)
        body(&self)
        store(UInt16(bytes.count - start), at: start)
    }

    /// The finished message with its length and the given sequence number.
    public func finished(sequence: UInt32) -> [UInt8] {
        var copy = self
        copy.store(UInt32(bytes.count), at: 0)
        copy.store(sequence, at: 8)
        return copy.bytes
    }

    private mutating func pad() {
        let padded = align4(bytes.count)
        if padded > bytes.count { bytes.append(contentsOf: repeatElement(0, count: padded - bytes.count)) }
    }

    private mutating func appendInteger<I: FixedWidthInteger>(_ value: I) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    private mutating func store<I: FixedWidthInteger>(_ value: I, at offset: Int) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: offset, as: I.self) }
    }

    private func load<I: FixedWidthInteger>(_: I.Type, at offset: Int) -> I {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: I.self) }
    }
}

/// One received netlink message: header fields and the payload after the 16-byte header.
public struct NetlinkMessage: Sendable {
    public var type: UInt16
    public var flags: UInt16
    public var sequence: UInt32
    public var portID: UInt32
    public var payload: [UInt8]

    /// Splits a datagram into messages, checking every length against what was received.
    public static func parse(_ buffer: UnsafeRawBufferPointer) throws(WireError) -> [NetlinkMessage] {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while buffer.count - offset >= netlinkHeaderSize {
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            guard length >= netlinkHeaderSize, length <= buffer.count - offset else {
                throw WireError("message length \(length) at offset \(offset) exceeds the \(buffer.count)-byte datagram")
            }
            messages.append(NetlinkMessage(
                type: buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self),
                flags: buffer.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self),
                sequence: buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self),
                portID: buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self),
                payload: Array(buffer[(offset + netlinkHeaderSize)..<(offset + length)])))
            offset += align4(length)
        }
        return messages
    }
}

/// A malformed message or attribute.
public struct WireError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads a payload: a fixed family header, then attributes.
public struct PayloadReader {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The family header (ifinfomsg, rtmsg, …) at the start of the payload.
    public func header<T>(_: T.Type) throws(WireError) -> T {
        guard bytes.count >= MemoryLayout<T>.size else {
            throw WireError("payload of \(bytes.count) bytes is shorter than its \(MemoryLayout<T>.size)-byte header")
        }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    /// Calls `body` for each attribute after a header of `headerSize` bytes.
    public func forEachAttribute(after headerSize: Int,
                                 _ body: (UInt16, ArraySlice<UInt8>) throws(WireError) -> Void) throws(WireError) {
        try Self.forEachAttribute(in: bytes[...].dropFirst(align4(headerSize)), body)
    }

    /// Walks the attributes in `slice` (also used for nested attributes). The type's NLA_F_NESTED and
    /// NLA_F_NET_BYTEORDER bits are masked off.
    public static func forEachAttribute(in slice: ArraySlice<UInt8>,
                                        _ body: (UInt16, ArraySlice<UInt8>) throws(WireError) -> Void) throws(WireError) {
        var offset = slice.startIndex
        while slice.endIndex - offset >= attributeHeaderSize {
            let length = Int(UInt16(slice[offset]) | UInt16(slice[offset + 1]) << 8)
            let type = (UInt16(slice[offset + 2]) | UInt16(slice[offset + 3]) << 8) & ~UInt16(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
            guard length >= attributeHeaderSize, length <= slice.endIndex - offset else {
                throw WireError("attribute \(type) has length \(length) but \(slice.endIndex - offset) bytes remain")
            }
            try body(type, slice[(offset + attributeHeaderSize)..<(offset + length)])
            offset += align4(length)
        }
    }
}

extension ArraySlice<UInt8> {
    func u8() throws(WireError) -> UInt8 {
        guard let first else { throw WireError("empty u8 attribute") }
        return first
    }
    func u32() throws(WireError) -> UInt32 {
        guard count >= 4 else { throw WireError("u32 attribute of \(count) bytes") }
        return withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }
    func s32() throws(WireError) -> Int32 { Int32(bitPattern: try u32()) }
    /// A big-endian u64 (nfnetlink handles).
    func u64BigEndian() throws(WireError) -> UInt64 {
        guard count >= 8 else { throw WireError("u64 attribute of \(count) bytes") }
        return UInt64(bigEndian: withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }
    /// A string attribute, up to its NUL.
    func string() -> String { String(decoding: prefix(while: { $0 != 0 }), as: UTF8.self) }
    func address() throws(WireError) -> IPAddress {
        guard let address = IPAddress(bytes: self) else {
            throw WireError("address attribute of \(count) bytes (want 4 or 16)")
        }
        return address
    }
}
