import CLinux
@testable import Netlink
import Testing

/// Interval-set elements: a prefix as a start element and an end element (NFT_SET_ELEM_INTERVAL_END), none at the
/// top of the address space, and back.
struct IntervalSetTests {
    func prefix(_ text: String) throws -> IPPrefix { try IPPrefix(parsing: text) }

    @Test func newSetElementGoldenBytes() throws {
        let messages = NetlinkSocket.setElementMessages(family: 1, table: "t", set: "s",
                                                        add: NftInterval(try prefix("10.0.0.0/30")).elements, remove: [])
        #expect(messages.count == 1)
        let bytes = messages.first?.finished(sequence: 7) ?? []
        let expected: [UInt8] = [
            80, 0, 0, 0,                // nlmsg_len
            0x0c, 0x0a,                 // NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM
            0x00, 0x04,                 // NLM_F_CREATE
            7, 0, 0, 0, 0, 0, 0, 0,     // seq, pid
            1, 0, 0, 0,                 // nfgenmsg: NFPROTO_INET, version 0, res_id 0
            6, 0, 1, 0, 0x74, 0, 0, 0,  // NFTA_SET_ELEM_LIST_TABLE "t"
            6, 0, 2, 0, 0x73, 0, 0, 0,  // NFTA_SET_ELEM_LIST_SET "s"
            44, 0, 3, 0x80,             // NFTA_SET_ELEM_LIST_ELEMENTS (nested)
            16, 0, 1, 0x80,             //   NFTA_LIST_ELEM: the start
            12, 0, 1, 0x80,             //     NFTA_SET_ELEM_KEY
            8, 0, 1, 0, 10, 0, 0, 0,    //       NFTA_DATA_VALUE 10.0.0.0
            24, 0, 1, 0x80,             //   NFTA_LIST_ELEM: the end
            12, 0, 1, 0x80,             //     NFTA_SET_ELEM_KEY
            8, 0, 1, 0, 10, 0, 0, 4,    //       NFTA_DATA_VALUE 10.0.0.4
            8, 0, 3, 0, 0, 0, 0, 1,     //     NFTA_SET_ELEM_FLAGS NFT_SET_ELEM_INTERVAL_END (big endian)
        ]
        #expect(bytes == expected)
    }

    @Test func deletesComeBeforeAddsInOneBatch() throws {
        let old = NftInterval(try prefix("10.0.0.0/24")), new = NftInterval(try prefix("10.0.0.0/25"))
        let messages = NetlinkSocket.setElementMessages(family: 1, table: "t", set: "s", add: new.elements, remove: old.elements)
        let types = messages.map { $0.finished(sequence: 1)[4] }
        #expect(types == [UInt8(NFT_MSG_DELSETELEM.rawValue), UInt8(NFT_MSG_NEWSETELEM.rawValue)])
    }

    @Test func topOfTheAddressSpaceHasNoEndElement() throws {
        let top = NftInterval(try prefix("255.255.255.0/24"))
        #expect(top.end == nil)
        #expect(top.elements == [NftSetElement(key: [255, 255, 255, 0], intervalOpen: true)])
        let bytes = NetlinkSocket.setElementMessages(family: 1, table: "t", set: "s", add: top.elements, remove: [])
            .first?.finished(sequence: 1) ?? []
        // The start carries libnftnl's user data {NFTNL_UDATA_SET_ELEM_FLAGS, 4, NFTNL_SET_ELEM_F_INTERVAL_OPEN}.
        #expect(Array(bytes.suffix(12)) == [10, 0, 6, 0, 1, 4, 1, 0, 0, 0, 0, 0])
        #expect(top.prefix == (try prefix("255.255.255.0/24")))
        #expect(NftInterval(try prefix("0.0.0.0/0")).end == nil)
        #expect(NftInterval(try prefix("0.0.0.0/0")).prefix == (try prefix("0.0.0.0/0")))
    }

    @Test func prefixesRoundTrip() throws {
        for text in ["10.0.0.0/30", "192.168.1.1", "10.96.0.0/12", "128.0.0.0/1", "0.0.0.0/1", "2001:db8::/64",
                     "2001:db8::1", "ffff:ffff:ffff:ffff::/64", "fe80::/10"] {
            let p = try prefix(text)
            let interval = NftInterval(p)
            #expect(interval.prefix == p, "\(text)")
            #expect(interval.description == p.description)
            #expect(NftInterval.intervals(interval.elements) == [interval])
        }
        #expect(NftInterval(try prefix("192.168.1.1")).end == [192, 168, 1, 2])
        #expect(NftInterval(try prefix("10.0.0.0/8")).end == [11, 0, 0, 0])
        // A range that is no prefix (made by hand with nft) is kept as a range.
        let range = NftInterval(start: [10, 0, 0, 1], end: [10, 0, 0, 7])
        #expect(range.prefix == nil)
        #expect(range.description == "10.0.0.1-10.0.0.6")
        #expect(NftInterval(start: [10, 0, 0, 0], end: [10, 0, 0, 12]).prefix == nil)
    }

    /// A dump as the kernel gives it for nft's `{ 10.0.0.0/30, 10.0.0.4/30, 192.168.1.1, 255.255.255.0/24 }`: from
    /// the top down, adjacent prefixes sharing a key (an end and a start), nft's end element at 0.0.0.0.
    @Test func kernelDumpDecodesToPrefixes() throws {
        func element(_ key: [UInt8], end: Bool = false, open: Bool = false) -> [UInt8] {
            var body: [UInt8] = [12, 0, 1, 0x80, 8, 0, 1, 0] + key
            if end { body += [8, 0, 3, 0, 0, 0, 0, 1] }
            if open { body += [10, 0, 6, 0, 1, 4, 1, 0, 0, 0, 0, 0] }
            return [UInt8(4 + body.count), 0, 1, 0] + body
        }
        let elements = element([255, 255, 255, 0], open: true) + element([192, 168, 1, 2], end: true)
            + element([192, 168, 1, 1]) + element([10, 0, 0, 8], end: true) + element([10, 0, 0, 4], end: true)
            + element([10, 0, 0, 4]) + element([10, 0, 0, 0]) + element([0, 0, 0, 0], end: true)
        let payload: [UInt8] = [1, 0, 0, 0] + [6, 0, 1, 0, 0x74, 0, 0, 0] + [6, 0, 2, 0, 0x73, 0, 0, 0]
            + [UInt8((4 + elements.count) & 0xff), UInt8((4 + elements.count) >> 8), 3, 0x80] + elements
        let decoded = try NetlinkSocket.decodeSetElements([payload])
        #expect(decoded.count == 8)
        #expect(decoded.first == NftSetElement(key: [255, 255, 255, 0], intervalOpen: true))
        #expect(decoded.last == NftSetElement(key: [0, 0, 0, 0], intervalEnd: true))
        let prefixes = NftInterval.intervals(decoded).map(\.prefix)
        #expect(prefixes == (try ["10.0.0.0/30", "10.0.0.4/30", "192.168.1.1", "255.255.255.0/24"].map(prefix)))
    }

    @Test func elementWithoutAKeyIsMalformed() {
        let payload: [UInt8] = [1, 0, 0, 0, 12, 0, 3, 0x80, 8, 0, 1, 0x80, 4, 0, 9, 0]
        #expect(throws: WireError.self) { try NetlinkSocket.decodeSetElements([payload]) }
    }
}
