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
}
