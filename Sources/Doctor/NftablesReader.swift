import CLinux
import Handle
import Namespace
import Netlink

/// Reads (never changes) the nftables ruleset of a namespace: libnftables' `list ruleset` as JSON, made and run on
/// a thread inside the namespace, plus the parameters of iptables-nft extensions over nfnetlink (JSON names an
/// `xt` target — MARK, CONNMARK — but not its values).
enum NftablesReader {
    enum ReadError: Error {
        /// The kernel has no nfnetlink: there is no ruleset to read.
        case nftablesUnavailable(String)
        case failed(DoctorError)
    }

    /// `netfilter`: the namespace's nfnetlink socket (`NodeConnection`'s), or why it could not be opened.
    static func ruleset(_ handle: NamespaceHandle, netfilter: Result<NetlinkSocket, NetlinkError>) throws(ReadError) -> NftRuleset {
        let namespace = handle.namespace
        let operation = "nft -j list ruleset in \(namespace)"
        // libnftables exits the process when it cannot open its netlink socket: the nfnetlink socket opened before
        // is the check, and says why.
        let socket: NetlinkSocket
        switch netfilter {
        case .success(let opened): socket = opened
        case .failure(let error):
            if let errno = error.errno, errno == .protocolNotSupported || errno == .addressFamilyNotSupported {
                throw .nftablesUnavailable("this kernel has no nfnetlink: \(errno)")
            }
            throw .failed(.nftables(operation: operation, message: "open an nfnetlink socket: \(error)"))
        }
        do throws(DoctorError) { return try read(handle, netfilter: socket, operation: operation) } catch { throw .failed(error) }
    }

    private static func read(_ handle: NamespaceHandle, netfilter: NetlinkSocket, operation: String) throws(DoctorError) -> NftRuleset {
        let output: String
        do { output = try handle.nftables().run("list ruleset", json: true, operation: operation) } catch {
            switch error {
            case .namespace(let e): throw .namespace(e)
            default: throw .nftables(operation: operation, message: error.message)
            }
        }
        var ruleset = try NftRuleset.parse(json: output)
        if ruleset.rules.contains(where: { $0.statements.contains { if case .xt = $0 { return true } else { return false } } }) {
            ruleset.extensions = try extensions(over: netfilter)
        }
        return ruleset
    }

    /// Every rule's xt extensions (name, revision, info), keyed "family table chain handle", in rule order.
    static func extensions(over socket: NetlinkSocket) throws(DoctorError) -> [String: [XtExtension]] {
        let operation = "list rules (nfnetlink) in \(socket.namespace)"
        var message = MessageBuilder(type: UInt16(NFNL_SUBSYS_NFTABLES) << 8 | UInt16(NFT_MSG_GETRULE.rawValue), flags: 0)
        var header = nfgenmsg()
        header.nfgen_family = 0   // NFPROTO_UNSPEC: every family
        header.version = UInt8(NFNETLINK_V0)
        message.append(header: header)
        let replies: [NetlinkMessage]
        do { replies = try socket.dump(message, operation: operation) } catch { throw .netlink(error) }
        var result: [String: [XtExtension]] = [:]
        do throws(WireError) {
            for reply in replies {
                let reader = PayloadReader(reply.payload)
                let family = try reader.header(nfgenmsg.self).nfgen_family
                var table = "", chain = "", handle: UInt64 = 0
                var found: [XtExtension] = []
                try reader.forEachAttribute(after: MemoryLayout<nfgenmsg>.size) { type, value throws(WireError) in
                    switch Int(type) {
                    case Int(NFTA_RULE_TABLE.rawValue): table = value.cString
                    case Int(NFTA_RULE_CHAIN.rawValue): chain = value.cString
                    case Int(NFTA_RULE_HANDLE.rawValue): handle = try value.bigEndian64()
                    case Int(NFTA_RULE_EXPRESSIONS.rawValue):
                        try PayloadReader.forEachAttribute(in: value) { _, element throws(WireError) in
                            var name = ""
                            var data = ArraySlice<UInt8>()
                            try PayloadReader.forEachAttribute(in: element) { field, content throws(WireError) in
                                if field == UInt16(NFTA_EXPR_NAME.rawValue) { name = content.cString }
                                if field == UInt16(NFTA_EXPR_DATA.rawValue) { data = content }
                            }
                            guard name == "match" || name == "target" else { return }
                            var xt = XtExtension(kind: name == "match" ? .match : .target, name: "", revision: 0, info: [])
                            try PayloadReader.forEachAttribute(in: data) { field, content throws(WireError) in
                                switch Int(field) {
                                case 1: xt.name = content.cString                       // NFTA_{MATCH,TARGET}_NAME
                                case 2: xt.revision = UInt32(try content.bigEndian32()) // _REV
                                case 3: xt.info = Array(content)                       // _INFO
                                default: break
                                }
                            }
                            found.append(xt)
                        }
                    default: break
                    }
                }
                guard !found.isEmpty else { continue }
                result["\(familyName(family)) \(table) \(chain) \(handle)"] = found
            }
        } catch {
            throw .netlink(.protocolViolation(operation: operation, reason: "malformed reply: \(error)"))
        }
        return result
    }

    /// nft's family names (NFPROTO_*).
    static func familyName(_ family: UInt8) -> String {
        switch family {
        case 1: return "inet"
        case 2: return "ip"
        case 3: return "arp"
        case 5: return "netdev"
        case 7: return "bridge"
        case 10: return "ip6"
        default: return String(family)
        }
    }
}

/// An iptables extension inside an nftables rule (iptables-nft): `-j MARK --set-xmark`, `-m conntrack --ctstate`…
/// Its parameters are the xtables structure the kernel keeps (`info`), decoded for the marks and states that
/// decide return paths.
public struct XtExtension: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case match, target }
    public var kind: Kind
    public var name: String
    public var revision: UInt32
    public var info: [UInt8]

    func u32(_ offset: Int) -> UInt32? {
        guard info.count >= offset + 4 else { return nil }
        return info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    func u16(_ offset: Int) -> UInt16? {
        guard info.count >= offset + 2 else { return nil }
        return info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }

    func u8(_ offset: Int) -> UInt8? { info.count > offset ? info[offset] : nil }
}

extension ArraySlice<UInt8> {
    var cString: String { String(decoding: prefix(while: { $0 != 0 }), as: UTF8.self) }

    func bigEndian64() throws(WireError) -> UInt64 {
        guard count >= 8 else { throw WireError("u64 attribute of \(count) bytes") }
        return UInt64(bigEndian: withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    func bigEndian32() throws(WireError) -> UInt32 {
        guard count >= 4 else { throw WireError("u32 attribute of \(count) bytes") }
        return UInt32(bigEndian: withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
    }
}
