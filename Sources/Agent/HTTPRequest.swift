#if canImport(Glibc)
import Glibc
#endif

/// The head of one HTTP/1.x request (RFC 9112), parsed strictly enough that nothing ambiguous is answered: the
/// request line and the header fields, never a body (every answer closes the connection, so a body that follows
/// changes nothing).
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// The path of the request target, without its query.
    public var path: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (and later minors).
    public var minorVersion: Int

    public init(method: String, path: String, minorVersion: Int) {
        self.method = method
        self.path = path
        self.minorVersion = minorVersion
    }
}

/// What the bytes received so far hold.
public enum HTTPParseResult: Equatable, Sendable {
    /// No blank line yet: read more (up to the limit).
    case incomplete
    case request(HTTPRequestHead)
    /// The request cannot be answered as asked: the status (400, 431 or 505) and why.
    case refused(status: Int, reason: String)
}

public enum HTTPRequestParser {
    /// The most a request head may take, request line and header fields with their line ends.
    public static let maximumHeadBytes = 8192

    /// Parses the head at the start of `bytes` once it is complete (a blank line; bare LF line ends are taken too,
    /// as RFC 9112 §2.2 allows). Leading blank lines are skipped.
    public static func parse(_ bytes: [UInt8], limit: Int = maximumHeadBytes) -> HTTPParseResult {
        var start = 0
        while start < bytes.count, bytes[start] == UInt8(ascii: "\r") || bytes[start] == UInt8(ascii: "\n") { start += 1 }
        guard let end = headEnd(bytes, from: start) else {
            return bytes.count >= limit ? .refused(status: 431, reason: "the request head is larger than \(limit) bytes") : .incomplete
        }
        if end > limit { return .refused(status: 431, reason: "the request head is larger than \(limit) bytes") }
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = start
        for i in start..<end where bytes[i] == UInt8(ascii: "\n") {
            var line = bytes[lineStart..<i]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            lines.append(line)
            lineStart = i + 1
        }
        guard let requestLine = lines.first else { return .refused(status: 400, reason: "no request line") }
        let head: HTTPRequestHead
        switch parseRequestLine(requestLine) {
        case .success(let parsed): head = parsed
        case .failure(let refusal): return .refused(status: refusal.status, reason: refusal.reason)
        }
        var hosts = 0
        for line in lines.dropFirst().dropLast() {   // the last line is the blank one that ends the head
            guard let field = parseField(line) else {
                return .refused(status: 400, reason: "a malformed header field")
            }
            if field.name == "host" { hosts += 1 }
        }
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without exactly one Host.
        if head.minorVersion == 1 && hosts != 1 {
            return .refused(status: 400, reason: hosts == 0 ? "HTTP/1.1 without Host" : "more than one Host")
        }
        return .request(head)
    }

    /// The index just past the blank line that ends the head, or nil.
    static func headEnd(_ bytes: [UInt8], from start: Int) -> Int? {
        var i = start
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\n") {
                if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\n") { return i + 2 }
                if i + 2 < bytes.count, bytes[i + 1] == UInt8(ascii: "\r"), bytes[i + 2] == UInt8(ascii: "\n") { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    struct Refusal: Error { var status: Int; var reason: String }

    /// `METHOD SP request-target SP HTTP/1.x`, single spaces, nothing else.
    static func parseRequestLine(_ line: ArraySlice<UInt8>) -> Result<HTTPRequestHead, Refusal> {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, parts[0].allSatisfy(isTokenByte) else {
            return .failure(Refusal(status: 400, reason: "a malformed request line"))
        }
        let version = Array(parts[2])
        guard version.count == 8, version.starts(with: Array("HTTP/".utf8)), version[6] == UInt8(ascii: "."),
              isDigit(version[5]), isDigit(version[7]) else {
            return .failure(Refusal(status: 400, reason: "a malformed HTTP version"))
        }
        // HTTP/1.2 and later minors are answered as 1.1 (RFC 9110 §2.5); another major version is not served.
        guard version[5] == UInt8(ascii: "1") else {
            return .failure(Refusal(status: 505, reason: "only HTTP/1.x is served"))
        }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7f }), let path = Self.path(of: parts[1]) else {
            return .failure(Refusal(status: 400, reason: "a malformed request target"))
        }
        return .success(HTTPRequestHead(method: String(decoding: parts[0], as: UTF8.self), path: path,
                                        minorVersion: min(1, Int(version[7] - UInt8(ascii: "0")))))
    }

    /// The path of an origin-form ("/p?q") or absolute-form ("http://host/p?q") target; "*" stays "*".
    static func path(of target: ArraySlice<UInt8>) -> String? {
        var text = String(decoding: target, as: UTF8.self)
        if text.first != "/" && text != "*" {
            guard text.lowercased().hasPrefix("http://") else { return nil }
            let rest = text.dropFirst(7)
            guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
            text = rest[slash] == "/" ? String(rest[slash...]) : "/" + rest[slash...]
        }
        if let query = text.firstIndex(where: { $0 == "?" || $0 == "#" }) { text = String(text[..<query]) }
        return text
    }

    /// `name ":" OWS value OWS`: a token name (lowercased), no whitespace before the colon, no obs-fold, no
    /// control characters in the value.
    static func parseField(_ line: ArraySlice<UInt8>) -> (name: String, value: String)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return nil }
        let name = line[..<colon], value = line[(colon + 1)...]
        guard name.allSatisfy(isTokenByte) else { return nil }
        guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else { return nil }
        let trimmed = value.drop(while: { $0 == 0x20 || $0 == 0x09 })
        let end = trimmed.lastIndex(where: { $0 != 0x20 && $0 != 0x09 }).map { $0 + 1 } ?? trimmed.startIndex
        return (String(decoding: name, as: UTF8.self).lowercased(), String(decoding: trimmed[..<end], as: UTF8.self))
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}

/// One answer: a status, a content type and a body; sent with Content-Length, Date and `Connection: close`.
public struct HTTPResponse: Equatable, Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// For 405: the methods the path takes.
    public var allow: String?

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String, allow: String? = nil) {
        self.status = status
        self.contentType = contentType
        self.body = Array(body.utf8)
        self.allow = allow
    }

    static let reasons = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                          431: "Request Header Fields Too Large", 503: "Service Unavailable",
                          505: "HTTP Version Not Supported"]

    /// The bytes on the wire; with `head` (a HEAD request) the same head without the body.
    public func encoded(head: Bool = false, date: String = HTTPResponse.date()) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(Self.reasons[status] ?? "Unknown")\r\n"
        text += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nDate: \(date)\r\n"
        if let allow { text += "Allow: \(allow)\r\n" }
        text += "Connection: close\r\n\r\n"
        return Array(text.utf8) + (head ? [] : body)
    }

    /// Now as an IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    public static func date(_ seconds: time_t = time(nil)) -> String {
        var t = seconds, parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday) % 7]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon) % 12]) \(1900 + parts.tm_year) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
