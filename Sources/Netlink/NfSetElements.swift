import CLinux

/// Set elements over nfnetlink: listing them (with their interval flags) and changing them in one transaction.
extension NetlinkSocket {
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
