import CLinux

/// One interval of an interval set: the kernel stores it as a start element (the first address) and an end
/// element flagged NFT_SET_ELEM_INTERVAL_END (the first address after it), or no end element when it runs to the
/// top of the address space (255.255.255.0/24).
public struct NftInterval: Sendable, Hashable, CustomStringConvertible {
    public var start: [UInt8]
    /// The first address after the interval; nil at the top of the address space.
    public var end: [UInt8]?

    public init(start: [UInt8], end: [UInt8]?) {
        self.start = start
        self.end = end
    }

    /// The interval of a prefix (its network address up to the first address after it).
    public init(_ prefix: IPPrefix) {
        var bytes = prefix.address.masked(to: prefix.length).bytes
        start = bytes
        // Set the host bits, then add one: a carry out of the top byte means the top of the address space.
        var bit = prefix.length
        while bit < bytes.count * 8 {
            bytes[bit / 8] |= UInt8(0x80) >> UInt8(bit % 8)
            bit += 1
        }
        var i = bytes.count - 1
        while i >= 0 {
            if bytes[i] == 0xff { bytes[i] = 0; i -= 1 } else { bytes[i] += 1; break }
        }
        end = i < 0 ? nil : bytes
    }

    /// The start element and, below the top of the address space, the end element.
    public var elements: [NftSetElement] {
        guard let end else { return [NftSetElement(key: start, intervalOpen: true)] }
        return [NftSetElement(key: start), NftSetElement(key: end, intervalEnd: true)]
    }

    /// The prefix this interval is, when it is exactly one (all the policy writes; a range made by hand may not be).
    public var prefix: IPPrefix? {
        guard let first = IPAddress(bytes: start) else { return nil }
        // last = end - 1 (or all ones); the host bits are those where start and last differ, all below the rest.
        var last = end ?? [UInt8](repeating: 0xff, count: start.count)
        guard last.count == start.count else { return nil }
        if end != nil {
            var i = last.count - 1
            while i >= 0 {
                if last[i] == 0 { last[i] = 0xff; i -= 1 } else { last[i] -= 1; break }
            }
            if i < 0 { return nil }
        }
        var length = 0
        while length < start.count * 8, (start[length / 8] ^ last[length / 8]) & (UInt8(0x80) >> UInt8(length % 8)) == 0 { length += 1 }
        var bit = length
        while bit < start.count * 8 {
            let mask = UInt8(0x80) >> UInt8(bit % 8)
            guard start[bit / 8] & mask == 0, last[bit / 8] & mask != 0 else { return nil }
            bit += 1
        }
        return try? IPPrefix(first, length: length)
    }

    /// The intervals that elements (in any order: the kernel dumps them from the top down) make. An end element
    /// with no start before it (nft adds one at 0.0.0.0 in front of the first interval) starts nothing.
    public static func intervals(_ elements: [NftSetElement]) -> [NftInterval] {
        // By key; at one key an end comes before a start (adjacent prefixes: 10.0.0.4 ends one, starts the next).
        // The kernel's dump is this order reversed: checking that (one pass) is cheaper than sorting 20,000 keys.
        let before = { (a: NftSetElement, b: NftSetElement) in
            a.key != b.key ? a.key.lexicographicallyPrecedes(b.key) : (a.intervalEnd && !b.intervalEnd)
        }
        let reversed = Array(elements.reversed())
        let sorted = zip(reversed, reversed.dropFirst()).allSatisfy { !before($1, $0) } ? reversed : elements.sorted(by: before)
        var intervals: [NftInterval] = []
        var open: [UInt8]?
        for element in sorted {
            if element.intervalEnd {
                if let start = open { intervals.append(NftInterval(start: start, end: element.key)) }
                open = nil
            } else {
                if let start = open { intervals.append(NftInterval(start: start, end: nil)) }
                open = element.key
            }
        }
        if let start = open { intervals.append(NftInterval(start: start, end: nil)) }
        return intervals
    }

    /// As nft writes it: the prefix ("10.0.0.0/30", "192.168.1.1"), else the range ("10.0.0.1-10.0.0.6").
    public var description: String {
        if let prefix { return prefix.description }
        let first = IPAddress(bytes: start).map(\.description) ?? "?"
        var last = end ?? [UInt8](repeating: 0xff, count: start.count)
        var i = end == nil ? -1 : last.count - 1
        while i >= 0 {
            if last[i] == 0 { last[i] = 0xff; i -= 1 } else { last[i] -= 1; break }
        }
        return "\(first)-\(IPAddress(bytes: last).map(\.description) ?? "?")"
    }
}
