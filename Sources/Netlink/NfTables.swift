import CLinux

/// The few nf_tables operations that must be fast at 10,000 set elements, straight over nfnetlink (libnftables
/// fetches every element of every set into its cache for any command): a table's comment, a set's elements, and
/// adding or deleting elements of a set without intervals, in one transaction.
extension NetlinkSocket {
    static let nftablesSubsystem = UInt16(NFNL_SUBSYS_NFTABLES)
    /// NETLINK_NETFILTER, the family of an nfnetlink socket.
    public static let netfilter = NETLINK_NETFILTER
    /// Set elements per NEWSETELEM/DELSETELEM message: an attribute holds at most 64 KiB, and 1000 keys of up to
    /// 16 bytes (each nested in element, key and data attributes) stay well below it.
    static let elementsPerMessage = 1000

    /// An nf_tables message: type (subsystem << 8 | command), then struct nfgenmsg.
    static func nftMessage(_ command: Int32, family: UInt8, flags: Int32 = 0) -> MessageBuilder {
        var message = MessageBuilder(type: nftablesSubsystem << 8 | UInt16(command), flags: UInt16(flags))
        var header = nfgenmsg()
        header.nfgen_family = family
        header.version = UInt8(NFNETLINK_V0)
        message.append(header: header)
        return message
    }

    /// Batch begin/end: a bare message type, and the subsystem in nfgenmsg.res_id (big endian).
    static func batchMessage(_ type: Int32) -> MessageBuilder {
        var message = MessageBuilder(type: UInt16(type), flags: 0)
        var header = nfgenmsg()
        header.version = UInt8(NFNETLINK_V0)
        header.res_id = nftablesSubsystem.bigEndian
        message.append(header: header)
        return message
    }

    /// The comment of table FAMILY NAME (from its user data), "" without one, nil when there is no such table.
    public func nftTableComment(family: UInt8, table: String) throws(NetlinkError) -> String? {
        var message = Self.nftMessage(Int32(NFT_MSG_GETTABLE.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_TABLE_NAME.rawValue), string: table)
        let replies: [NetlinkMessage]
        do {
            replies = try request(message, operation: "list table \(table)")
        } catch let error where error.errno == .noSuchFileOrDirectory {
            return nil
        }
        var comment = ""
        do throws(WireError) {
            for reply in replies {
                try PayloadReader(reply.payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, value throws(WireError) in
                    guard type == UInt16(NFTA_TABLE_USERDATA.rawValue) else { return }
                    comment = try Self.userDataComment(value) ?? comment
                }
            }
        } catch {
            throw .protocolViolation(operation: "list table \(table)", reason: "malformed reply: \(error)")
        }
        return comment
    }

    /// One rule of a table as nfnetlink lists it: its chain, its handle, and its comment (libnftnl user data).
    public struct NftRuleInfo: Sendable, Equatable {
        public var chain: String
        public var handle: UInt64
        public var comment: String?
    }

    /// One set of a table: its name and flags (NFT_SET_INTERVAL, …).
    public struct NftSetInfo: Sendable, Equatable {
        public var name: String
        public var flags: UInt32
        public var isInterval: Bool { flags & UInt32(NFT_SET_INTERVAL.rawValue) != 0 }
        /// An anonymous set (`{ "eth1", "eth2" }` in a rule): it lives and dies with its rule.
        public var isAnonymous: Bool { flags & UInt32(NFT_SET_ANONYMOUS.rawValue) != 0 }
    }

    /// Every rule of table FAMILY NAME, in chain order (the kernel filters the dump by table).
    public func nftRules(family: UInt8, table: String) throws(NetlinkError) -> [NftRuleInfo] {
        let operation = "list rules of table \(table)"
        var message = Self.nftMessage(Int32(NFT_MSG_GETRULE.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        let replies = try dump(message, operation: operation)
        var rules: [NftRuleInfo] = []
        do throws(WireError) {
            for reply in replies {
                var rule = NftRuleInfo(chain: "", handle: 0, comment: nil)
                var inTable = false
                try PayloadReader(reply.payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, value throws(WireError) in
                    switch Int(type) {
                    case Int(NFTA_RULE_TABLE.rawValue): inTable = value.string() == table
                    case Int(NFTA_RULE_CHAIN.rawValue): rule.chain = value.string()
                    case Int(NFTA_RULE_HANDLE.rawValue): rule.handle = try value.u64BigEndian()
                    case Int(NFTA_RULE_USERDATA.rawValue): rule.comment = try Self.userDataComment(value)
                    default: break
                    }
                }
                if inTable { rules.append(rule) }
            }
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
        return rules
    }

    /// The names of every chain of table FAMILY NAME.
    public func nftChains(family: UInt8, table: String) throws(NetlinkError) -> [String] {
        let operation = "list chains of table \(table)"
        var message = Self.nftMessage(Int32(NFT_MSG_GETCHAIN.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_CHAIN_TABLE.rawValue), string: table)
        let replies = try dump(message, operation: operation)
        var chains: [String] = []
        do throws(WireError) {
            for reply in replies {
                var name = "", inTable = false
                try PayloadReader(reply.payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, value throws(WireError) in
                    if type == UInt16(NFTA_CHAIN_TABLE.rawValue) { inTable = value.string() == table }
                    if type == UInt16(NFTA_CHAIN_NAME.rawValue) { name = value.string() }
                }
                if inTable { chains.append(name) }
            }
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
        return chains
    }

    /// Every set of table FAMILY NAME.
    public func nftSets(family: UInt8, table: String) throws(NetlinkError) -> [NftSetInfo] {
        let operation = "list sets of table \(table)"
        var message = Self.nftMessage(Int32(NFT_MSG_GETSET.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_SET_TABLE.rawValue), string: table)
        let replies = try dump(message, operation: operation)
        var sets: [NftSetInfo] = []
        do throws(WireError) {
            for reply in replies {
                var set = NftSetInfo(name: "", flags: 0)
                var inTable = false
                try PayloadReader(reply.payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, value throws(WireError) in
                    switch Int(type) {
                    case Int(NFTA_SET_TABLE.rawValue): inTable = value.string() == table
                    case Int(NFTA_SET_NAME.rawValue): set.name = value.string()
                    case Int(NFTA_SET_FLAGS.rawValue): set.flags = UInt32(bigEndian: try value.u32())
                    default: break
                    }
                }
                if inTable { sets.append(set) }
            }
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
        return sets
    }

    /// libnftnl's user data: {u8 type, u8 length, value} records; type 0 is the comment (NUL-terminated).
    static func userDataComment(_ value: ArraySlice<UInt8>) throws(WireError) -> String? {
        var i = value.startIndex
        var comment: String?
        while i + 2 <= value.endIndex {
            let kind = value[i], length = Int(value[i + 1])
            guard i + 2 + length <= value.endIndex else { throw WireError("truncated user data") }
            if kind == 0 { comment = value[(i + 2)..<(i + 2 + length)].string() }
            i += 2 + length
        }
        return comment
    }

    /// The keys of every element of a set (network byte order, as the kernel stores them).
    public func nftSetElements(family: UInt8, table: String, set: String) throws(NetlinkError) -> [[UInt8]] {
        let operation = "list set \(table) \(set)"
        var message = Self.nftMessage(Int32(NFT_MSG_GETSETELEM.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), string: table)
        message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), string: set)
        var keys: [[UInt8]] = []
        let replies = try dump(message, operation: operation)
        do throws(WireError) {
            for reply in replies {
                try PayloadReader(reply.payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, list throws(WireError) in
                    guard type == UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue) else { return }
                    try PayloadReader.forEachAttribute(in: list) { _, element throws(WireError) in
                        try PayloadReader.forEachAttribute(in: element) { field, key throws(WireError) in
                            guard field == UInt16(NFTA_SET_ELEM_KEY.rawValue) else { return }
                            try PayloadReader.forEachAttribute(in: key) { data, value throws(WireError) in
                                if data == UInt16(NFTA_DATA_VALUE.rawValue) { keys.append(Array(value)) }
                            }
                        }
                    }
                }
            }
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
        return keys
    }

    /// Every element of a set with its flags: what an interval set needs (start and end elements).
    public func nftSetElementsWithFlags(family: UInt8, table: String, set: String) throws(NetlinkError) -> [NftSetElement] {
        let operation = "list set \(table) \(set)"
        var message = Self.nftMessage(Int32(NFT_MSG_GETSETELEM.rawValue), family: family)
        message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), string: table)
        message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), string: set)
        let replies = try dump(message, operation: operation)
        do throws(WireError) {
            return try Self.decodeSetElements(replies.map(\.payload))
        } catch {
            throw .protocolViolation(operation: operation, reason: "malformed reply: \(error)")
        }
    }

    /// The elements of NEWSETELEM payloads (after struct nfgenmsg): key, NFTA_SET_ELEM_FLAGS and libnftnl's
    /// "interval open" user data flag.
    static func decodeSetElements(_ payloads: [[UInt8]]) throws(WireError) -> [NftSetElement] {
        var elements: [NftSetElement] = []
        for payload in payloads {
            try PayloadReader(payload).forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, list throws(WireError) in
                guard type == UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue) else { return }
                try PayloadReader.forEachAttribute(in: list) { _, attributes throws(WireError) in
                    var element = NftSetElement(key: [])
                    var hasKey = false
                    try PayloadReader.forEachAttribute(in: attributes) { field, value throws(WireError) in
                        switch Int(field) {
                        case Int(NFTA_SET_ELEM_KEY.rawValue):
                            try PayloadReader.forEachAttribute(in: value) { data, key throws(WireError) in
                                if data == UInt16(NFTA_DATA_VALUE.rawValue) { element.key = Array(key); hasKey = true }
                            }
                        case Int(NFTA_SET_ELEM_FLAGS.rawValue):
                            element.intervalEnd = UInt32(bigEndian: try value.u32()) & UInt32(NFT_SET_ELEM_INTERVAL_END.rawValue) != 0
                        case Int(NFTA_SET_ELEM_USERDATA.rawValue):
                            element.intervalOpen = Self.userDataIntervalOpen(value)
                        default: break
                        }
                    }
                    guard hasKey else { throw WireError("set element without a key") }
                    elements.append(element)
                }
            }
        }
        return elements
    }

    /// libnftnl's NFTNL_UDATA_SET_ELEM_FLAGS (type 1, a host-order u32) with NFTNL_SET_ELEM_F_INTERVAL_OPEN (1):
    /// nft's mark on the start of an interval that runs to the top of the address space.
    static func userDataIntervalOpen(_ value: ArraySlice<UInt8>) -> Bool {
        var i = value.startIndex
        while i + 2 <= value.endIndex {
            let kind = value[i], length = Int(value[i + 1])
            guard i + 2 + length <= value.endIndex else { return false }
            if kind == 1, length == 4, value[i + 2] & 1 != 0 { return true }
            i += 2 + length
        }
        return false
    }

    /// Adds and deletes elements of a set without intervals, in one nf_tables transaction (all or nothing).
    public func nftUpdateSetElements(family: UInt8, table: String, set: String,
                                     add: [[UInt8]], remove: [[UInt8]]) throws(NetlinkError) {
        try nftUpdateSetElements(family: family, table: table, set: set,
                                 add: add.map { NftSetElement(key: $0) }, remove: remove.map { NftSetElement(key: $0) })
    }

    /// Deletes and adds elements of a set (with or without intervals: an interval's start and end elements), in
    /// one nf_tables transaction (all or nothing). Deletes come first, so that a key that ends one interval and
    /// starts its replacement (a prefix made longer or shorter) is free again when it is added.
    public func nftUpdateSetElements(family: UInt8, table: String, set: String,
                                     add: [NftSetElement], remove: [NftSetElement]) throws(NetlinkError) {
        let messages = Self.setElementMessages(family: family, table: table, set: set, add: add, remove: remove)
        guard !messages.isEmpty else { return }
        let outcomes = try exchange(messages, dump: false,
                                    framing: (Self.batchMessage(Int32(NFNL_MSG_BATCH_BEGIN)), Self.batchMessage(Int32(NFNL_MSG_BATCH_END))))
        let deleteMessages = (remove.count + Self.elementsPerMessage - 1) / Self.elementsPerMessage
        for (i, outcome) in outcomes.enumerated() {
            if let failure = outcome.failure {
                let what = i < deleteMessages ? "delete elements of set \(table) \(set)" : "add elements to set \(table) \(set)"
                if failure.errno == .fileExists {
                    throw failure.error(what + " (an element is already there, or an interval overlaps one that is)")
                }
                throw failure.error(what)
            }
        }
    }

    /// DELSETELEM messages, then NEWSETELEM messages, each of up to `elementsPerMessage` elements.
    static func setElementMessages(family: UInt8, table: String, set: String,
                                   add: [NftSetElement], remove: [NftSetElement]) -> [MessageBuilder] {
        var messages: [MessageBuilder] = []
        for (command, elements) in [(Int32(NFT_MSG_DELSETELEM.rawValue), remove), (Int32(NFT_MSG_NEWSETELEM.rawValue), add)] {
            var start = 0
            while start < elements.count {
                let chunk = elements[start..<min(start + Self.elementsPerMessage, elements.count)]
                var message = Self.nftMessage(command, family: family,
                                              flags: command == Int32(NFT_MSG_NEWSETELEM.rawValue) ? NLM_F_CREATE : 0)
                message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), string: table)
                message.append(attribute: UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), string: set)
                message.nest(UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue), flagged: true) { list in
                    for element in chunk {
                        list.nest(UInt16(NFTA_LIST_ELEM.rawValue), flagged: true) { nested in
                            nested.nest(UInt16(NFTA_SET_ELEM_KEY.rawValue), flagged: true) { data in
                                data.append(attribute: UInt16(NFTA_DATA_VALUE.rawValue), bytes: element.key)
                            }
                            if element.intervalEnd {
                                nested.append(attribute: UInt16(NFTA_SET_ELEM_FLAGS.rawValue),
                                              bytes: withUnsafeBytes(of: UInt32(NFT_SET_ELEM_INTERVAL_END.rawValue).bigEndian, Array.init))
                            }
                            if element.intervalOpen {
                                nested.append(attribute: UInt16(NFTA_SET_ELEM_USERDATA.rawValue),
                                              bytes: [1, 4] + withUnsafeBytes(of: UInt32(1), Array.init))
                            }
                        }
                    }
                }
                messages.append(message)
                start += Self.elementsPerMessage
            }
        }
        return messages
    }
}

/// One element of an nf_tables set as the kernel holds it: a key (network byte order) and, in an interval set,
/// whether it ends an interval (NFT_SET_ELEM_INTERVAL_END) or starts one that runs to the top of the address
/// space (libnftnl's "interval open" user data, which nft prints by).
public struct NftSetElement: Sendable, Hashable {
    public var key: [UInt8]
    public var intervalEnd = false
    public var intervalOpen = false
    public init(key: [UInt8], intervalEnd: Bool = false, intervalOpen: Bool = false) {
        self.key = key
        self.intervalEnd = intervalEnd
        self.intervalOpen = intervalOpen
    }
}

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
